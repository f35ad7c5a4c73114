import { clockTrusted, systemClock } from '../clock.js';
import { loadConfig, type Config } from '../config.js';
import { controlSocketPath } from '../control.js';
import { messageOf } from '../errors.js';
import { Journal } from '../journal/journal.js';
import { createLogger, type Logger } from '../log.js';
import { CertificateError } from '../wechatpay/certificate.js';
import { journalHolders } from './journal-access.js';
import { upstreamFor, type Upstream } from './parts.js';
import { print } from './table.js';

/**
 * A technician's command acting on its own because the daemon is stopped (`scanbox reverse`, `scanbox refund`):
 * the same configuration, journal and way to WeChat Pay as the daemon, under the daemon's rules: no call
 * while the clock is not trusted, and never while another process holds the journal (two processes must
 * never act on one sale at once). `act` gets them all; they are closed after it. Returns its exit code, or 2
 * for a bad configuration and 1 when it cannot act.
 */
export async function actAlone(
  env: NodeJS.ProcessEnv,
  what: string,
  act: (parts: { config: Readonly<Config>; log: Logger; upstream: Upstream; journal: Journal }) => Promise<number>,
): Promise<number> {
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    for (const error of loaded.errors) print(`FAIL ${error}`);
    print(`configuration has ${loaded.errors.length} problem(s): cannot reach WeChat Pay without it`);
    return 2;
  }
  const config = loaded.config;
  const holders = journalHolders(config.dbPath);
  if (holders.length > 0) {
    print(
      `the journal ${config.dbPath} is open in process ${holders.join(', ')} (the daemon?) but nothing answers on ` +
        `${controlSocketPath(env)}: stop it (systemctl stop scanbox) and try again, so that two processes never ${what} at once`,
    );
    return 1;
  }
  if (!clockTrusted(systemClock.now())) {
    print('the clock is not synchronised: the daemon would make no WeChat Pay call either; fix the time first (scanbox selftest)');
    return 1;
  }
  // The engines' lines go to stderr, so stdout keeps the outcome alone.
  const log = createLogger({ level: config.logLevel, write: (line) => void process.stderr.write(line + '\n') });
  let upstream: Upstream;
  try {
    upstream = upstreamFor(config, log);
  } catch (error) {
    if (error instanceof CertificateError) {
      print(`configuration: merchant certificate: ${error.message}`);
      return 2;
    }
    throw error;
  }
  let journal: Journal;
  try {
    journal = Journal.open(config.dbPath, { deviceId: config.deviceId, clock: systemClock });
  } catch (error) {
    print(`journal cannot be opened: ${messageOf(error)}`);
    await upstream.close();
    return 1;
  }
  try {
    return await act({ config, log, upstream, journal });
  } finally {
    journal.close();
    await upstream.close();
  }
}
