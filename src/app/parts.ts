import { systemClock, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import { onoffBackend } from '../devices/gpio.js';
import { Indicator } from '../devices/indicator.js';
import { LinePort } from '../devices/line-port.js';
import { CustomerDisplay } from '../devices/display/display.js';
import { DisplayLine } from '../devices/display/line.js';
import { Announcer } from '../devices/voice/announcer.js';
import type { Journal } from '../journal/journal.js';
import { createLogger, type Level, type Logger } from '../log.js';
import { PaymentEngine, type PaymentGateway } from '../payment/engine.js';
import { RefundEngine, type RefundGateway } from '../payment/refund.js';
import type { ApiOutcome } from '../wechatpay/client.js';
import { BackendChain } from '../backend/chain.js';
import { BackendGateway } from '../backend/gateway.js';
import { WechatPayClient } from '../wechatpay/client.js';

/**
 * The pieces of the box, each built one way from the configuration: the daemon (app/daemon.ts) assembles
 * them, FAULT mode reuses the devices, and the technician's commands build the client and the engine from
 * here when the daemon is stopped, so a command acting alone follows the daemon's rules.
 */

/** The logger before the configuration is known: SCANBOX_LOG_LEVEL if it is one of the levels, else info. */
export function startupLogger(env: NodeJS.ProcessEnv): Logger {
  const wanted = env.SCANBOX_LOG_LEVEL;
  const level: Level = wanted === 'debug' || wanted === 'warning' || wanted === 'error' ? wanted : 'info';
  return createLogger({ level });
}

/**
 * Every WeChat Pay call the box makes, whoever makes them: the box itself (WechatPayClient) or, in backend
 * mode, the merchant's backend (BackendGateway). The engines, recovery, the probe and reconciliation use it.
 */
export type Upstream = Pick<
  WechatPayClient,
  'micropay' | 'orderquery' | 'reverse' | 'refund' | 'refundquery' | 'downloadbill' | 'warm' | 'cool' | 'close'
> &
  Partial<Pick<WechatPayClient, 'tradeReport'>>;

/** The box's way to WeChat Pay (contract §8): the backend when SCANBOX_BACKEND is set, else WeChat Pay itself. */
export function upstreamFor(config: Config, log: Logger): Upstream {
  if (config.backend && config.backend.origins.length > 1) {
    return new BackendChain({
      origins: config.backend.origins,
      certificate: { certPem: config.backend.certPem, keyPem: config.backend.keyPem },
      caPem: config.backend.caPem,
      log,
    });
  }
  if (config.backend) {
    return new BackendGateway({
      origin: config.backend.origin,
      certificate: { certPem: config.backend.certPem, keyPem: config.backend.keyPem },
      caPem: config.backend.caPem,
      log,
    });
  }
  return clientFor(config, log);
}

/** The WeChat Pay client; throws CertificateError for a merchant certificate that cannot be used. */
export function clientFor(config: Config, log: Logger, options: { payConnections?: number } = {}): WechatPayClient {
  if (config.certificate === null) throw new TypeError('no merchant certificate: the box is in backend mode (upstreamFor)');
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
    ...(options.payConnections === undefined ? {} : { payConnections: options.payConnections }),
  });
}

export function engineFor(
  config: Config,
  parts: { journal: Journal; gateway: PaymentGateway; log: Logger; clock?: Clock; onGatewayOutcome?: (outcome: ApiOutcome) => void },
): PaymentEngine {
  return new PaymentEngine({
    journal: parts.journal,
    gateway: parts.gateway,
    clock: parts.clock ?? systemClock,
    log: parts.log,
    body: config.body,
    deviceId: config.deviceId,
    pollMs: config.pollMs,
    userpayingTimeoutMs: config.userpayingTimeoutMs,
    ...(parts.onGatewayOutcome ? { onGatewayOutcome: parts.onGatewayOutcome } : {}),
  });
}

/** A technician waits longer than the register (10 s) for WeChat Pay's answer to a refund. */
export const TECHNICIAN_REFUND_WAIT_MS = 30_000;

export function refundEngineFor(parts: {
  journal: Journal;
  gateway: RefundGateway;
  log: Logger;
  clock?: Clock;
  onGatewayOutcome?: (outcome: ApiOutcome) => void;
}): RefundEngine {
  return new RefundEngine({
    journal: parts.journal,
    gateway: parts.gateway,
    clock: parts.clock ?? systemClock,
    log: parts.log,
    ...(parts.onGatewayOutcome ? { onGatewayOutcome: parts.onGatewayOutcome } : {}),
  });
}

export interface Devices {
  indicator: Indicator;
  scanner: LinePort;
  /** The register line, or null when the amounts come from the customer-display line. */
  register: LinePort | null;
  /** The customer-display line (contract §10) and the box's reading of it, or null. */
  display: { line: DisplayLine; reading: CustomerDisplay } | null;
}

/** The customer light and the serial ports (scanner, and register or display line), not started yet. */
export function devicesFor(config: Config, log: Logger, clock: Clock = systemClock): Devices {
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
  const register = config.registerPort === null ? null : new LinePort({ name: 'register', path: config.registerPort, baudRate: config.registerBaud, log, clock });
  let display: Devices['display'] = null;
  if (config.display) {
    const settings = config.display;
    const line = new DisplayLine({ path: settings.port, outPath: settings.outPort, baudRate: settings.baud, parity: settings.parity, log, clock });
    const reading = new CustomerDisplay({
      family: settings.family,
      mode: settings.mode,
      settleMs: settings.settleMs,
      maxAmountFen: config.maxAmountFen,
      clock,
      log,
    });
    line.on('data', (chunk) => reading.push(chunk));
    display = { line, reading };
  }
  return { indicator, scanner, register, display };
}

/** The speaker (contract §9): silent without SCANBOX_AUDIO_DEVICE, when it still logs the words at debug. */
export function voiceFor(config: Config, log: Logger): Announcer {
  const voice = config.voice;
  if (voice.device !== null && voice.pack !== null) {
    log.info('voice ready', { device: voice.device, volume: voice.volume, pack: voice.pack.name, rate: voice.pack.rate });
  }
  return new Announcer({ settings: { device: voice.device, volume: voice.volume, two: voice.two }, pack: voice.pack, log });
}
