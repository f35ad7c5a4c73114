import { readFileSync } from 'node:fs';
import type { HeartbeatReport } from '../../../src/backend/heartbeat.js';
import { HeartbeatSender } from '../../../src/fleet/heartbeat.js';
import { createLogger } from '../../../src/log.js';

/**
 * The bench's boxes as they really send heartbeats (console-scale.ts), in a process of their own so that their
 * CPU is not the backend's: each box runs the box's own HeartbeatSender (one at start, then one every `everyMs`
 * on its kept connection), the boxes' starts spread evenly over the first `everyMs`. After that first round it
 * prints "steady", then, `rounds` rounds later, {sent, failed} as JSON, and stops.
 */
const plan = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as {
  origin: string;
  ca: string;
  boxes: { cert: string; key: string }[];
  everyMs: number;
  rounds: number;
  report: HeartbeatReport;
};
const log = createLogger({ level: 'error', write: () => undefined });
const senders: HeartbeatSender[] = [];
const keep = setInterval(() => undefined, 1000);
plan.boxes.forEach((box, i) => {
  setTimeout(() => {
    const sender = new HeartbeatSender({
      origin: plan.origin,
      certificate: { certPem: box.cert, keyPem: box.key },
      caPem: plan.ca,
      report: () => ({ ...plan.report, sentAt: Date.now() }),
      watch: () => 'steady',
      log,
      everyMs: plan.everyMs,
    });
    senders.push(sender);
    sender.start();
  }, Math.floor((plan.everyMs * i) / plan.boxes.length));
});
const total = () => senders.reduce((a, s) => ({ sent: a.sent + s.sent, failed: a.failed + s.failed }), { sent: 0, failed: 0 });
setTimeout(() => {
  const at = total();
  process.stdout.write(`steady ${JSON.stringify(at)}\n`);
  setTimeout(async () => {
    const end = total();
    process.stdout.write(`${JSON.stringify({ sent: end.sent - at.sent, failed: end.failed - at.failed })}\n`);
    await Promise.all(senders.map((s) => s.stop()));
    clearInterval(keep);
    process.exit(0);
  }, plan.everyMs * plan.rounds);
}, plan.everyMs + Math.min(5000, plan.everyMs / 4));
