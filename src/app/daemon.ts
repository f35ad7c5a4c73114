import { Box, FaultBox } from '../box.js';
import { clockTrusted, systemClock } from '../clock.js';
import { loadConfig, type Config } from '../config.js';
import { BackendChain } from '../backend/chain.js';
import { ControlServer, controlSocketPath, refundAnswer, reverseAnswer, type ControlHandlers } from '../control.js';
import { errnoOf, messageOf } from '../errors.js';
import { describeHealth, type Health } from '../health.js';
import { Journal, JournalError } from '../journal/journal.js';
import { createLogger, type Logger } from '../log.js';
import { Reachability } from '../payment/reachability.js';
import { TradeReporter } from '../payment/trade-report.js';
import { startFleetReports } from '../fleet/reports.js';
import { createNotifier, type Notifier } from '../systemd.js';
import { VERSION } from '../version.js';
import { CertificateError } from '../wechatpay/certificate.js';
import type { ApiOutcome } from '../wechatpay/client.js';
import {
  TECHNICIAN_REFUND_WAIT_MS,
  devicesFor,
  engineFor,
  refundEngineFor,
  startupLogger,
  upstreamFor,
  voiceFor,
  type Devices,
  type Upstream,
} from './parts.js';

/**
 * The daemon (`scanbox run`), built once here: config -> client -> journal (quick_check) -> reachability ->
 * engine -> devices and box -> control socket -> recovery -> READY, until SIGTERM. When the journal cannot be
 * used (at open or during recovery) the same devices, control socket and systemd plumbing serve FAULT mode.
 *
 * Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration.
 */
export async function runDaemon(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let log = startupLogger(env);
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    for (const error of loaded.errors) log.error(`configuration: ${error}`);
    return 2;
  }
  const config = loaded.config;
  log = createLogger({ level: config.logLevel });
  log.info('scanbox starting', {
    version: VERSION,
    node: process.version,
    device_id: config.deviceId,
    scanner: config.scannerPort,
    register: config.registerPort ?? '-',
    ...(config.display
      ? {
          display: config.display.port,
          display_out: config.display.outPort ?? '-',
          family: config.display.family,
          baud: config.display.baud,
          parity: config.display.parity,
          mode: config.display.mode,
        }
      : {}),
    api: config.backend ? `backend ${config.backend.origins.join(',')}` : config.apiBase,
    backup: config.backend ? '-' : (config.backupBase ?? '-'),
    db: config.dbPath,
  });

  let client: Upstream;
  try {
    client = upstreamFor(config, log);
  } catch (error) {
    if (error instanceof CertificateError) {
      log.error(`configuration: merchant certificate: ${error.message}`);
      return 2;
    }
    throw error;
  }
  try {
    return await runWithClient(env, config, log, client);
  } finally {
    await client.close();
  }
}

async function runWithClient(env: NodeJS.ProcessEnv, config: Config, log: Logger, client: Upstream): Promise<number> {
  const clock = systemClock;
  const startedAt = clock.now();
  const devices = devicesFor(config, log, clock);
  let journal: Journal;
  try {
    journal = Journal.open(config.dbPath, { deviceId: config.deviceId, clock });
  } catch (error) {
    if (lockedByAnother(error)) {
      // Another process holds the journal for longer than the busy timeout (a technician's local `scanbox
      // reverse`): that passes, so exit and let systemd start the box again.
      log.error('journal locked by another process: exiting so that the box is started again', {
        db: config.dbPath,
        error: messageOf(error),
      });
      return 1;
    }
    // A restart cannot repair a damaged or unwritable journal: instead of a restart loop the box stays up
    // in FAULT mode and says what is wrong, on the register, the light, systemd's STATUS and the log.
    const control = await listenControl(env, log);
    return runFaulted(env, config, log, devices, control, journalFault(error, 'open'), startedAt);
  }
  log.info('journal open', { db: config.dbPath, tag: journal.tag });

  // Built before recovery, so that what recovery's own calls learn about WeChat Pay is not lost.
  // In backend mode the backend fails over for the box: any answer through it counts as reachable.
  const reachability = new Reachability(log, config.backend ? undefined : config.apiBase);
  const onGatewayOutcome = (outcome: ApiOutcome): void => reachability.note(outcome);
  const engine = engineFor(config, { journal, gateway: client, log, clock, onGatewayOutcome });
  const refunds = refundEngineFor({ journal, gateway: client, log, clock, onGatewayOutcome });
  // In backend mode the box has no key to sign a report with: the backend's own calls are what it could report.
  const reporter = client.tradeReport ? new TradeReporter({ tradeReport: client.tradeReport.bind(client) }, config.tradeReport, config.deviceId, log) : null;
  const box = new Box({
    engine,
    journal,
    ...devices,
    display: devices.display?.reading ?? null,
    clock,
    log,
    maxAmountFen: config.maxAmountFen,
    scanTimeoutMs: config.scanTimeoutMs,
    retentionMs: config.retentionDays * 24 * 3600 * 1000,
    reachability,
    probe: () => client.orderquery({ outTradeNo: `${config.deviceId}PROBE` }),
    clockSane: () => clockTrusted(clock.now()),
    refunds,
    voice: voiceFor(config, log),
    onSaleFinished: (sale) => reporter?.sale(sale),
    refundPolicy: { register: config.refunds === 'register', dayMaxFen: config.refundDayMaxFen, timeZone: config.timeZone },
  });

  // The technician's commands ask the daemon itself (health, manual reversal) so the two never race;
  // the socket is up during recovery too, which can take minutes while WeChat Pay is unreachable.
  let recovering = true;
  const control = await listenControl(env, log, {
    health: () => ({
      ...(recovering ? { kind: 'OFFLINE', text: 'recovering unfinished sales' } : box.health()),
      // A chain's box (several SCANBOX_BACKEND origins): each backend's state, for scanbox status.
      ...(client instanceof BackendChain ? { backends: client.backends() } : {}),
    }),
    reverse: async (outTradeNo) => reverseAnswer(await engine.manualReverse(outTradeNo)),
    refund: async (request) => {
      const answer = await refunds.technicianRefund(request, TECHNICIAN_REFUND_WAIT_MS);
      // Said as a register refund is (contract §9); a RID refunded before is not said again.
      if (answer.made && answer.refund) box.announceRefund(answer.refund);
      return refundAnswer(answer);
    },
    ...displayHandler(config, devices),
  });
  try {
    const recovered = await engine.recover();
    if (recovered.length > 0) log.warning('recovery finished unfinished sales', { count: recovered.length });
    const refunded = await refunds.recover();
    if (refunded.length > 0) log.warning('recovery worked on unfinished refunds', { count: refunded.length });
  } catch (error) {
    // Recovery could not journal a step (a full disk, a card gone read-only or bad): the unfinished sale
    // stays as the journal has it, to be finished at a start that can write. Meanwhile the box stays up in
    // FAULT mode: a restart would meet the same wall (and before this, the daemon hung without its ports
    // until systemd's start timeout, query after query).
    journal.close();
    return runFaulted(env, config, log, devices, control, journalFault(error, 'recovery'), startedAt);
  }
  recovering = false;
  engine.startReversalQueue(5000);
  refunds.startQueue(5000);

  box.start();
  devices.scanner.start();
  devices.register?.start();
  devices.display?.line.start();
  log.info('ready for sales', { health: box.health().kind });
  const fleet = startFleetReports(config, log, { health: () => box.health(), journal, dbPath: config.dbPath, startedAt, clock, timeZone: config.timeZone });
  await serveUntilStopped(env, log, () => box.health(), 'stopping: finishing the open sale', () => {
    try {
      journal.counts();
      return true;
    } catch (error) {
      log.error('journal does not answer: watchdog not fed', { error: messageOf(error) });
      return false;
    }
  });
  // A technician's reversal under way gets the same grace as an open sale.
  await Promise.all([control?.close(20_000), box.stop()]);
  await fleet.stop();
  await engine.stopReversalQueue();
  await refunds.stopQueue();
  await closeDevices(devices);
  journal.close();
  log.info('stopped');
  return 0;
}

/**
 * The control socket, with the handlers of the mode the daemon is in (`setHandlers` changes them when the
 * daemon falls into FAULT mode during recovery); null when it cannot listen (the commands then read the
 * journal only).
 */
interface Control {
  setHandlers(handlers: ControlHandlers): void;
  close(graceMs: number): Promise<void>;
}

async function listenControl(env: NodeJS.ProcessEnv, log: Logger, initial?: ControlHandlers): Promise<Control | null> {
  let current: ControlHandlers = initial ?? { health: () => ({ kind: 'OFFLINE', text: 'starting' }), reverse: async () => notNow('starting') };
  try {
    const server = await ControlServer.listen(
      controlSocketPath(env),
      {
        health: () => current.health(),
        reverse: (outTradeNo) => current.reverse(outTradeNo),
        display: (since) => (current.display ? current.display(since) : { error: 'this daemon reads no customer-display line' }),
        refund: (request) =>
          current.refund ? current.refund(request) : Promise.resolve({ ok: false, state: 'none', line: `FAILED ${request.rid} FAULT`, text: 'the box takes no refund now' }),
      },
      log,
    );
    return { setHandlers: (handlers) => void (current = handlers), close: (graceMs) => server.close(graceMs) };
  } catch (error) {
    log.warning('control socket unavailable: technician commands will read the journal only', { error: messageOf(error) });
    return null;
  }
}

/** `scanbox display`: the line's settings, counts and the entries after `since`, as the daemon reads them. */
function displayHandler(config: Config, devices: Devices): Pick<ControlHandlers, 'display'> {
  const display = devices.display;
  const settings = config.display;
  if (!display || !settings) return {};
  return {
    display: (since) => ({
      port: settings.port,
      out_port: settings.outPort,
      family: settings.family,
      baud: settings.baud,
      parity: settings.parity,
      settle_ms: settings.settleMs,
      mode: settings.mode,
      counts: { ...display.line.counts, undecodable: display.reading.undecodableBytes },
      armed_fen: display.reading.armedFen,
      entries: fitting(display.reading.since(since)),
    }),
  };
}

/** The newest entries whose JSON fits one control answer (64 KiB), oldest first: `--follow` asks again for the rest. */
function fitting<T>(entries: T[], budget = 48_000): T[] {
  let used = 0;
  let first = entries.length;
  while (first > 0) {
    const size = JSON.stringify(entries[first - 1]).length + 1;
    if (used + size > budget) break;
    used += size;
    first--;
  }
  return entries.slice(first);
}

function notNow(why: string): { ok: false; state: string; code: null; text: string } {
  return { ok: false, state: 'unknown', code: null, text: `nothing can be reversed while ${why}` };
}

/**
 * systemd's side of a running daemon: READY once the box answers the register, STATUS following the health,
 * the watchdog fed only while the event loop keeps time and `journalAnswers` says the journal still answers;
 * resolves at SIGTERM or SIGINT, once STOPPING is said.
 */
async function serveUntilStopped(
  env: NodeJS.ProcessEnv,
  log: Logger,
  health: () => Health,
  stopping: string,
  journalAnswers: (() => boolean) | null,
): Promise<void> {
  const describe = (): string => describeHealth(health());
  const notifier = createNotifier(env, log);
  notifier.ready(describe());
  const ticks = healthTicks(notifier, describe, log, journalAnswers);
  await stopSignal(log);
  notifier.stopping(stopping);
  clearInterval(ticks);
}

async function closeDevices(devices: Devices): Promise<void> {
  devices.display?.reading.close();
  await Promise.allSettled([devices.scanner.close(), devices.register?.close(), devices.display?.line.close()]);
  devices.indicator.close();
}

/**
 * systemd: STATUS follows the health; the watchdog is fed only while the event loop keeps time and
 * `journalAnswers` (when given) says the journal still answers, so a wedged daemon gets restarted.
 */
function healthTicks(notifier: Notifier, describe: () => string, log: Logger, journalAnswers: (() => boolean) | null): NodeJS.Timeout {
  const tickMs = Math.min(5000, notifier.watchdogMs ? Math.floor(notifier.watchdogMs / 2) : 5000);
  let expected = Date.now() + tickMs;
  return setInterval(() => {
    const lag = Date.now() - expected;
    expected = Date.now() + tickMs;
    notifier.status(describe());
    if (!notifier.watchdogMs) return;
    const journalOk = journalAnswers ? journalAnswers() : true;
    if (journalOk && lag < notifier.watchdogMs / 2) notifier.watchdog();
    else if (journalOk) log.warning('event loop stalled: watchdog not fed', { ms: lag });
  }, tickMs);
}

/** Resolves at the first SIGTERM or SIGINT. */
function stopSignal(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal });
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

export interface JournalFault {
  /** The register's words: `STATUS FAULT <text>`, `ERR FAULT <text>`. */
  text: string;
  /** The start of the log line: what is wrong. */
  problem: string;
  /** The rest of the log line: what a technician does about it. */
  advice: string;
  /** The journal's own message (it names the file). */
  error: string;
}

/** SQLITE_BUSY or SQLITE_LOCKED at open: another process holds the journal, which passes by itself. */
function lockedByAnother(error: unknown): boolean {
  if (!(error instanceof JournalError) || error.code !== 'IO') return false;
  const cause = errnoOf(error.cause);
  return cause !== undefined && (cause.startsWith('SQLITE_BUSY') || cause.startsWith('SQLITE_LOCKED'));
}

/** Why the journal could not be opened (or recovery could not write it), in the words the register, the log and systemd use. */
export function journalFault(error: unknown, stage: 'open' | 'recovery'): JournalFault {
  const message = messageOf(error);
  const code = error instanceof JournalError ? error.code : null;
  if (code === 'CORRUPT') {
    return {
      text: 'journal damaged, call the technician',
      problem: 'journal damaged',
      advice:
        '; the file is kept for inspection; move it aside (with any -wal and -shm file beside it) to start a new journal, ' +
        'then check the merchant platform for payments of the sales it left unfinished',
      error: message,
    };
  }
  if (code === 'READONLY') {
    return {
      text: 'journal cannot be written, call the technician',
      problem: 'journal cannot be written',
      advice: "; make the state directory and the journal writable by the daemon's user (or the disk writable), then restart scanbox",
      error: message,
    };
  }
  if (code === 'FULL') {
    return {
      text: 'disk full, journal cannot be written, call the technician',
      problem: 'journal cannot be written, the disk is full',
      advice: `; free space on the disk, then restart scanbox${stage === 'recovery' ? ': it finishes the unfinished sales first' : ''}`,
      error: message,
    };
  }
  if (stage === 'recovery' && code === null) {
    return {
      text: 'unfinished sales cannot be recovered, call the technician',
      problem: 'recovery of unfinished sales failed',
      advice: '; the journal is left as it is; send this log to the developers',
      error: message,
    };
  }
  return {
    text: `journal cannot be ${stage === 'open' ? 'opened' : 'used'}, call the technician`,
    problem: `journal cannot be ${stage === 'open' ? 'opened' : 'used'}`,
    advice: '; fix what the error says, then restart scanbox',
    error: message,
  };
}

/**
 * FAULT mode: the journal cannot be used, so no sale can be journalled and none is taken. The file is not
 * touched again. The box stays up and says so (one error line, `STATUS FAULT`, `ERR FAULT` for every PAY,
 * the offline/fault light, systemd's STATUS) instead of exiting into a restart loop that would hide the
 * reason behind "activating". The watchdog is fed while the event loop runs: a restart changes nothing.
 */
async function runFaulted(
  env: NodeJS.ProcessEnv,
  config: Config,
  log: Logger,
  devices: Devices,
  control: Control | null,
  fault: JournalFault,
  startedAt: number,
): Promise<number> {
  log.error(`${fault.problem}: no sales until a technician looks at it${fault.advice}`, { db: config.dbPath, error: fault.error });
  const box = new FaultBox({ ...devices, log, maxAmountFen: config.maxAmountFen, text: fault.text });
  control?.setHandlers({ health: () => box.health(), reverse: async () => notNow(`${fault.text}: ${fault.error}`), ...displayHandler(config, devices) });
  box.start();
  devices.scanner.start();
  devices.register?.start();
  devices.display?.line.start();
  log.info('box in FAULT mode: answering the register, taking no sale', { health: box.health().kind });
  // The fleet hears of a box in FAULT mode too: that is when a person is needed.
  const fleet = startFleetReports(config, log, { health: () => box.health(), journal: null, dbPath: config.dbPath, startedAt, clock: systemClock, timeZone: config.timeZone });
  await serveUntilStopped(env, log, () => box.health(), 'stopping', null);
  await Promise.all([control?.close(5_000), box.stop()]);
  await fleet.stop();
  await closeDevices(devices);
  log.info('stopped');
  return 0;
}
