import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enrolBox } from '../../../src/backend/enrol.js';
import { BackendPki, type BoxCertificate } from '../../../src/backend/pki.js';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { PostgresBackendStore } from '../../../src/backend/store/postgres.js';
import { SqliteBackendStore, type BackendStore } from '../../../src/backend/store.js';
import { createLogger } from '../../../src/log.js';
import { packageRoot } from '../../../src/simulator/package-root.js';
import { Daemon, Rig } from '../../../src/simulator/rig.js';
import { freePort, PG_PASSWORD, startPostgres, type PgCluster } from '../../helpers/postgres.js';
import type { LoadAnswer, LoadCommand } from './chain-load.js';
import { quantile, type Row } from './common.js';
import { CpuMeter, cpuMsOf, cpuTimesOf, ownCpuMs, ownSystemMs, perCall, treeCpuMs, treeSystemMs } from './cpu.js';
import { DelayProxy } from './delay-proxy.js';

/**
 * The bench's `chain` part (README "A chain"): simulated boxes (real mutual-TLS clients with enrolled
 * certificates, BackendGateway) drive `scanbox backend` processes against the simulator behind a proxy that makes
 * each WeChat Pay answer take 50 ms (25 ms each way).
 *
 * - At 50, 150 and 500 calls/s (open loop, half micropay, half orderquery of a paid order), the latency of each
 *   call through two backends on one PostgreSQL, and of the same calls made straight to the simulator (the
 *   merchant's client, through the same proxy): the backend's added p50 and p99. The same with one backend on
 *   SQLite, reported beside them (the targets are the chain's: two backends on PostgreSQL).
 * - The sustained rate: every box makes its next call as soon as its last is answered (a box makes one call at a
 *   time); calls completed per second.
 * - CPU ms per call of every process (each backend, PostgreSQL's processes, this process with the simulator and
 *   the proxy, the load generator: a process of its own, chain-load.ts), from /proc: figures that mean something
 *   on a loaded machine, where calls per second do not. PostgreSQL runs with fsync on, as in production.
 * - One backend SIGKILLed at full load: boxes on BackendChain naming both; every micropay answered is checked at
 *   the simulator (success: charged; a business failure: nothing charged), so 0 must be answered wrongly; calls
 *   that never left a box and went to the other backend are counted; the time until every box has a success again.
 *
 * Knobs: BENCH_CHAIN_SECONDS (per rate, default 5), BENCH_CHAIN_BOXES (default 64), BENCH_CHAIN_WARMUP (default 3 s),
 * BENCH_CHAIN_STORES (pg,sqlite), BENCH_CHAIN_RATES (50,150,500), BENCH_CHAIN_PROF (a directory: the backends run under --cpu-prof).
 */

const SECONDS = Number(process.env.BENCH_CHAIN_SECONDS ?? 5);
const BOXES = Number(process.env.BENCH_CHAIN_BOXES ?? 64);
/** BENCH_CHAIN_RATES: the open-loop rates, calls/s, comma-separated (default 50,150,500). */
const RATES = (process.env.BENCH_CHAIN_RATES ?? '50,150,500').split(',').map(Number);
/**
 * BENCH_CHAIN_WARMUP (s, default 3): a closed loop, not measured, before the rates. Fresh processes run their
 * code unoptimised for the first thousand calls or so (V8 compiles the hot paths as they run): without it the
 * first rates measured a cold backend at two to three times the CPU per call of a warm one, and a backend runs
 * for days.
 */
const WARMUP = Number(process.env.BENCH_CHAIN_WARMUP ?? 3);
const CLI = join(packageRoot(), 'dist', 'cli.js');

/** The load generator, a process of its own (chain-load.ts): one command at a time, one answer each. */
class Load {
  private readonly child: ChildProcess;
  private waiting: { resolve: (a: LoadAnswer) => void; reject: (e: Error) => void } | null = null;
  onKillNow: () => void = () => undefined;

  constructor() {
    this.child = fork(join(dirname(fileURLToPath(import.meta.url)), 'chain-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (a: LoadAnswer) => {
      if (a.op === 'kill-now') return this.onKillNow();
      const w = this.waiting;
      this.waiting = null;
      if (a.op === 'error') w?.reject(new Error(`load generator: ${a.message}`));
      else w?.resolve(a);
    });
    this.child.once('exit', (code) => this.waiting?.reject(new Error(`the load generator exited (${code})`)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  tell(cmd: LoadCommand): void {
    this.child.send(cmd);
  }

  ask<T extends LoadAnswer['op']>(cmd: LoadCommand, op: T): Promise<Extract<LoadAnswer, { op: T }>> {
    return new Promise<LoadAnswer>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.child.send(cmd);
    }).then((a) => {
      if (a.op !== op) throw new Error(`load generator answered ${a.op} to ${cmd.op}`);
      return a as Extract<LoadAnswer, { op: T }>;
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

function backendEnv(rig: Rig, port: number, adminPort: number, apiBase: string, db: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('SCANBOX_') && k !== 'CREDENTIALS_DIRECTORY' && k !== 'STATE_DIRECTORY' && k !== 'NOTIFY_SOCKET') env[k] = v;
  return {
    ...env,
    SCANBOX_MCH_ID: rig.merchant.mchId,
    SCANBOX_APPID: rig.merchant.appId,
    SCANBOX_API_KEY_FILE: rig.env.SCANBOX_API_KEY_FILE!,
    SCANBOX_CERT_FILE: rig.env.SCANBOX_CERT_FILE!,
    SCANBOX_CERT_KEY_FILE: rig.env.SCANBOX_CERT_KEY_FILE!,
    SCANBOX_API_BASE: apiBase,
    SCANBOX_API_BACKUP_BASE: 'none',
    NODE_EXTRA_CA_CERTS: rig.env.NODE_EXTRA_CA_CERTS!,
    SCANBOX_BACKEND_LISTEN: `127.0.0.1:${port}`,
    // Each backend's console and /metrics on a port of its own.
    SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    SCANBOX_BACKEND_RATE: '100000',
    // The bench's boxes all come from 127.0.0.1 (a chain's come from a thousand shops).
    SCANBOX_BACKEND_MAX_CONNECTIONS_PER_ADDRESS: '100000',
    SCANBOX_LOG_LEVEL: 'warning',
    ...db,
  };
}

/** BENCH_CHAIN_PROF=DIR: each backend runs under --cpu-prof into DIR (stopped with SIGTERM so that it writes it). */
const PROF = process.env.BENCH_CHAIN_PROF;
/** BENCH_CHAIN_STORES: pg, sqlite or both (default). */
const STORES = (process.env.BENCH_CHAIN_STORES ?? 'pg,sqlite').split(',').filter((k): k is 'pg' | 'sqlite' => k === 'pg' || k === 'sqlite');

async function startBackend(env: Record<string, string>): Promise<Daemon> {
  const child = spawn(process.execPath, [...(PROF ? ['--cpu-prof', '--cpu-prof-dir', PROF] : []), CLI, 'backend'], { env: { ...env, SCANBOX_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new Daemon(child);
  await daemon.waitFor(/backend listening/, 30_000);
  return daemon;
}

async function killDaemon(d: Daemon, gently = false): Promise<void> {
  if (d.process.exitCode === null && d.process.signalCode === null) {
    d.process.kill(gently ? 'SIGTERM' : 'SIGKILL');
    await d.exited;
  }
}

interface Setup {
  origins: string[];
  certs: BoxCertificate[];
  caPem: string;
  backends: Daemon[];
}

async function setup(rig: Rig, dir: string, apiBase: string, db: { kind: 'pg'; cluster: PgCluster } | { kind: 'sqlite' }, count: number): Promise<Setup> {
  const pkiDir = join(dir, db.kind, 'pki');
  const log = createLogger({ level: 'error', write: () => undefined });
  let store: BackendStore;
  let dbEnv: Record<string, string>;
  if (db.kind === 'pg') {
    const url = db.cluster.url;
    const parsed = parsePgUrl(url);
    if (!parsed.ok) throw new Error(parsed.problem);
    store = await PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log });
    dbEnv = { SCANBOX_BACKEND_DB: url.replace('postgres://', 'postgres://postgres@'), SCANBOX_BACKEND_DB_PASSWORD_FILE: db.cluster.passwordFile, SCANBOX_BACKEND_PKI: pkiDir };
  } else {
    const path = join(dir, 'sqlite', 'backend.db');
    store = SqliteBackendStore.open(path);
    dbEnv = { SCANBOX_BACKEND_DB: path, SCANBOX_BACKEND_PKI: pkiDir };
  }
  const pki = BackendPki.openOrCreate(pkiDir, { hostnames: [] });
  const certs: BoxCertificate[] = [];
  for (let i = 0; i < BOXES; i++) certs.push((await enrolBox(pki, store, `CB${db.kind.toUpperCase()}${String(i).padStart(3, '0')}`, {})).certificate);
  await store.close();
  const backends: Daemon[] = [];
  const origins: string[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    backends.push(await startBackend(backendEnv(rig, port, await freePort(), apiBase, dbEnv)));
    origins.push(`https://127.0.0.1:${port}`);
  }
  return { origins, certs, caPem: pki.caPem, backends };
}

/** Every process's CPU over a stretch of calls, per call. */
interface Measured {
  calls: number;
  cpu: Record<string, number>;
}

export async function chainPhase(progress: (line: string) => void): Promise<{ rows: Row[]; notes: string[] }> {
  const rows: Row[] = [];
  const notes: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-bench-chain-'));
  const rig = await Rig.start();
  const proxy = await DelayProxy.start({ targetPort: Number(new URL(rig.sim.origin).port), oneWayMs: 25, connectRttMs: 0 });
  const apiBase = `https://127.0.0.1:${proxy.port}`;
  // fsync on, as in production: every commit the journal makes reaches the disk (the tests run without).
  const cluster = await startPostgres({ fsync: true });
  const load = new Load();
  const daemons: Daemon[] = [];
  const pgPid = cluster.primary.pid!;
  try {
    // Each process's CPU, and apart its system part (the kernel's: sockets, fsync).
    const meter = (backends: Daemon[], withPg: boolean): CpuMeter =>
      new CpuMeter({
        ...Object.fromEntries(backends.map((d, i) => [`backend ${i + 1}`, () => cpuMsOf(d.process.pid!)])),
        ...(withPg ? { postgres: () => treeCpuMs(pgPid) } : {}),
        'simulator+proxy': ownCpuMs,
        generator: () => cpuMsOf(load.pid),
        ...Object.fromEntries(backends.map((d, i) => [`sys:backend ${i + 1}`, () => cpuTimesOf(d.process.pid!).system])),
        ...(withPg ? { 'sys:postgres': () => treeSystemMs(pgPid) } : {}),
        'sys:simulator+proxy': ownSystemMs,
        'sys:generator': () => cpuTimesOf(load.pid).system,
      });
    const cpuNote = (label: string, m: Measured): void => {
      const all = Object.entries(m.cpu);
      const p = perCall(
        Object.fromEntries(all.filter(([k]) => !k.startsWith('sys:'))),
        m.calls,
        Object.fromEntries(all.filter(([k]) => k.startsWith('sys:')).map(([k, v]) => [k.slice(4), v])),
      );
      progress(`chain: ${label}: ${p.text}`);
      notes.push(`chain ${label}, CPU ms per call: ${p.text} (${m.calls} calls)`);
    };

    // Straight to the simulator (through the proxy): the reference latency at each rate.
    await load.ask(
      {
        op: 'direct',
        boxes: BOXES,
        prefix: 'CBDIRECT',
        merchant: { mchId: rig.merchant.mchId, appId: rig.merchant.appId, apiKey: rig.merchant.apiKey },
        apiBase,
        caPem: rig.sim.pki.ca.certPem,
        certPem: rig.sim.pki.client.certPem,
        keyPem: rig.sim.pki.client.keyPem,
      },
      'ready',
    );
    await load.ask({ op: 'closed', seconds: WARMUP }, 'closed');
    const directLatency = new Map<number, number[]>();
    for (const rate of RATES) {
      const m = meter([], false);
      m.start();
      const r = await load.ask({ op: 'open', rate, seconds: SECONDS }, 'open');
      const cpu = m.stop();
      directLatency.set(rate, r.ms);
      progress(`chain: straight to the simulator at ${rate} calls/s: p50 ${quantile(r.ms, 0.5).toFixed(1)} ms, p99 ${quantile(r.ms, 0.99).toFixed(1)} ms`);
      if (rate === RATES[RATES.length - 1]) cpuNote(`straight to the simulator at ${rate} calls/s`, { calls: r.ms.length, cpu });
    }

    for (const kind of STORES) {
      const s = await setup(rig, dir, apiBase, kind === 'pg' ? { kind, cluster } : { kind }, kind === 'pg' ? 2 : 1);
      daemons.push(...s.backends);
      const label = kind === 'pg' ? 'two backends on PostgreSQL' : 'one backend on SQLite';
      const certs = s.certs.map((c) => ({ deviceId: c.deviceId, certPem: c.certPem, keyPem: c.keyPem }));
      await load.ask({ op: 'backend', origins: s.origins, certs, caPem: s.caPem }, 'ready');
      await load.ask({ op: 'closed', seconds: WARMUP }, 'closed');
      for (const rate of RATES) {
        const m = meter(s.backends, kind === 'pg');
        m.start();
        const r = await load.ask({ op: 'open', rate, seconds: SECONDS }, 'open');
        const cpu = m.stop();
        const ref = directLatency.get(rate)!;
        const p50 = quantile(r.ms, 0.5) - quantile(ref, 0.5);
        const p99 = quantile(r.ms, 0.99) - quantile(ref, 0.99);
        progress(`chain: ${label} at ${rate} calls/s: p50 ${quantile(r.ms, 0.5).toFixed(1)} ms, p99 ${quantile(r.ms, 0.99).toFixed(1)} ms, ${r.failed} not successful`);
        if (rate === 150) cpuNote(`${label} at ${rate} calls/s`, { calls: r.ms.length, cpu });
        // A reference that cannot keep up itself (the machine cannot make the rate) says nothing about the backend.
        const measurable = quantile(ref, 0.99) < 200 && r.failed === 0;
        rows.push({
          metric: `chain ${label}: added p50 / p99 at ${rate} calls/s`,
          value: measurable ? `${p50.toFixed(1)} / ${p99.toFixed(1)} ms` : `not measurable (reference p99 ${quantile(ref, 0.99).toFixed(0)} ms, ${r.failed} not successful)`,
          // The targets are the chain's (two backends on PostgreSQL); SQLite's figures are reported beside them.
          target: rate === 150 && kind === 'pg' ? 'p99 <= 10 ms' : '-',
          ok: rate === 150 && kind === 'pg' ? (measurable ? p99 <= 10 : false) : null,
        });
        if (r.failed > 0) notes.push(`chain ${label} at ${rate} calls/s: ${r.failed} of ${r.ms.length} calls not successful`);
      }
      const m = meter(s.backends, kind === 'pg');
      m.start();
      const closed = await load.ask({ op: 'closed', seconds: SECONDS }, 'closed');
      const cpu = m.stop();
      const sustained = closed.calls / closed.seconds;
      const per = perCall(Object.fromEntries(Object.entries(cpu).filter(([k]) => !k.startsWith('sys:'))), closed.calls);
      rows.push({
        metric: `chain ${label}: sustained micropay + orderquery`,
        value: `${sustained.toFixed(0)} calls/s`,
        target: kind === 'pg' ? '>= 500 calls/s' : '-',
        ok: kind === 'pg' ? sustained >= 500 : null,
      });
      rows.push({ metric: `chain ${label}: CPU per call at full load, all processes`, value: `${per.total.toFixed(2)} ms`, target: `<= ${((os.cpus().length * 1000) / 500).toFixed(1)} ms`, ok: null });
      progress(`chain: ${label}: ${sustained.toFixed(0)} calls/s sustained (${BOXES} boxes, one call at a time each), ${closed.failed} not successful`);
      cpuNote(`${label} at full load`, { calls: closed.calls, cpu });
      if (closed.failed > 0) notes.push(`chain ${label} at full load: ${closed.failed} of ${closed.calls} calls not successful`);
      await load.ask({ op: 'close' as const }, 'closed-down').catch(() => undefined);

      if (kind === 'pg') {
        // One backend SIGKILLed at full load: boxes on both, each naming both (half of them in the other order).
        load.onKillNow = () => {
          void killDaemon(s.backends[0]!).then(() => load.tell({ op: 'killed' }));
        };
        const k = await load.ask({ op: 'kill', origins: s.origins, certs, caPem: s.caPem, seconds: 4, killAfterMs: 1500 }, 'kill');
        let wrong = 0;
        for (const [otn, success] of k.answered) if (success !== (rig.sim.entry(otn)?.charged === true)) wrong++;
        const worst = k.servedAgainMs.some((v) => v < 0) ? Infinity : Math.max(...k.servedAgainMs);
        rows.push({ metric: 'chain: one backend SIGKILLed at full load: micropays answered wrongly', value: `${wrong} of ${k.answered.length}`, target: '0', ok: wrong === 0 });
        rows.push({ metric: 'chain: ... every box served again after the kill', value: `${worst === Infinity ? 'never' : `${(worst / 1000).toFixed(2)} s`}`, target: '<= 3 s', ok: worst <= 3000 });
        notes.push(`chain kill: ${k.unknown} micropays unknown (in flight at the kill: the box queries and reverses them by the money rules), ${k.retried} calls never left a box and went to the other backend at once`);
      }
      for (const d of s.backends) await killDaemon(d, PROF !== undefined);
      if (PROF) s.backends.forEach((d, i) => writeFileSync(join(PROF, `${kind}-backend-${i + 1}.log`), d.lines.join('\n') + '\n'));
    }
  } finally {
    await load.close();
    for (const d of daemons) await killDaemon(d);
    await cluster.close();
    await proxy.close();
    await rig.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, notes };
}
