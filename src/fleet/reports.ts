import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { boxFigures, healthWatchKey, heartbeatOf, type FigureSource } from './figures.js';
import { HeartbeatSender } from './heartbeat.js';

/**
 * What the daemon tells the fleet about itself (contract §11), in either of its modes (taking sales, FAULT):
 * heartbeats to the backend in backend mode. Started once the box answers the register, stopped before it closes.
 */
export interface FleetReports {
  heartbeat: HeartbeatSender | null;
  stop(): Promise<void>;
}

export function startFleetReports(config: Config, log: Logger, source: FigureSource): FleetReports {
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
      await heartbeat?.stop();
    },
  };
}
