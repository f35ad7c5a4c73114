#!/usr/bin/env node
import { installedEnv } from './app/installed-env.js';
import { VERSION } from './version.js';

const USAGE = `scanbox ${VERSION}: the counter payment box daemon (WeChat Pay payment codes)

usage:
  scanbox run              the daemon (systemd starts it)
  scanbox demo [--backend] the whole box against the built-in simulator, no hardware needed (--backend: through a backend)
  scanbox status           health, last sales, pending reversals (works while the daemon runs)
  scanbox tx               recent transactions; scanbox tx show ID: one sale's events (out_trade_no or REF)
  scanbox reverse OUT_TRADE_NO   a technician's manual reversal, journalled like any other
  scanbox refund REF AMOUNT [--id RID] [--again]   refund AMOUNT fen of the paid sale REF (journalled; RID: the refund's key)
  scanbox report [--date YYYYMMDD] [--json]      the business day's totals, failures, by hour, what is open
  scanbox reconcile [--date YYYYMMDD] [--json]   WeChat Pay's bill of that day against the journal (default: every day not reconciled yet)
  scanbox selftest         configuration, ports, GPIO, clock, API reach, certificate, journal: PASS/FAIL
  scanbox config check     validate the configuration and print it with secrets masked
  scanbox backend          merchant-backend mode: the server holding the merchant's credentials for many boxes
  scanbox backend enroll DEVICE_ID --out DIR | revoke DEVICE_ID | status   a box's certificate, cut off, list
  scanbox backend reconcile [--date YYYYMMDD] [--json]   the merchant's bill against the backend's journal, all boxes
  scanbox --version

exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // The technician's commands, run by hand, get the installed configuration that systemd gives the daemon.
  const env = command === 'run' || command === 'demo' ? process.env : installedEnv(process.env);
  switch (command) {
    case 'run':
      return (await import('./commands/run.js')).runCommand();
    case 'demo':
      return (await import('./commands/demo.js')).demoCommand(rest);
    case 'status':
      return (await import('./commands/status.js')).statusCommand(rest, env);
    case 'tx':
      return (await import('./commands/tx.js')).txCommand(rest, env);
    case 'reverse':
      return (await import('./commands/reverse.js')).reverseCommand(rest, env);
    case 'refund':
      return (await import('./commands/refund.js')).refundCommand(rest, env);
    case 'report':
      return (await import('./commands/report.js')).reportCommand(rest, env);
    case 'reconcile':
      return (await import('./commands/reconcile.js')).reconcileCommand(rest, env);
    case 'selftest':
      return (await import('./commands/selftest.js')).selftestCommand(rest, env);
    case 'backend':
      // The backend runs on the merchant's server, not on a box: the environment it is given is its configuration.
      return (await import('./commands/backend.js')).backendCommand(rest, process.env);
    case 'config':
      if (rest[0] === 'check' && rest.length === 1) return (await import('./commands/config-check.js')).configCheckCommand(env);
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
