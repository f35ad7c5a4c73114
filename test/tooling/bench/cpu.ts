import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of processes, from /proc/PID/stat (Linux): user + system, in ms. For the bench's figures that do not
 * depend on how loaded the machine is (CPU ms per call rather than calls per second).
 */

const TICK_MS = 10; // USER_HZ is 100 on every Linux the project runs on (getconf CLK_TCK).

/** utime + stime (and, with `children`, cutime + cstime: children already reaped) of one process, in ms; 0 when gone. */
export function cpuMsOf(pid: number, children = false): number {
  const t = cpuTimesOf(pid, children);
  return t.user + t.system;
}

/** The same, user and system apart (system: the kernel's part, the sockets' and the disk's). */
export function cpuTimesOf(pid: number, children = false): { user: number; system: number } {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return { user: 0, system: 0 };
  }
  // The command name is in parentheses and may hold spaces: the fields after it are counted from its end.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
  const user = Number(f[11]) + (children ? Number(f[13]) : 0);
  const system = Number(f[12]) + (children ? Number(f[14]) : 0);
  return { user: user * TICK_MS, system: system * TICK_MS };
}

/** System CPU ms of a process tree (treeCpuMs's kernel part). */
export function treeSystemMs(pid: number): number {
  return cpuTimesOf(pid, true).system + childrenOf(pid).reduce((sum, c) => sum + cpuTimesOf(c, true).system, 0);
}

/** The direct children of `pid` (every thread's children list). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c !== '') out.push(Number(c));
    } catch {
      // The thread ended.
    }
  }
  return out;
}

/**
 * A process tree's CPU in ms: the process itself with the children it reaped, and its live children (PostgreSQL:
 * the postmaster and every server process, the connections' and the WAL writer's).
 */
export function treeCpuMs(pid: number): number {
  return cpuMsOf(pid, true) + childrenOf(pid).reduce((sum, c) => sum + cpuMsOf(c, true), 0);
}

/** CPU ms of each named process (or tree) between `start()` and `stop()`. */
export class CpuMeter {
  private readonly at = new Map<string, number>();

  constructor(private readonly sources: Record<string, () => number>) {}

  start(): void {
    for (const [name, read] of Object.entries(this.sources)) this.at.set(name, read());
  }

  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, read] of Object.entries(this.sources)) out[name] = read() - (this.at.get(name) ?? 0);
    return out;
  }
}

/** This process's CPU in ms (process.cpuUsage: finer than /proc's ticks). */
export const ownCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** This process's system CPU in ms. */
export const ownSystemMs = (): number => process.cpuUsage().system / 1000;

/**
 * "backend 1 1.23 (sys 0.40), postgres 0.80 (sys 0.30), ... = 3.10 CPU ms per call" from CPU ms over `calls`
 * calls; `system` (optional, per name) is the kernel's part of each.
 */
export function perCall(cpu: Record<string, number>, calls: number, system: Record<string, number> = {}): { text: string; total: number } {
  const parts = Object.entries(cpu).map(([name, ms]) => `${name} ${(ms / calls).toFixed(2)}${system[name] === undefined ? '' : ` (sys ${(system[name] / calls).toFixed(2)})`}`);
  const total = Object.values(cpu).reduce((a, b) => a + b, 0) / calls;
  return { text: `${parts.join(', ')} = ${total.toFixed(2)} CPU ms per call`, total };
}
