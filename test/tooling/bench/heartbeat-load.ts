import { readFileSync } from 'node:fs';
import https from 'node:https';

/**
 * The bench's heartbeat load (console-scale.ts), in its own process so that its CPU is not the backend's: each
 * box of the plan sends `each` heartbeats, each on a new TLS connection (agent: false) or, with keepAlive, all on
 * one kept connection per box; 8 boxes at a time.
 * Prints {ok, failed} as JSON.
 */
const plan = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { origin: string; ca: string; boxes: { cert: string; key: string }[]; each: number; report: unknown; keepAlive: boolean };
// keepAlive: one connection per box, kept between its heartbeats (what a backend keeping connections past a minute would see).
const agents = new Map<string, https.Agent>();
const agentOf = (box: { cert: string; key: string }): https.Agent | false => {
  if (!plan.keepAlive) return false;
  let agent = agents.get(box.cert);
  if (agent === undefined) agents.set(box.cert, (agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: plan.ca, cert: box.cert, key: box.key })));
  return agent;
};
const url = new URL('/v1/heartbeat', plan.origin);
const body = JSON.stringify(plan.report);

function beat(box: { cert: string; key: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.request(url, { method: 'POST', agent: agentOf(box), ca: plan.ca, cert: box.cert, key: box.key, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 204));
    });
    req.on('error', () => resolve(false));
    req.end(body);
  });
}

let ok = 0;
let failed = 0;
const queue = plan.boxes.flatMap((box) => Array.from({ length: plan.each }, () => box));
async function worker(): Promise<void> {
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    if (await beat(next)) ok++;
    else failed++;
  }
}
await Promise.all(Array.from({ length: 8 }, worker));
for (const agent of agents.values()) agent.destroy();
process.stdout.write(JSON.stringify({ ok, failed }));
