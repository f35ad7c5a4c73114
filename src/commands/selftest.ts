import { dirname } from 'node:path';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns/promises';
import { existsSync, lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, connect as tlsConnect } from 'node:tls';
import { DEFAULT_API_BASE, loadConfig, type Config, type ConfigResult } from '../config.js';
import { askDaemon, controlSocketPath } from '../control.js';
import { onoffBackend, type GpioBackend, type OutputPin } from '../devices/gpio.js';
import { createLogger } from '../log.js';
import { readVoiceConfig } from '../config/voice.js';
import { Announcer } from '../devices/voice/announcer.js';
import { aplayPlayer, type Player } from '../devices/voice/player.js';
import { locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { upstreamFor } from '../app/parts.js';
import type { ApiOutcome } from '../wechatpay/client.js';
import { CLOCK_FLOOR_MS, TIMESYNC_FLAG } from '../clock.js';
import { errnoOf, messageOf } from '../errors.js';
import { certificateError, certificateX509, expiryOf } from '../wechatpay/certificate.js';

/**
 * `scanbox selftest`: what a technician checks after installing or replacing a box, one line each,
 * `PASS|WARN|FAIL name: detail`, in a fixed order: config, journal, scanner, register, gpio, voice, clock, api,
 * api-backup (only when a backup origin is set), certificate. Exit 1 if any FAIL, 0 otherwise, 2 for usage.
 *
 * Safe while the daemon runs: the journal is opened read-only, a serial port the daemon holds is reported
 * as in use (not taken), and the light is not driven.
 */

export type CheckStatus = 'PASS' | 'WARN' | 'FAIL';
export interface CheckResult {
  status: CheckStatus;
  name: string;
  detail: string;
}

/** Everything the checks touch outside the process, so unit tests run them without hardware. */
export interface SelftestDeps {
  env: NodeJS.ProcessEnv;
  now(): number;
  sleep(ms: number): Promise<void>;
  exists(path: string): boolean;
  /** fs.lstatSync (follow = false) or fs.statSync (follow = true); throws like them. */
  stat(path: string, follow: boolean): Stats;
  realpath(path: string): string;
  /** Opens the serial port and closes it again; rejects with serialport's error. */
  openSerial(path: string, baudRate: number): Promise<void>;
  gpio(): GpioBackend;
  /** Runs a program; `ok` is false when it cannot be run or exits non-zero. */
  exec(file: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; stdout: string }>;
  lookup(host: string): Promise<{ address: string }>;
  /**
   * A TLS handshake with `address:port`, verifying the server certificate for `host`, offering `session` for
   * resumption when given. `connectMs` is the TCP connect (about one round trip), `handshakeMs` the TLS part;
   * `session` what the server handed out to resume with, `reused` whether the offered session was taken.
   */
  tlsHandshake(options: { host: string; address: string; port: number; timeoutMs: number; session?: Buffer }): Promise<Handshake>;
  askDaemon(path: string, request: object, timeoutMs: number): Promise<Record<string, unknown> | null>;
  /** Backend mode: one harmless call through the backend (an orderquery of this box's probe order). */
  probeBackend(config: Readonly<Config>): Promise<ApiOutcome>;
  /** Where each line goes as soon as its check is done. */
  write(line: string): void;
  /** Plays PCM on the speaker: aplay (devices/voice/player.ts). */
  play: Player;
}

export interface Handshake {
  protocol: string | null;
  connectMs?: number;
  handshakeMs?: number;
  session?: Buffer | null;
  reused?: boolean;
}

const NETWORK_TIMEOUT_MS = 5000;
/** TLS 1.3 servers send their session tickets just after the handshake: wait this long for one. */
const TICKET_WAIT_MS = 300;
const SERIAL_TIMEOUT_MS = 5000;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function dateOnly(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export const defaultSelftestDeps = (env: NodeJS.ProcessEnv = process.env): SelftestDeps => ({
  env,
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  exists: (path) => existsSync(path),
  stat: (path, follow) => (follow ? statSync(path) : lstatSync(path)),
  realpath: (path) => realpathSync(path),
  async openSerial(path, baudRate) {
    const { SerialPort } = await import('serialport');
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    await new Promise<void>((resolve) => port.close(() => resolve()));
  },
  // The light's own lines are for the daemon's log, not this screen.
  gpio: () => onoffBackend({ log: createLogger({ level: 'error', write: (line) => void process.stderr.write(line + '\n') }) }),
  exec: (file, args, timeoutMs) =>
    new Promise((resolve) => {
      execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout) => resolve({ ok: error === null, stdout: String(stdout) }));
    }),
  lookup: (host) => dnsLookup(host),
  tlsHandshake: ({ host, address, port, timeoutMs, session }) =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      let connectedAt = started;
      let ticket: Buffer | null = null;
      const socket = tlsConnect({
        host: address,
        port,
        ...(isIP(host) === 0 ? { servername: host } : {}),
        ...(session ? { session } : {}),
        checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no TLS handshake within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      socket.once('connect', () => (connectedAt = performance.now()));
      socket.on('session', (value: Buffer) => (ticket = value));
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        const done = performance.now();
        const result = {
          protocol: socket.getProtocol(),
          connectMs: Math.round(connectedAt - started),
          handshakeMs: Math.round(done - connectedAt),
          reused: socket.isSessionReused(),
        };
        const finish = (): void => {
          socket.end();
          resolve({ ...result, session: ticket ?? socket.getSession() ?? null });
        };
        if (ticket !== null) finish();
        else {
          socket.once('session', finish);
          setTimeout(finish, TICKET_WAIT_MS).unref();
        }
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      });
    }),
  askDaemon,
  async probeBackend(config) {
    const gateway = upstreamFor(config, createLogger({ level: 'error', write: () => undefined }));
    try {
      return await gateway.orderquery({ outTradeNo: `${config.deviceId}PROBE` });
    } finally {
      await gateway.close();
    }
  },
  write: (line) => void process.stdout.write(line + '\n'),
  play: aplayPlayer,
});

type Daemon = 'running' | 'stopped';

function checkConfig(loaded: ConfigResult): CheckResult {
  if (loaded.ok) {
    const c = loaded.config;
    return { status: 'PASS', name: 'config', detail: c.backend ? `valid (backend mode, ${c.backend.origins.length} backend(s), device ${c.deviceId})` : `valid (mch_id ${c.mchId}, device ${c.deviceId})` };
  }
  const first = loaded.errors[0] ?? '';
  return { status: 'FAIL', name: 'config', detail: `${loaded.errors.length} problem(s), first: ${first} (scanbox config check lists them all)` };
}

function checkJournal(deps: SelftestDeps, loaded: ConfigResult): CheckResult {
  const name = 'journal';
  const location = locateJournal(deps.env, loaded);
  if (!deps.exists(location.path)) return { status: 'WARN', name, detail: `${location.path} not created yet (the daemon creates it at its first start)` };
  let journal;
  try {
    journal = openJournalReadonly(location);
  } catch (error) {
    return { status: 'FAIL', name, detail: messageOf(error) };
  }
  try {
    const check = journal.quickCheck();
    if (check !== 'ok') return { status: 'FAIL', name, detail: `${location.path} quick_check: ${check}` };
    const pragmas = journal.pragmas();
    if (pragmas.journalMode !== 'wal') {
      return { status: 'FAIL', name, detail: `${location.path} is in journal_mode ${pragmas.journalMode}, not wal (the daemon sets it at start)` };
    }
    const counts = journal.counts();
    const sales = Object.values(counts).reduce((sum, n) => sum + n, 0);
    return { status: 'PASS', name, detail: `${location.path}: quick_check ok, journal_mode wal, schema ${pragmas.userVersion}, ${sales} sale(s)` };
  } catch (error) {
    return { status: 'FAIL', name, detail: messageOf(error) };
  } finally {
    journal.close();
  }
}

async function checkSerial(deps: SelftestDeps, name: string, variable: string, config: Readonly<Config> | null, daemon: Daemon): Promise<CheckResult> {
  const raw = deps.env[variable];
  const configured =
    config === null
      ? undefined
      : name === 'scanner'
        ? { path: config.scannerPort, baud: config.scannerBaud }
        : name === 'display'
          ? config.display && { path: config.display.port, baud: config.display.baud }
          : name === 'display-out'
            ? config.display?.outPort ? { path: config.display.outPort, baud: config.display.baud } : null
          : config.registerPort === null
            ? null
            : { path: config.registerPort, baud: config.registerBaud };
  const path = configured === undefined ? (raw?.startsWith('/') ? raw : undefined) : (configured?.path ?? undefined);
  const baud = configured?.baud ?? 9600;
  if (path === undefined) return { status: 'WARN', name, detail: `not checked: ${variable} is not set to a device path` };
  let shown = path;
  try {
    const stat = deps.stat(path, false);
    let device = stat;
    if (stat.isSymbolicLink()) {
      try {
        device = deps.stat(path, true);
        shown = `${path} -> ${deps.realpath(path)}`;
      } catch {
        return { status: 'FAIL', name, detail: `${path} is a link to nothing (unplugged?)` };
      }
    }
    if (!device.isCharacterDevice()) return { status: 'FAIL', name, detail: `${shown} is not a character device` };
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') {
      return { status: 'FAIL', name, detail: `${path} does not exist (unplugged? prefer a /dev/serial/by-id/ link)` };
    }
    return { status: 'FAIL', name, detail: `${path}: ${messageOf(error)}` };
  }
  try {
    await withTimeout(deps.openSerial(path, baud), SERIAL_TIMEOUT_MS, `opening ${path}`);
  } catch (error) {
    const message = messageOf(error);
    if (/cannot lock port/i.test(message)) {
      return daemon === 'running'
        ? { status: 'PASS', name, detail: `${shown}: in use by the running daemon` }
        : { status: 'WARN', name, detail: `${shown}: locked by another process, and the daemon does not answer` };
    }
    if (/permission denied|EACCES/i.test(message)) {
      return { status: 'FAIL', name, detail: `${shown}: permission denied (the daemon's user needs the dialout group)` };
    }
    return { status: 'FAIL', name, detail: `${shown}: cannot be opened: ${message}` };
  }
  if (daemon === 'running') {
    return { status: 'WARN', name, detail: `${shown} opens at ${baud} baud, so the running daemon does not hold it (port lost? see journalctl -u scanbox)` };
  }
  return { status: 'PASS', name, detail: `${shown} opens at ${baud} baud` };
}

async function checkGpio(deps: SelftestDeps, config: Readonly<Config> | null, daemon: Daemon): Promise<CheckResult> {
  const name = 'gpio';
  if (!config) return { status: 'WARN', name, detail: 'not checked: the configuration is invalid' };
  const pins = (['green', 'red', 'buzzer'] as const).flatMap((role) => (config.gpio[role] === null ? [] : [{ role, bcm: config.gpio[role] }]));
  const list = pins.map((p) => `${p.role} BCM ${p.bcm}`).join(', ');
  if (pins.length === 0) return { status: 'PASS', name, detail: 'no GPIO configured' };
  if (daemon === 'running') return { status: 'PASS', name, detail: `${list}: in use by the daemon (not driven)` };
  const backend = deps.gpio();
  if (!backend.available) return { status: 'FAIL', name, detail: `${list} configured, but GPIO is not available: ${backend.reason ?? 'unknown reason'}` };
  const opened: OutputPin[] = [];
  try {
    const open = new Map<string, OutputPin>();
    for (const { role, bcm } of pins) {
      const pin = backend.open(bcm, role);
      opened.push(pin);
      open.set(role, pin);
    }
    for (const [role, ms] of [['green', 300], ['red', 300], ['buzzer', 100]] as const) {
      const pin = open.get(role);
      if (!pin) continue;
      pin.write(true);
      await deps.sleep(ms);
      pin.write(false);
    }
  } catch (error) {
    return { status: 'FAIL', name, detail: messageOf(error) };
  } finally {
    for (const pin of opened) {
      try {
        pin.release();
      } catch {
        // A pin that cannot be given back is already named by the failure above.
      }
    }
  }
  return { status: 'PASS', name, detail: `${list}: green and red blinked 300 ms each, the buzzer beeped 100 ms (look and listen)` };
}

async function checkClock(deps: SelftestDeps): Promise<CheckResult> {
  const name = 'clock';
  const now = deps.now();
  if (now < CLOCK_FLOOR_MS) return { status: 'FAIL', name, detail: `clock not synchronised (it says ${dateOnly(now)})` };
  if (deps.exists(TIMESYNC_FLAG)) return { status: 'PASS', name, detail: `synchronised (systemd-timesyncd), ${new Date(now).toISOString()}` };
  const asked = await deps.exec('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], 3000);
  const answer = asked.stdout.trim();
  if (asked.ok && answer === 'yes') return { status: 'PASS', name, detail: `synchronised (timedatectl), ${new Date(now).toISOString()}` };
  // The daemon's own rule (clockTrusted): where systemd-timesyncd runs, its flag decides; elsewhere a
  // plausible clock is used, which is worth a warning on a box but no failure.
  if (deps.exists(dirname(TIMESYNC_FLAG)) || (asked.ok && answer === 'no')) {
    return {
      status: 'FAIL',
      name,
      detail: `clock not synchronised (no ${TIMESYNC_FLAG}; timedatectl ${asked.ok ? `says NTPSynchronized=${answer || '?'}` : 'cannot tell'})`,
    };
  }
  return {
    status: 'WARN',
    name,
    detail: `no time synchronisation service answers; the clock looks plausible (${new Date(now).toISOString()}): enable systemd-timesyncd`,
  };
}

async function checkReach(deps: SelftestDeps, name: string, base: string): Promise<CheckResult> {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    return { status: 'FAIL', name, detail: `${base} is not a URL` };
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? 443 : Number(url.port);
  let address: string;
  const dnsStart = performance.now();
  try {
    address = (await withTimeout(deps.lookup(host), NETWORK_TIMEOUT_MS, `DNS lookup of ${host}`)).address;
  } catch (error) {
    const code = errnoOf(error);
    return { status: 'FAIL', name, detail: `DNS lookup of ${host} failed (${code ?? messageOf(error)})` };
  }
  const dnsMs = Math.round(performance.now() - dnsStart);
  let first: Handshake;
  try {
    first = await deps.tlsHandshake({ host, address, port, timeoutMs: NETWORK_TIMEOUT_MS });
  } catch (error) {
    return { status: 'FAIL', name, detail: `TLS handshake with ${host}:${port} (${address}) failed: ${messageOf(error)}` };
  }
  const reached = `${host} -> ${address} (DNS ${dnsMs} ms)`;
  const times =
    first.connectMs !== undefined && first.handshakeMs !== undefined
      ? `, round trip ${first.connectMs} ms (TCP connect), ${first.protocol ?? 'TLS'} handshake ${first.handshakeMs} ms on port ${port}`
      : `, ${first.protocol ?? 'TLS'} handshake on port ${port}`;
  if (!first.session) {
    return { status: 'WARN', name, detail: `${reached}${times}; the server offered no TLS session to resume: every new connection pays a full handshake` };
  }
  // A second connection offering the first one's session: what the box's reconnects cost.
  try {
    const again = await deps.tlsHandshake({ host, address, port, timeoutMs: NETWORK_TIMEOUT_MS, session: first.session });
    if (!again.reused) {
      return { status: 'WARN', name, detail: `${reached}${times}; TLS session resumption refused: every new connection pays a full handshake` };
    }
    const resumed = again.handshakeMs !== undefined ? ` (${again.handshakeMs} ms)` : '';
    return { status: 'PASS', name, detail: `${reached}${times}; TLS session resumption works${resumed}` };
  } catch (error) {
    return { status: 'WARN', name, detail: `${reached}${times}; a second handshake, resuming the session, failed: ${messageOf(error)}` };
  }
}

/**
 * Backend mode: the backend answers this box over mutual TLS, and has not revoked it. With several backends (a
 * chain) each is asked on its own: all answer PASS, some WARN (the box moves to one that answers), none FAIL;
 * beside a running daemon each also says what the daemon found of it and which one the daemon uses.
 */
async function checkBackend(deps: SelftestDeps, config: Readonly<Config>, daemonBackends: unknown): Promise<CheckResult> {
  const name = 'backend';
  const origins = config.backend!.origins;
  // The running daemon's own view of a chain (its health answer, as `scanbox status` shows it): which backend it
  // uses now and what it last found of each. A box whose daemon is stopped uses none.
  const seen = new Map<string, Record<string, unknown>>();
  if (Array.isArray(daemonBackends)) for (const b of daemonBackends as Array<Record<string, unknown>>) if (typeof b?.origin === 'string') seen.set(b.origin, b);
  const daemonView = (origin: string): string => {
    if (origins.length === 1) return '';
    const b = seen.get(origin);
    if (b === undefined) return '';
    const state = b.state === 'unreachable' ? 'the daemon found it unreachable' : b.state === 'ok' ? 'the daemon had answers from it' : 'the daemon has not asked it yet';
    return ` [${b.current === true ? 'in use by the daemon; ' : ''}${state}]`;
  };
  const results: Array<{ ok: boolean; refused: boolean; text: string }> = [];
  for (const origin of origins) {
    const outcome = await deps.probeBackend(origins.length === 1 ? config : { ...config, backend: { ...config.backend!, origin, origins: [origin] } });
    const view = daemonView(origin);
    if (outcome.kind !== 'unknown') {
      results.push({ ok: true, refused: false, text: `${origin} answers this box (${config.deviceId}) over mutual TLS in ${outcome.ms} ms; WeChat Pay answered through it${view}` });
    } else if (outcome.failure === 'CERT_REJECTED') {
      results.push({ ok: false, refused: true, text: `${origin} refuses this box: ${outcome.message} (enroll it again: scanbox backend enroll ${config.deviceId} --out DIR)${view}` });
    } else {
      results.push({ ok: false, refused: false, text: `${origin} cannot be asked (${outcome.failure}): ${outcome.message}${view}` });
    }
  }
  const noDaemon = origins.length > 1 && seen.size === 0 ? ' (the daemon is not running: no backend in use)' : '';
  const detail = results.map((r) => r.text).join('; ') + noDaemon;
  if (results.every((r) => r.ok)) return { status: 'PASS', name, detail };
  if (results.some((r) => r.ok) && !results.some((r) => r.refused)) return { status: 'WARN', name, detail: `${results.filter((r) => r.ok).length} of ${results.length} backends answer: ${detail}` };
  return { status: 'FAIL', name, detail };
}

function checkCertificate(deps: SelftestDeps, config: Readonly<Config> | null): CheckResult {
  const name = 'certificate';
  if (!config) return { status: 'WARN', name, detail: 'not checked: the configuration is invalid' };
  if (config.backend) {
    // The box holds no merchant certificate: its own certificate for the backend is what can expire.
    const expiry = expiryOf(new X509Certificate(config.backend.certPem), deps.now());
    const who = expiry.commonName ? `, CN=${expiry.commonName}` : '';
    if (expiry.expired) return { status: 'FAIL', name, detail: `the box's certificate for the backend expired on ${expiry.date}${who}: enroll the box again` };
    if (expiry.renewSoon) return { status: 'WARN', name, detail: `the box's certificate for the backend expires on ${expiry.date} (in ${expiry.days} days)${who}: enroll the box again` };
    return { status: 'PASS', name, detail: `the box's certificate for the backend is valid until ${expiry.date} (${expiry.days} days)${who}; no merchant certificate on the box (backend mode)` };
  }
  const certificate = config.certificate!;
  let x509: X509Certificate | null;
  try {
    // The way the client will load it: OpenSSL refuses legacy (RC2-40) PKCS#12 files here too.
    x509 = certificateX509(certificate);
  } catch (error) {
    return { status: 'FAIL', name, detail: certificate.kind === 'p12' ? certificateError('p12', error).message : `not readable: ${messageOf(error)}` };
  }
  if (x509 === null) return { status: 'PASS', name, detail: `${config.certificateSource}: loads (expiry not readable from this PKCS#12)` };
  const expiry = expiryOf(x509, deps.now());
  const who = expiry.commonName ? `, CN=${expiry.commonName}` : '';
  if (expiry.expired) return { status: 'FAIL', name, detail: `expired on ${expiry.date}${who}: download a new one at pay.weixin.qq.com (API security)` };
  if (expiry.renewSoon) {
    return { status: 'WARN', name, detail: `expires on ${expiry.date} (in ${expiry.days} days)${who}: renew it at pay.weixin.qq.com (API security)` };
  }
  return { status: 'PASS', name, detail: `valid until ${expiry.date} (${expiry.days} days)${who}` };
}

/** Runs every check in order, writing each line as soon as it is known. */
/**
 * The speaker: the voice's own variables and pack (read apart from the rest, so a voice problem is named here
 * even when another variable is wrong), then a short phrase played through the real aplay: PASS means aplay
 * took it; only a person at the counter can tell whether it was heard.
 */
async function checkVoice(deps: SelftestDeps): Promise<CheckResult> {
  const name = 'voice';
  const errors: string[] = [];
  const voice = readVoiceConfig({ get: (key) => (deps.env[key] === '' ? undefined : deps.env[key]), error: (key, text) => errors.push(`${key}: ${text}`) });
  if (errors.length > 0) return { status: 'FAIL', name, detail: errors.join('; ') };
  if (voice.device === null) return { status: 'PASS', name, detail: 'no speaker configured (SCANBOX_AUDIO_DEVICE unset): the box is silent' };
  const announcer = new Announcer({ settings: { device: voice.device, volume: voice.volume, two: voice.two }, pack: voice.pack, log: createLogger({ level: 'error' }), player: deps.play });
  const played = await announcer.playNow({ kind: 'test' });
  if (!played.ok) return { status: 'FAIL', name, detail: `${voice.device}: ${played.reason}` };
  return {
    status: 'PASS',
    name,
    detail: `${voice.device}: played ${played.words} (${played.seconds.toFixed(1)} s, ${voice.pack?.name}, volume ${voice.volume}): listen`,
  };
}

export async function runSelftest(deps: SelftestDeps): Promise<{ results: CheckResult[]; exitCode: number }> {
  const results: CheckResult[] = [];
  const report = (result: CheckResult): void => {
    results.push(result);
    deps.write(`${result.status} ${result.name}: ${result.detail.replace(/[\r\n]+/g, ' ')}`);
  };
  let daemon: Daemon = 'stopped';
  let health: Record<string, unknown> | null = null;
  try {
    health = await deps.askDaemon(controlSocketPath(deps.env), { cmd: 'health' }, 2000);
    if (health !== null) daemon = 'running';
  } catch {
    // Something is there but cannot be asked: treat it as a running daemon and leave its devices alone.
    daemon = 'running';
  }

  const loaded = loadConfig({ env: deps.env });
  const config = loaded.ok ? loaded.config : null;
  report(checkConfig(loaded));
  report(checkJournal(deps, loaded));
  report(await checkSerial(deps, 'scanner', 'SCANBOX_SCANNER_PORT', config, daemon));
  if (config?.display) {
    report(await checkSerial(deps, 'display', 'SCANBOX_DISPLAY_PORT', config, daemon));
    if (config.display.outPort) report(await checkSerial(deps, 'display-out', 'SCANBOX_DISPLAY_OUT_PORT', config, daemon));
  }
  else report(await checkSerial(deps, 'register', 'SCANBOX_REGISTER_PORT', config, daemon));
  report(await checkGpio(deps, config, daemon));
  report(await checkVoice(deps));
  report(await checkClock(deps));
  if (config?.backend) report(await checkBackend(deps, config, health?.backends));
  else {
    let apiBase = config?.apiBase ?? DEFAULT_API_BASE;
    if (!config && deps.env.SCANBOX_API_BASE) apiBase = deps.env.SCANBOX_API_BASE;
    report(await checkReach(deps, 'api', apiBase));
    if (config?.backupBase) report(await checkReach(deps, 'api-backup', config.backupBase));
  }
  report(checkCertificate(deps, config));

  const count = (status: CheckStatus): number => results.filter((r) => r.status === status).length;
  deps.write(`selftest: ${count('PASS')} PASS, ${count('WARN')} WARN, ${count('FAIL')} FAIL`);
  return { results, exitCode: count('FAIL') > 0 ? 1 : 0 };
}

export async function selftestCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (args.length > 0) {
    process.stderr.write('usage: scanbox selftest\n');
    return 2;
  }
  return (await runSelftest(defaultSelftestDeps(env))).exitCode;
}
