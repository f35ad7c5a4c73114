import { execFile } from 'node:child_process';

/** The built CLI (dist/cli.js) as a technician runs it, with a clean environment. */

export const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/** This process's environment less anything that would configure a scanbox from outside the test. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('SCANBOX_') && !['NODE_OPTIONS', 'CREDENTIALS_DIRECTORY', 'STATE_DIRECTORY', 'NOTIFY_SOCKET'].includes(key)) env[key] = value;
  }
  return env;
}

/** `scanbox ARGS` with `env` over a clean environment; asynchronous, so a simulator in this process keeps answering. */
export function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...baseEnv(), ...env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}
