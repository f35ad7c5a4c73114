import { systemClock } from '../clock.js';
import { Box } from '../box.js';
import { loadConfig, type Config } from '../config.js';
import { ControlServer, controlSocketPath, reverseAnswer } from '../control.js';
import { onoffBackend } from '../devices/gpio.js';
import { Indicator } from '../devices/indicator.js';
import { LinePort } from '../devices/line-port.js';
import { Journal } from '../journal/journal.js';
import { createLogger, type Level, type Logger } from '../log.js';
import { PaymentEngine } from '../payment/engine.js';
import { clockTrusted, createNotifier } from '../systemd.js';
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
    log.error('journal cannot be opened: no sales until a technician looks at it', {
      db: config.dbPath,
      error: (error as Error).message,
    });
    await client.close();
    return 1;
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
  const recovered = await engine.recover();
  if (recovered.length > 0) log.warning('recovery finished unfinished sales', { count: recovered.length });
  engine.startReversalQueue(5000);

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
    probe: () => client.orderquery({ outTradeNo: `${config.deviceId}PROBE` }),
    clockSane: () => clockTrusted(clock.now()),
  });
  box.start();
  scanner.start();
  register.start();
  const describe = (): string => {
    const health = box!.health();
    return health.kind === 'READY' ? 'READY' : health.kind === 'BUSY' ? `BUSY ${health.ref}` : `${health.kind} ${health.text}`;
  };
  log.info('ready for sales', { health: box.health().kind });

  // systemd: READY once the box answers the register; STATUS follows the health; the watchdog is fed
  // only while the event loop keeps time and the journal answers, so a wedged daemon gets restarted.
  const notifier = createNotifier(env, log);
  notifier.ready(describe());
  const tickMs = Math.min(5000, notifier.watchdogMs ? Math.floor(notifier.watchdogMs / 2) : 5000);
  let expected = Date.now() + tickMs;
  const health = setInterval(() => {
    const lag = Date.now() - expected;
    expected = Date.now() + tickMs;
    notifier.status(describe());
    if (!notifier.watchdogMs) return;
    let journalOk = true;
    try {
      journal.counts();
    } catch (error) {
      journalOk = false;
      log.error('journal does not answer: watchdog not fed', { error: (error as Error).message });
    }
    if (journalOk && lag < notifier.watchdogMs / 2) notifier.watchdog();
    else if (journalOk) log.warning('event loop stalled: watchdog not fed', { ms: lag });
  }, tickMs);

  const stopped = new Promise<void>((resolve) => {
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
  await stopped;
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
