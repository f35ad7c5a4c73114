import { describeConfig, loadConfig } from '../config.js';

/** `scanbox config check`: every problem at once (exit 2), or the configuration with secrets masked. */
export function configCheckCommand(env: NodeJS.ProcessEnv = process.env): number {
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    for (const error of loaded.errors) process.stdout.write(`FAIL ${error}\n`);
    process.stdout.write(`configuration has ${loaded.errors.length} problem(s)\n`);
    return 2;
  }
  for (const line of describeConfig(loaded.config)) process.stdout.write(`${line}\n`);
  process.stdout.write('configuration ok\n');
  return 0;
}
