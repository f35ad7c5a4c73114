import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { boxFigures, healthWatchKey, heartbeatOf, type FigureSource } from './figures.js';
import { VERSION } from '../version.js';
import { HeartbeatSender } from './heartbeat.js';
import { MetricsFile } from './metrics-file.js';

/**
 * What the daemon tells the fleet about itself (contract §11), in either of its modes (taking sales, FAULT):
 * heartbeats to the backend in backend mode, and SCANBOX_METRICS_FILE every minute in either mode. Started once the box answers the register, stopped before it closes.
 */
export interface FleetReports {
  heartbeat: HeartbeatSender | null;
  stop(): Promise<void>;
}

export function startFleetReports(config: Config, log: Logger, source: FigureSource, metricsEveryMs = 60_000): FleetReports {
  let metrics: NodeJS.Timeout | null = null;
  let writing: Promise<void> | null = null;
  if (config.metricsFile) {
    const file = new MetricsFile(config.metricsFile, config.deviceId, VERSION, log);
    const write = (): void => {
      writing ??= file
        .write(boxFigures(source))
        .catch(() => undefined)
        .finally(() => (writing = null));
    };
    write();
    metrics = setInterval(write, metricsEveryMs);
    metrics.unref();
  }
  let heartbeat: HeartbeatSender | null = null;
  if (config.backend) {
    heartbeat = new HeartbeatSender({
      origin: config.backend.origin,
      certificate: { certPem: config.backend.certPem, keyPem: config.backend.keyPem },
      caPem: config.backend.caPem,
      report: () => heartbeatOf(boxFigures(source)),
      watch: () => healthWatchKey(source.health()),
      log,
    });
    heartbeat.start();
  }
  return {
    heartbeat,
    async stop() {
      if (metrics) clearInterval(metrics);
      await writing;
      await heartbeat?.stop();
    },
  };
}
