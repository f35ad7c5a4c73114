import { runDaemon } from '../app/daemon.js';

/** `scanbox run`: the daemon systemd starts; its whole graph is built in app/daemon.ts. */
export function runCommand(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return runDaemon(env);
}
