#!/usr/bin/env node
import { VERSION } from './version.js';

const USAGE = `scanbox ${VERSION}: the counter payment box daemon (WeChat Pay payment codes)

usage:
  scanbox run              the daemon (systemd starts it)
  scanbox demo             the whole box against the built-in simulator, no hardware needed
  scanbox config check     validate the configuration and print it with secrets masked
  scanbox --version

exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return (await import('./commands/run.js')).runCommand();
    case 'demo':
      return (await import('./commands/demo.js')).demoCommand(rest);
    case 'config':
      if (rest[0] === 'check' && rest.length === 1) return (await import('./commands/config-check.js')).configCheckCommand();
      break;
    case '--version':
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
  }
  process.stderr.write(`${command === undefined ? 'no command given' : `unknown command: ${argv.join(' ')}`}\n\n${USAGE}\n`);
  return 2;
}

// Set the exit code and let the event loop drain: under systemd stdout is a socket written asynchronously.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stdout.write(`<3>scanbox failed: ${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
