import { readFileSync } from 'node:fs';
import { Rig } from '../../../src/simulator/rig.js';
import { paymentCode } from '../../../src/simulator/scenarios.js';
import { makeYearJournal } from './year-journal.js';

/**
 * The bench's memory target alone, and where the memory is: `node build/tooling/test/tooling/bench/memory.js`
 * (after `npm run bench` or the two tsc builds). Runs the built daemon as index.ts does (its ptys, the
 * simulator over HTTPS, the flags and environment of src/runtime.ts), 200 warm-up sales, then BENCH_SALES
 * (default 10,000) paid sales one after another, and every BENCH_EVERY sales (default 500) prints:
 * - private: `Anonymous:` of /proc/PID/smaps_rollup, the figure of the bench's memory target;
 * - where those pages are, from /proc/PID/smaps: [heap] (glibc's main arena, grown by brk), anonymous
 *   mappings (V8's heap pages, glibc's mmapped chunks, thread stacks), and copy-on-write pages of file
 *   mappings (the binary's and libraries' data);
 * - with BENCH_TRACE_GC=1, the V8 heap (used and committed) after the last collection (the daemon runs with
 *   --trace-gc, which Node refuses in NODE_OPTIONS, so it goes on the command line through a shell).
 * At the end: the growth from sale 2,000 to the last sample against the bench's 1 MB target, and the
 * mappings whose private pages grew most over it.
 *
 * Knobs, for trying a setting without changing the product: BENCH_NODE_OPTIONS (V8 flags, as in index.ts),
 * BENCH_WRAP (a program and its arguments, split at spaces, that runs the daemon: `strace -f -k -e trace=brk -o F`
 * shows who grows glibc's heap),
 * BENCH_ENV ("NAME=value NAME2=value": more environment for the daemon, e.g. a glibc tunable), BENCH_PREFILL
 * (start on a journal already holding that many settled sales, year-journal.ts, as a box does after its first
 * weeks, instead of on an empty one).
 */

const SALES = Number(process.env.BENCH_SALES ?? 10_000);
const EVERY = Number(process.env.BENCH_EVERY ?? 500);
const WARMUP = 200;
const FROM = Math.min(2000, SALES);
const PREFILL = Number(process.env.BENCH_PREFILL ?? 0);

const extraEnv: Record<string, string> = {};
if (process.env.BENCH_NODE_OPTIONS) extraEnv.NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS;
for (const pair of (process.env.BENCH_ENV ?? '').split(/\s+/).filter(Boolean)) {
  const eq = pair.indexOf('=');
  if (eq <= 0) throw new Error(`BENCH_ENV: "${pair}" is not NAME=value`);
  extraEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
}

interface Mapping {
  key: string;
  kind: 'heap' | 'anon' | 'file' | 'other';
  sizeKb: number;
  anonKb: number;
}

interface Sample {
  sales: number;
  privateMb: number;
  heapMb: number;
  anonMapsMb: number;
  anonMaps: number;
  fileCowMb: number;
  otherMb: number;
  v8: string;
  mappings: Map<string, Mapping>;
}

const kbOf = (text: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);

function smaps(pid: number): Map<string, Mapping> {
  const out = new Map<string, Mapping>();
  let current: Mapping | null = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[3]!.trim();
      const kind: Mapping['kind'] = path === '[heap]' ? 'heap' : path === '' ? 'anon' : path.startsWith('/') ? 'file' : 'other';
      current = { key: `${head[1]} ${path}`, kind, sizeKb: (parseInt(head[2]!, 16) - parseInt(head[1]!, 16)) / 1024, anonKb: 0 };
      out.set(current.key, current);
      continue;
    }
    const anon = /^Anonymous:\s+(\d+) kB/.exec(line);
    if (anon && current) current.anonKb = Number(anon[1]);
  }
  return out;
}

let lastGc = '-';
function take(pid: number, sales: number): Sample {
  const privateMb = kbOf(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Anonymous') / 1024;
  const mappings = smaps(pid);
  const sum = (kind: Mapping['kind']): number => [...mappings.values()].filter((m) => m.kind === kind).reduce((a, m) => a + m.anonKb, 0) / 1024;
  const anonMaps = [...mappings.values()].filter((m) => m.kind === 'anon' && m.anonKb > 0).length;
  return { sales, privateMb, heapMb: sum('heap'), anonMapsMb: sum('anon'), anonMaps, fileCowMb: sum('file'), otherMb: sum('other'), v8: lastGc, mappings };
}

async function main(): Promise<void> {
  const rig = await Rig.start({ env: { SCANBOX_LOG_LEVEL: 'info' } });
  try {
    if (PREFILL > 0) {
      const made = makeYearJournal(rig.dbPath, 'BENCH01', PREFILL);
      process.stdout.write(`journal prefilled with ${PREFILL} settled sales: ${(made.bytes / 1e6).toFixed(1)} MB\n`);
    }
    const { daemon, ready } = rig.spawnDaemon({
      env: extraEnv,
      timeoutMs: 60_000,
      wrap: process.env.BENCH_WRAP
        ? process.env.BENCH_WRAP.split(/\s+/).filter(Boolean)
        : process.env.BENCH_TRACE_GC === '1'
          ? ['/bin/sh', '-c', 'exec "$0" --trace-gc "$@"']
          : [],
      onLog: (line) => {
        // --trace-gc: "... Mark-Compact 12.3 (14.1) -> 11.8 (14.6) MB, ..." (used (committed) before -> after).
        const gc = /(Scavenge|Mark-Compact|Mark-sweep)[^\d]*[\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\) MB/.exec(line);
        if (gc) lastGc = `${gc[2]}/${gc[3]}`;
      },
    });
    await ready;
    const pid = daemon.process.pid!;
    process.stdout.write(`daemon pid ${pid}; extra environment: ${JSON.stringify(extraEnv)}\n`);
    let waiting: { ref: string; verb: 'ACK' | 'PAID'; resolve: () => void; reject: (e: Error) => void } | null = null;
    rig.register.onLine = (line) => {
      const [verb, ref] = line.split(' ');
      if (!waiting || ref !== waiting.ref) return;
      if (verb === 'FAILED') return waiting.reject(new Error(line));
      if (verb === waiting.verb) waiting.resolve();
    };
    const expect = (ref: string, verb: 'ACK' | 'PAID'): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sale ${ref}: no ${verb} within 10 s`)), 10_000);
        waiting = { ref, verb, resolve: () => (clearTimeout(timer), resolve()), reject: (e) => (clearTimeout(timer), reject(e)) };
      });
    let n = 0;
    const sale = async (): Promise<void> => {
      const ref = `M${++n}`;
      const acked = expect(ref, 'ACK');
      rig.register.send(`PAY ${100 + (n % 9000)} ${ref}`);
      await acked;
      const paid = expect(ref, 'PAID');
      rig.scanner.send(paymentCode(n));
      await paid;
    };
    for (let i = 0; i < WARMUP; i++) await sale();
    const header = 'sales   private   [heap]  anon-maps (n)  file-cow  other   v8 used/committed MB';
    process.stdout.write(header + '\n');
    const samples: Sample[] = [];
    const print = (s: Sample): void => {
      process.stdout.write(
        `${String(s.sales).padStart(5)}  ${s.privateMb.toFixed(2).padStart(7)}  ${s.heapMb.toFixed(2).padStart(7)}  ` +
          `${s.anonMapsMb.toFixed(2).padStart(7)} (${String(s.anonMaps).padStart(3)})  ${s.fileCowMb.toFixed(2).padStart(7)}  ${s.otherMb.toFixed(2).padStart(5)}   ${s.v8}\n`,
      );
    };
    samples.push(take(pid, 0));
    print(samples[0]!);
    const started = performance.now();
    for (let i = 1; i <= SALES; i++) {
      await sale();
      if (i % EVERY === 0 || i === SALES) {
        samples.push(take(pid, i));
        print(samples[samples.length - 1]!);
      }
    }
    const ms = (performance.now() - started) / SALES;
    const from = samples.find((s) => s.sales === FROM) ?? samples[0]!;
    const end = samples[samples.length - 1]!;
    const growth = end.privateMb - from.privateMb;
    process.stdout.write(
      `\nprivate memory: ${from.privateMb.toFixed(1)} MB at sale ${from.sales}, ${end.privateMb.toFixed(1)} MB at ${end.sales} ` +
        `(max ${Math.max(...samples.map((s) => s.privateMb)).toFixed(1)}): growth ${growth >= 0 ? '+' : ''}${growth.toFixed(2)} MB ` +
        `(target <= 1 MB: ${growth <= 1 ? 'ok' : 'MISSED'}); ${ms.toFixed(1)} ms per sale\n`,
    );
    const deltas = [...end.mappings.values()]
      .map((m) => ({ m, delta: m.anonKb - (from.mappings.get(m.key)?.anonKb ?? 0) }))
      .concat([...from.mappings.values()].filter((m) => !end.mappings.has(m.key)).map((m) => ({ m, delta: -m.anonKb })))
      .filter((d) => d.delta !== 0)
      .sort((a, b) => Math.abs(b.delta) - Math.abs(a.delta));
    process.stdout.write(`mappings whose private pages changed most from sale ${from.sales} to ${end.sales} (kB; size of the mapping):\n`);
    for (const { m, delta } of deltas.slice(0, 12)) {
      process.stdout.write(`  ${(delta >= 0 ? '+' : '') + delta}`.padEnd(10) + ` ${m.key} (${m.kind}, ${m.sizeKb} kB)\n`);
    }
    const code = await rig.stopDaemon();
    if (code !== 0) throw new Error(`the daemon stopped with exit code ${code}`);
    process.exitCode = growth <= 1 ? 0 : 1;
  } finally {
    await rig.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`memory: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
