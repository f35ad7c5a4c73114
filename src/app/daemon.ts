import { systemClock } from '../clock.js';
import { Box, FaultBox, type Health } from '../box.js';
import { loadConfig, type Config } from '../config.js';
import { ControlServer, controlSocketPath, reverseAnswer } from '../control.js';
import { onoffBackend } from '../devices/gpio.js';
import { Indicator } from '../devices/indicator.js';
import { LinePort } from '../devices/line-port.js';
import { Journal, JournalError } from '../journal/journal.js';
import { createLogger, type Level, type Logger } from '../log.js';
import { PaymentEngine } from '../payment/engine.js';
import { clockTrusted, createNotifier, type Notifier } from '../systemd.js';
import { VERSION } from '../version.js';
import { CertificateError, WechatPayClient } from '../wechatpay/client.js';

/**
 * `scanbox run`: config -> journal (quick_check) -> recovery -> serial ports -> READY, until SIGTERM.
 * Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration.
 */

function startupLogger(env: NodeJS.ProcessEnv): Logger {
  const wanted = env.SCANBOX_LOG_LEVEL;
  const level: Level = wanted === 'debug' || wanted === 'warning' || wanted === 'error' ? wanted : 'info';
  return createLogger({ level });
}

export function clientFor(config: Config, log: Logger): WechatPayClient {
  return new WechatPayClient({
    merchant: {
      mchId: config.mchId,
      appId: config.appId,
      ...(config.subMchId ? { subMchId: config.subMchId } : {}),
      ...(config.subAppId ? { subAppId: config.subAppId } : {}),
      apiKey: config.apiKey,
      signType: config.signType,
    },
    apiBase: config.apiBase,
    backupBase: config.backupBase,
    certificate: config.certificate,
    log,
  });
}

export async function runCommand(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let log = startupLogger(env);
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    for (const error of loaded.errors) log.error(`configuration: ${error}`);
    return 2;
  }
  const config = loaded.config;
  log = createLogger({ level: config.logLevel });
  const clock = systemClock;
  log.info('scanbox starting', {
    version: VERSION,
    node: process.version,
    device_id: config.deviceId,
    scanner: config.scannerPort,
    register: config.registerPort,
    api: config.apiBase,
    backup: config.backupBase ?? '-',
    db: config.dbPath,
  });

  let client: WechatPayClient;
  try {
    client = clientFor(config, log);
  } catch (error) {
    if (error instanceof CertificateError) {
      log.error(`configuration: merchant certificate: ${error.message}`);
      return 2;
    }
    throw error;
  }

  let journal: Journal;
  try {
    journal = Journal.open(config.dbPath, { deviceId: config.deviceId, clock });
  } catch (error) {
    if (lockedByAnother(error)) {
      // Another process holds the journal for longer than the busy timeout (a technician's local `scanbox
      // reverse`): that passes, so exit and let systemd start the box again.
      log.error('journal locked by another process: exiting so that the box is started again', {
        db: config.dbPath,
        error: (error as Error).message,
      });
      await client.close();
      return 1;
    }
    // A restart cannot repair a damaged or unwritable journal: instead of a restart loop the box stays up
    // in FAULT mode and says what is wrong, on the register, the light, systemd's STATUS and the log.
    const code = await runFaulted(env, config, log, journalFault(error, 'open'));
    await client.close();
    return code;
  }
  log.info('journal open', { db: config.dbPath, tag: journal.tag });

  let box: Box | null = null;
  const engine = new PaymentEngine({
    journal,
    gateway: client,
    clock,
    log,
    body: config.body,
    deviceId: config.deviceId,
    pollMs: config.pollMs,
    userpayingTimeoutMs: config.userpayingTimeoutMs,
    onGatewayOutcome: (outcome) => box?.noteGateway(outcome),
  });

  // The technician's commands ask the daemon itself (health, manual reversal) so the two never race;
  // the socket is up during recovery too, which can take minutes while WeChat Pay is unreachable.
  let control: ControlServer | null = null;
  try {
    control = await ControlServer.listen(
      controlSocketPath(env),
      {
        health: () => box?.health() ?? { kind: 'OFFLINE', text: 'recovering unfinished sales' },
        reverse: async (outTradeNo) => reverseAnswer(await engine.manualReverse(outTradeNo)),
      },
      log,
    );
  } catch (error) {
    log.warning('control socket unavailable: technician commands will read the journal only', { error: (error as Error).message });
  }
  let recovered: Awaited<ReturnType<PaymentEngine['recover']>>;
  try {
    recovered = await engine.recover();
  } catch (error) {
    // Recovery could not journal a step (a full disk, a card gone read-only or bad): the unfinished sale
    // stays as the journal has it, to be finished at a start that can write. Meanwhile the box stays up in
    // FAULT mode: a restart would meet the same wall (and before this, the daemon hung without its ports
    // until systemd's start timeout, query after query).
    await control?.close(5_000);
    journal.close();
    const code = await runFaulted(env, config, log, journalFault(error, 'recovery'));
    await client.close();
    return code;
  }
  if (recovered.length > 0) log.warning('recovery finished unfinished sales', { count: recovered.length });
  engine.startReversalQueue(5000);

  const { indicator, scanner, register } = devices(config, log);
  box = new Box({
    engine,
    journal,
    register,
    scanner,
    indicator,
    clock,
    log,
    maxAmountFen: config.maxAmountFen,
    scanTimeoutMs: config.scanTimeoutMs,
    retentionMs: config.retentionDays * 24 * 3600 * 1000,
    primaryOrigin: config.apiBase,
    probe: () => client.orderquery({ outTradeNo: `${config.deviceId}PROBE` }),
    clockSane: () => clockTrusted(clock.now()),
  });
  box.start();
  scanner.start();
  register.start();
  const describe = (): string => describeHealth(box!.health());
  log.info('ready for sales', { health: box.health().kind });

  // systemd: READY once the box answers the register; STATUS follows the health; the watchdog is fed
  // only while the event loop keeps time and the journal answers, so a wedged daemon gets restarted.
  const notifier = createNotifier(env, log);
  notifier.ready(describe());
  const health = healthTicks(notifier, describe, log, () => {
    try {
      journal.counts();
      return true;
    } catch (error) {
      log.error('journal does not answer: watchdog not fed', { error: (error as Error).message });
      return false;
    }
  });

  await stopSignal(log);
  notifier.stopping('stopping: finishing the open sale');
  clearInterval(health);
  // A technician's reversal under way gets the same grace as an open sale.
  await Promise.all([control?.close(20_000), box.stop()]);
  await engine.stopReversalQueue();
  await Promise.allSettled([scanner.close(), register.close()]);
  indicator.close();
  journal.close();
  await client.close();
  log.info('stopped');
  return 0;
}

/** What the register, systemd and `scanbox status` say about the box: `READY`, `BUSY R1`, `FAULT ...`. */
function describeHealth(health: Health): string {
  return health.kind === 'READY' ? 'READY' : health.kind === 'BUSY' ? `BUSY ${health.ref}` : `${health.kind} ${health.text}`;
}

/** The customer light and the two serial ports, not started yet. */
function devices(config: Config, log: Logger): { indicator: Indicator; scanner: LinePort; register: LinePort } {
  const clock = systemClock;
  let indicator: Indicator;
  try {
    indicator = new Indicator({ pins: config.gpio, backend: onoffBackend({ log }), log, clock });
  } catch (error) {
    // A light that cannot be driven must not stop the box taking payments: the register still hears
    // every answer. The technician sees why in the log.
    log.error('light and buzzer unavailable: running without them', { error: (error as Error).message });
    indicator = new Indicator({ pins: { green: null, red: null, buzzer: null }, backend: null, log, clock });
  }
  const scanner = new LinePort({ name: 'scanner', path: config.scannerPort, baudRate: config.scannerBaud, log, clock });
  const register = new LinePort({ name: 'register', path: config.registerPort, baudRate: config.registerBaud, log, clock });
  return { indicator, scanner, register };
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
  const cause = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof cause === 'string' && (cause.startsWith('SQLITE_BUSY') || cause.startsWith('SQLITE_LOCKED'));
}

/** Why the journal could not be opened (or recovery could not write it), in the words the register, the log and systemd use. */
export function journalFault(error: unknown, stage: 'open' | 'recovery'): JournalFault {
  const message = error instanceof Error ? error.message : String(error);
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
async function runFaulted(env: NodeJS.ProcessEnv, config: Config, log: Logger, fault: JournalFault): Promise<number> {
  log.error(`${fault.problem}: no sales until a technician looks at it${fault.advice}`, { db: config.dbPath, error: fault.error });
  const { indicator, scanner, register } = devices(config, log);
  const box = new FaultBox({ register, scanner, indicator, log, maxAmountFen: config.maxAmountFen, text: fault.text });
  let control: ControlServer | null = null;
  try {
    control = await ControlServer.listen(
      controlSocketPath(env),
      {
        health: () => box.health(),
        reverse: async () => ({ ok: false, state: 'unknown', code: null, text: `nothing can be reversed while ${fault.text}: ${fault.error}` }),
      },
      log,
    );
  } catch (error) {
    log.warning('control socket unavailable: technician commands will read the journal only', { error: (error as Error).message });
  }
  box.start();
  scanner.start();
  register.start();
  const describe = (): string => describeHealth(box.health());
  log.info('box in FAULT mode: answering the register, taking no sale', { health: box.health().kind });
  const notifier = createNotifier(env, log);
  notifier.ready(describe());
  const health = healthTicks(notifier, describe, log, null);

  await stopSignal(log);
  notifier.stopping('stopping');
  clearInterval(health);
  await Promise.all([control?.close(5_000), box.stop()]);
  await Promise.allSettled([scanner.close(), register.close()]);
  indicator.close();
  log.info('stopped');
  return 0;
}
