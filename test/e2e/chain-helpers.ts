import { execFile, spawn } from 'node:child_process';
import { Daemon } from '../../src/simulator/rig.js';

/** Shared by the chain e2e tests: the built CLI as a process, with a clean environment. */

export const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/** This process's environment less anything that would configure a scanbox from outside the test. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('SCANBOX_') && !['NODE_OPTIONS', 'CREDENTIALS_DIRECTORY', 'STATE_DIRECTORY', 'NOTIFY_SOCKET'].includes(key)) env[key] = value;
  }
  return env;
}

export function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...baseEnv(), ...env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

/** `scanbox backend` as a process; resolves once it listens. */
export async function startBackend(env: Record<string, string>): Promise<Daemon> {
  const child = spawn(process.execPath, [CLI, 'backend'], { env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new Daemon(child);
  await daemon.waitFor(/backend listening/, 20_000);
  return daemon;
}

export async function kill(daemon: Daemon | null): Promise<void> {
  if (daemon && daemon.process.exitCode === null && daemon.process.signalCode === null) {
    daemon.process.kill('SIGKILL');
    await daemon.exited;
  }
}

let n = 0;
/** A payment code no other test process makes. */
export const payCode = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;
