import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { runSelftest, type SelftestDeps } from '../../src/commands/selftest.js';
import { memoryBackend } from '../../src/devices/gpio.js';
import { Journal } from '../../src/journal/journal.js';
import { systemClock } from '../../src/clock.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * The technician's commands as they are run on a box: the built dist/cli.js next to the real daemon
 * (`scanbox run` on ptys against the simulator), talking to it through its control socket, and on their
 * own once it is stopped. Then selftest's checks with their outside world injected.
 */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');
const CHECKS = ['config', 'journal', 'scanner', 'register', 'gpio', 'voice', 'clock', 'api', 'certificate'];
const FULL_CODE = /(?<!\d)1[0-5]\d{16}(?!\d)/;

const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SCANBOX_') && !['NODE_OPTIONS', 'CREDENTIALS_DIRECTORY', 'STATE_DIRECTORY', 'RUNTIME_DIRECTORY'].includes(k)) env[k] = v;
  }
  return env;
};

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Asynchronously: the simulator and the ptys live in this process and must keep answering meanwhile. */
function scanbox(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 150000 }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ status, stdout, stderr });
    });
  });
}

let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

async function sale(rig: Rig, ref: string, amount: number, payment = code()): Promise<string> {
  const from = rig.register.mark;
  rig.register.send(`PAY ${amount} ${ref}`);
  await rig.register.next(`ACK ${ref}`, 5000, from);
  rig.scanner.send(payment);
  return rig.register.next(new RegExp(`^(PAID|FAILED) ${ref} `), 15000, from);
}

function stateOf(rig: Rig, outTradeNo: string): string | undefined {
  const journal = Journal.open(rig.dbPath, { deviceId: 'TEST', clock: systemClock, readonly: true });
  try {
    return journal.byOutTradeNo(outTradeNo)?.state;
  } finally {
    journal.close();
  }
}

function checkLines(stdout: string): { status: string; name: string; detail: string }[] {
  return stdout
    .split('\n')
    .map((line) => /^(PASS|WARN|FAIL) ([a-z-]+): (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ status: m[1]!, name: m[2]!, detail: m[3]! }));
}

t.test('status, tx, selftest and reverse beside the running daemon, then without it', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // rig.env carries RUNTIME_DIRECTORY=rig.dir: the daemon listens there and the commands ask there.
  const env = { ...cleanEnv(), ...rig.env };
  t.equal(env.RUNTIME_DIRECTORY, rig.dir);
  const daemon = await rig.startDaemon();

  const paid1 = await sale(rig, 'T-PAID-1', 1234);
  t.match(paid1, /^PAID T-PAID-1 /);
  const otn1 = paid1.split(' ')[2]!;
  const otn2 = (await sale(rig, 'T-PAID-2', 560)).split(' ')[2]!;
  const poor = code();
  rig.sim.setScenario(poor, { outcome: 'NOTENOUGH' });
  t.match(await sale(rig, 'T-POOR', 700, poor), /^FAILED T-POOR NOTENOUGH /);
  const retried = await sale(rig, 'T-POOR', 700);
  t.match(retried, /^PAID T-POOR /);
  const failedOtn = rig.sim.ledger().find((e) => e.attach === 'T-POOR' && !e.everCharged)!.outTradeNo;
  // A paid order WeChat Pay will not reverse for now (SYSTEMERROR on every reverse): it stays pending.
  const stubborn = code();
  rig.sim.setScenario(stubborn, { outcome: 'paid', faults: { reverse: [{ kind: 'system_error', times: Infinity }] } });
  const stuckOtn = (await sale(rig, 'T-STUCK', 300, stubborn)).split(' ')[2]!;

  await t.test('status: READY from the daemon, the counts, the last sales, no pending reversal', async (t) => {
    const run = await scanbox(['status'], env);
    t.equal(run.status, 0, run.stdout + run.stderr);
    t.match(run.stdout, /^daemon: running /m);
    t.match(run.stdout, /^health: READY$/m);
    t.match(run.stdout, /sales by state \(5 in all\): .*paid 4, failed 1/);
    t.match(run.stdout, new RegExp(`T-PAID-1\\s+12\\.34\\s+paid\\s+-\\s+${otn1}`));
    t.match(run.stdout, new RegExp(`T-POOR\\s+7\\.00\\s+failed\\s+NOTENOUGH\\s+${failedOtn}`));
    t.match(run.stdout, /^pending reversals: 0$/m);
    t.notMatch(run.stdout, FULL_CODE);
    t.equal((await scanbox(['status', 'extra'], env)).status, 2);
  });

  await t.test('tx: recent sales; tx show: one sale or every attempt of a ref, with events', async (t) => {
    const list = await scanbox(['tx'], env);
    t.equal(list.status, 0, list.stdout + list.stderr);
    for (const otn of [otn1, otn2, failedOtn]) t.match(list.stdout, otn);
    const one = await scanbox(['tx', '--limit', '1'], env);
    t.match(one.stdout, /last 1 sale\(s\)/);
    t.notMatch(one.stdout, otn1);
    t.equal((await scanbox(['tx', '--limit=1'], env)).status, 0);

    const show = await scanbox(['tx', 'show', otn1], env);
    t.equal(show.status, 0, show.stdout + show.stderr);
    t.match(show.stdout, new RegExp(`^sale ${otn1}$`, 'm'));
    t.match(show.stdout, /amount\s+12\.34 yuan/);
    t.match(show.stdout, /payment code\s+13\*{12}\d{4}/);
    for (const kind of ['created', 'micropay_sent', 'micropay_answer']) t.match(show.stdout, new RegExp(`\\s${kind}\\s`), `event ${kind}`);
    t.match(show.stdout, /micropay_answer\s+call=micropay result=success ms=\d+/, 'JSON detail as key=value');
    t.notMatch(show.stdout, FULL_CODE);

    const attempts = await scanbox(['tx', 'show', 'T-POOR'], env);
    t.equal(attempts.status, 0);
    t.match(attempts.stdout, /attempt 1 of 2/);
    t.match(attempts.stdout, /attempt 2 of 2/);
    t.match(attempts.stdout, /err_code=NOTENOUGH/);

    const unknown = await scanbox(['tx', 'show', 'NO-SUCH-REF'], env);
    t.equal(unknown.status, 1);
    t.match(unknown.stdout, /no sale with out_trade_no or register ref NO-SUCH-REF/);
    for (const bad of [['tx', 'show'], ['tx', '--limit', '0'], ['tx', '--limit', 'x'], ['tx', 'show', 'a b'], ['tx', 'frob']]) {
      t.equal((await scanbox(bad, env)).status, 2, bad.join(' '));
    }
  });

  await t.test('selftest beside the daemon: one line per check, in order, exit 1 only for a FAIL', async (t) => {
    const run = await scanbox(['selftest'], env);
    const checks = checkLines(run.stdout);
    t.same(
      checks.map((c) => c.name),
      CHECKS,
      run.stdout,
    );
    for (const name of ['config', 'journal', 'api', 'certificate']) t.equal(checks.find((c) => c.name === name)?.status, 'PASS', name);
    t.match(checks.find((c) => c.name === 'api'), { detail: /round trip \d+ ms \(TCP connect\), TLSv1\.3 handshake \d+ ms on port \d+; TLS session resumption works/ }, 'against the simulator, for real');
    t.match(checks.find((c) => c.name === 'scanner'), { status: 'PASS', detail: /in use by the running daemon/ });
    t.match(checks.find((c) => c.name === 'register'), { status: 'PASS', detail: /in use by the running daemon/ });
    t.match(checks.find((c) => c.name === 'gpio'), { status: 'PASS', detail: 'no GPIO configured' });
    t.match(checks.find((c) => c.name === 'certificate'), { detail: /^valid until \d{4}-\d\d-\d\d \(\d+ days\), CN=1900000109$/ });
    t.equal(run.status, checks.some((c) => c.status === 'FAIL') ? 1 : 0);
    t.match(run.stdout, /^selftest: \d+ PASS, \d+ WARN, \d+ FAIL$/m);
    t.notMatch(run.stdout, new RegExp(rig.merchant.apiKey));
  });

  await t.test('reverse through the daemon: the payer is refunded, the journal says reversed', async (t) => {
    const run = await scanbox(['reverse', otn1], env);
    t.equal(run.status, 0, run.stdout + run.stderr);
    t.match(run.stdout, new RegExp(`^reversed: ${otn1} \\[REVERSED\\] by the running daemon: reversed at WeChat Pay$`, 'm'));
    t.match(rig.sim.entry(otn1), { reversed: true, charged: false, refundedFen: 1234 });
    t.equal(stateOf(rig, otn1), 'reversed');
    await daemon.waitFor(new RegExp(`manual reversal requested by a technician.*out_trade_no=${otn1}`), 1000);

    const again = await scanbox(['reverse', otn1], env);
    t.equal(again.status, 0, 'already reversed is still exit 0');
    t.match(again.stdout, /already reversed/);
    t.equal(rig.sim.entry(otn1)?.reverseCount, 1, 'nothing sent the second time');

    const failed = await scanbox(['reverse', failedOtn], env);
    t.equal(failed.status, 1);
    t.match(failed.stdout, new RegExp(`^not reversed \\(state failed\\): ${failedOtn} \\[NOTENOUGH\\] by the running daemon: nothing to reverse`, 'm'));
    const unknown = await scanbox(['reverse', 'BENCH01XXXX99999999'], env);
    t.equal(unknown.status, 1);
    t.match(unknown.stdout, /no sale with out_trade_no/);
    t.equal((await scanbox(['reverse'], env)).status, 2);
    t.equal((await scanbox(['reverse', 'bad id!'], env)).status, 2);
    t.equal((await scanbox(['reverse', otn1, otn2], env)).status, 2);

    const status = await scanbox(['status'], env);
    t.match(status.stdout, new RegExp(`T-PAID-1\\s+12\\.34\\s+reversed\\s+REVERSED\\s+${otn1}`));
  });

  await t.test('reverse that WeChat Pay does not confirm: pending, exit 1, listed by status and tx show', async (t) => {
    const run = await scanbox(['reverse', stuckOtn], env);
    t.equal(run.status, 1, run.stdout + run.stderr);
    t.match(run.stdout, new RegExp(`^pending: ${stuckOtn} \\[REVERSE_PENDING\\] by the running daemon: not confirmed yet`, 'm'));
    t.match(rig.sim.entry(stuckOtn), { charged: true, reversed: false });
    const status = await scanbox(['status'], env);
    t.match(status.stdout, /^pending reversals: 1$/m);
    t.match(status.stdout, new RegExp(`^${stuckOtn}\\s+T-STUCK\\s+3\\.00\\s+\\d+\\s+(now|\\d{4}-\\d\\d-\\d\\d [\\d:]{8})\\s+REVERSE_PENDING$`, 'm'));
    const show = await scanbox(['tx', 'show', stuckOtn], env);
    t.match(show.stdout, /state\s+reversing/);
    t.match(show.stdout, /reversal\s+reason REVERSED, \d+ attempt\(s\), next attempt /);
    t.match(show.stdout, /manual_reverse\s+from=paid/);
    t.match(show.stdout, /reverse_answer\s+call=reverse result=business .*err_code=SYSTEMERROR/);
  });

  await t.test('with the daemon stopped: status from the journal, reverse on its own', async (t) => {
    t.equal(await rig.stopDaemon(), 0);
    const status = await scanbox(['status'], env);
    t.equal(status.status, 0, status.stdout);
    t.match(status.stdout, /^daemon: not running/m);
    t.match(status.stdout, /^health: stopped$/m);

    // A process holding the journal open while nothing answers on the socket: no local reversal.
    const holder = Journal.open(rig.dbPath, { deviceId: 'TEST', clock: systemClock, readonly: true });
    const refused = await scanbox(['reverse', otn2], env);
    holder.close();
    t.equal(refused.status, 1);
    t.match(refused.stdout, new RegExp(`is open in process ${process.pid}`));
    t.equal(rig.sim.entry(otn2)?.reverseCount, 0);

    const run = await scanbox(['reverse', otn2], env);
    t.equal(run.status, 0, run.stdout + run.stderr);
    t.match(run.stdout, /^daemon not running/m);
    t.match(run.stdout, new RegExp(`^reversed: ${otn2} \\[REVERSED\\] by this command \\(daemon not running\\): reversed at WeChat Pay$`, 'm'));
    t.match(rig.sim.entry(otn2), { reversed: true, refundedFen: 560 });
    t.equal(stateOf(rig, otn2), 'reversed');
    t.match(run.stderr, /manual reversal requested by a technician/, 'the engine log went to stderr');

    const selftest = await scanbox(['selftest'], env);
    const checks = checkLines(selftest.stdout);
    t.match(checks.find((c) => c.name === 'scanner'), { status: 'PASS', detail: /opens at 9600 baud/ });
    t.match(checks.find((c) => c.name === 'register'), { status: 'PASS', detail: /opens at 9600 baud/ });
  });

  await t.test('a broken configuration: status still reads the journal from SCANBOX_DB', async (t) => {
    const broken = { ...env, SCANBOX_MCH_ID: '', SCANBOX_MAX_AMOUNT: 'lots' };
    const status = await scanbox(['status'], broken);
    t.equal(status.status, 0, status.stdout);
    t.match(status.stdout, /warning: the configuration has 2 problem\(s\)/);
    t.match(status.stdout, /T-PAID-2/);
    const reverse = await scanbox(['reverse', otn2], broken);
    t.equal(reverse.status, 2, 'a local reversal needs a valid configuration');
    const selftest = await scanbox(['selftest'], broken);
    t.equal(selftest.status, 1);
    t.match(selftest.stdout, /^FAIL config: 2 problem\(s\)/m);
    const missing = await scanbox(['status'], { ...broken, SCANBOX_DB: join(rig.dir, 'none.db') });
    t.equal(missing.status, 1, 'no journal to read');
    t.match(missing.stdout, /^health: stopped$/m);
    t.match(missing.stdout, /journal: cannot be read: .*none\.db does not exist/);
    const damaged = join(rig.dir, 'damaged.db');
    writeFileSync(damaged, 'this is not an SQLite file '.repeat(400));
    const corrupt = await scanbox(['status'], { ...env, SCANBOX_DB: damaged });
    t.equal(corrupt.status, 1);
    t.match(corrupt.stdout, /^health: FAULT journal .*damaged\.db is damaged/m);
    const check = checkLines((await scanbox(['selftest'], { ...env, SCANBOX_DB: damaged })).stdout);
    t.match(check.find((c) => c.name === 'journal'), { status: 'FAIL', detail: /damaged/ });
  });
});

t.test('selftest checks with their outside world injected', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const gpioEnv = { ...rig.env, SCANBOX_GPIO_GREEN: '17', SCANBOX_GPIO_RED: '27', SCANBOX_GPIO_BUZZER: '22' };

  const fake = (env: NodeJS.ProcessEnv, over: Partial<SelftestDeps> = {}): SelftestDeps & { lines: string[] } => {
    const lines: string[] = [];
    const deps: SelftestDeps = {
      env,
      now: () => Date.now(),
      sleep: async () => {},
      exists: () => false,
      stat: (path, follow) => ({ isSymbolicLink: () => !follow, isCharacterDevice: () => true }) as never,
      realpath: (path) => `${path}.real`,
      openSerial: async () => {},
      gpio: () => memoryBackend(),
      exec: async () => ({ ok: true, stdout: 'yes\n' }),
      lookup: async () => ({ address: '192.0.2.7' }),
      tlsHandshake: async ({ session }) => ({ protocol: 'TLSv1.3', connectMs: 30, handshakeMs: session ? 31 : 62, session: Buffer.from('ticket'), reused: session !== undefined }),
      askDaemon: async () => null,
      write: (line) => lines.push(line),
      play: async () => ({ ok: true }),
      ...over,
    };
    return Object.assign(deps, { lines });
  };
  const byName = (results: { name: string }[], name: string) => results.find((r) => r.name === name);

  await t.test('GPIO: green and red blink 300 ms, the buzzer beeps 100 ms, every pin given back', async (t) => {
    const backend = memoryBackend();
    const sleeps: number[] = [];
    const deps = fake(gpioEnv, { gpio: () => backend, sleep: async (ms) => void sleeps.push(ms) });
    const { results, exitCode } = await runSelftest(deps);
    t.match(byName(results, 'gpio'), { status: 'PASS', detail: /green BCM 17, red BCM 27, buzzer BCM 22/ });
    t.same(backend.levels.get(17), [false, true, false, false]);
    t.same(backend.levels.get(27), [false, true, false, false]);
    t.same(backend.levels.get(22), [false, true, false, false]);
    t.same(sleeps, [300, 300, 100]);
    t.same([...backend.released].sort(), [17, 22, 27]);
    t.equal(exitCode, 0, deps.lines.join('\n'));
    t.same(results.map((r) => r.name), CHECKS);
    t.equal(deps.lines.length, CHECKS.length + 1, 'one line per check and the summary');
  });

  await t.test('GPIO: configured but unavailable FAILs with the reason; the running daemon keeps its pins', async (t) => {
    const unavailable = fake(gpioEnv, { gpio: () => ({ available: false, reason: 'no writable /sys/class/gpio/export', open: () => { throw new Error('no'); } }) });
    const down = await runSelftest(unavailable);
    t.match(byName(down.results, 'gpio'), { status: 'FAIL', detail: /configured, but GPIO is not available: no writable/ });
    t.equal(down.exitCode, 1);

    const backend = memoryBackend();
    const running = fake(gpioEnv, { gpio: () => backend, askDaemon: async () => ({ kind: 'READY' }), openSerial: async () => { throw new Error('Error Resource temporarily unavailable Cannot lock port'); } });
    const up = await runSelftest(running);
    t.match(byName(up.results, 'gpio'), { status: 'PASS', detail: /in use by the daemon/ });
    t.equal(backend.levels.size, 0, 'no pin touched');
    t.match(byName(up.results, 'scanner'), { status: 'PASS', detail: /in use by the running daemon/ });

    const lockedNoDaemon = await runSelftest(fake(rig.env, { openSerial: async () => { throw new Error('Cannot lock port'); } }));
    t.match(byName(lockedNoDaemon.results, 'register'), { status: 'WARN', detail: /locked by another process/ });
  });

  await t.test('serial ports: missing, not a device, no permission', async (t) => {
    const enoent = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    const missing = await runSelftest(fake(rig.env, { stat: () => { throw enoent; } }));
    t.match(byName(missing.results, 'scanner'), { status: 'FAIL', detail: /does not exist \(unplugged\?/ });
    const file = await runSelftest(fake(rig.env, { stat: () => ({ isSymbolicLink: () => false, isCharacterDevice: () => false }) as never }));
    t.match(byName(file.results, 'register'), { status: 'FAIL', detail: /not a character device/ });
    const denied = await runSelftest(fake(rig.env, { openSerial: async () => { throw new Error('Error: Permission denied, cannot open /dev/ttyUSB0'); } }));
    t.match(byName(denied.results, 'scanner'), { status: 'FAIL', detail: /dialout/ });
    const ok = await runSelftest(fake(rig.env));
    t.match(byName(ok.results, 'scanner'), { status: 'PASS', detail: /-> .*\.real opens at 9600 baud/ });
  });

  await t.test('clock: a year before 2025, timesyncd, timedatectl', async (t) => {
    const epoch = await runSelftest(fake(rig.env, { now: () => Date.UTC(1970, 0, 1) }));
    t.match(byName(epoch.results, 'clock'), { status: 'FAIL', detail: 'clock not synchronised (it says 1970-01-01)' });
    const timesyncd = await runSelftest(fake(rig.env, { exists: (p) => p === '/run/systemd/timesync/synchronized', exec: async () => ({ ok: false, stdout: '' }) }));
    t.match(byName(timesyncd.results, 'clock'), { status: 'PASS', detail: /systemd-timesyncd/ });
    t.match(byName((await runSelftest(fake(rig.env))).results, 'clock'), { status: 'PASS', detail: /timedatectl/ });
    const no = await runSelftest(fake(rig.env, { exec: async () => ({ ok: true, stdout: 'no\n' }) }));
    t.match(byName(no.results, 'clock'), { status: 'FAIL', detail: /clock not synchronised .*NTPSynchronized=no/ });
  });

  await t.test('API reach: DNS and TLS failures name the host; the backup origin is checked when set', async (t) => {
    const dns = await runSelftest(fake(rig.env, { lookup: async () => { throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }); } }));
    t.match(byName(dns.results, 'api'), { status: 'FAIL', detail: 'DNS lookup of 127.0.0.1 failed (ENOTFOUND)' });
    const tls = await runSelftest(fake(rig.env, { tlsHandshake: async () => { throw new Error('self-signed certificate'); } }));
    t.match(byName(tls.results, 'api'), { status: 'FAIL', detail: /TLS handshake with 127\.0\.0\.1:\d+ \(192\.0\.2\.7\) failed: self-signed/ });
    const hosts: string[] = [];
    const both = await runSelftest(
      fake(
        { ...rig.env, SCANBOX_API_BASE: '', SCANBOX_API_BACKUP_BASE: '' },
        {
          tlsHandshake: async ({ host, port, session }) => (
            hosts.push(`${host}:${port}${session ? ' resuming' : ''}`),
            { protocol: 'TLSv1.2', connectMs: 41, handshakeMs: session ? 40 : 85, session: Buffer.from('ticket'), reused: session !== undefined }
          ),
        },
      ),
    );
    t.same(hosts, ['api.mch.weixin.qq.com:443', 'api.mch.weixin.qq.com:443 resuming', 'api2.mch.weixin.qq.com:443', 'api2.mch.weixin.qq.com:443 resuming']);
    t.same(both.results.map((r) => r.name), ['config', 'journal', 'scanner', 'register', 'gpio', 'voice', 'clock', 'api', 'api-backup', 'certificate']);
    t.match(byName(both.results, 'api-backup'), {
      status: 'PASS',
      detail: /^api2\.mch\.weixin\.qq\.com -> 192\.0\.2\.7 \(DNS \d+ ms\), round trip 41 ms \(TCP connect\), TLSv1\.2 handshake 85 ms on port 443; TLS session resumption works \(40 ms\)$/,
    });
    const noTicket = await runSelftest(fake(rig.env, { tlsHandshake: async () => ({ protocol: 'TLSv1.3', connectMs: 1, handshakeMs: 2, session: null, reused: false }) }));
    t.match(byName(noTicket.results, 'api'), { status: 'WARN', detail: /offered no TLS session to resume/ });
    const refused = await runSelftest(fake(rig.env, { tlsHandshake: async () => ({ protocol: 'TLSv1.3', connectMs: 1, handshakeMs: 2, session: Buffer.from('t'), reused: false }) }));
    t.match(byName(refused.results, 'api'), { status: 'WARN', detail: /resumption refused/ });
  });

  await t.test('certificate: PASS with the date, WARN within 30 days, FAIL once expired; a PKCS#12 too', async (t) => {
    const pass = await runSelftest(fake(rig.env));
    const detail = byName(pass.results, 'certificate')!;
    t.match(detail, { status: 'PASS', detail: /^valid until (\d{4}-\d\d-\d\d) \(\d+ days\), CN=1900000109$/ });
    const notAfter = Date.parse(/valid until (\S+)/.exec((detail as { detail: string }).detail)![1]!);
    const soon = await runSelftest(fake(rig.env, { now: () => notAfter - 10 * 24 * 3600 * 1000 }));
    t.match(byName(soon.results, 'certificate'), { status: 'WARN', detail: /expires on .* \(in (9|10) days\).*renew/ });
    t.equal(soon.exitCode, 0, 'a WARN alone does not fail the selftest');
    const late = await runSelftest(fake(rig.env, { now: () => notAfter + 2 * 24 * 3600 * 1000 }));
    t.match(byName(late.results, 'certificate'), { status: 'FAIL', detail: /^expired on / });
    t.equal(late.exitCode, 1);

    const p12 = join(rig.dir, 'apiclient_cert.p12');
    writeFileSync(p12, rig.sim.pki.clientP12(rig.merchant.mchId));
    const p12Env = { ...rig.env, SCANBOX_CERT_FILE: '', SCANBOX_CERT_KEY_FILE: '', SCANBOX_CERT_P12_FILE: p12 };
    t.match(byName((await runSelftest(fake(p12Env))).results, 'certificate'), { status: 'PASS', detail: /^valid until \d{4}-\d\d-\d\d \(\d+ days\), CN=1900000109$/ });
    const wrong = join(rig.dir, 'p12-password');
    writeFileSync(wrong, 'not-the-password\n');
    const bad = await runSelftest(fake({ ...p12Env, SCANBOX_CERT_P12_PASSWORD_FILE: wrong }));
    t.match(byName(bad.results, 'certificate'), { status: 'FAIL', detail: /wrong password/ });
  });

  await t.test('a broken configuration: config FAILs, what needs it is not checked, the rest still is', async (t) => {
    const deps = fake({ ...rig.env, SCANBOX_APPID: '' });
    const { results, exitCode } = await runSelftest(deps);
    t.equal(exitCode, 1);
    t.match(byName(results, 'config'), { status: 'FAIL', detail: /^1 problem\(s\), first: SCANBOX_APPID: required/ });
    t.match(byName(results, 'journal'), { status: 'WARN', detail: /not created yet/ });
    t.match(byName(results, 'scanner'), { status: 'PASS' });
    t.match(byName(results, 'gpio'), { status: 'WARN', detail: /not checked/ });
    t.match(byName(results, 'api'), { status: 'PASS' });
    t.match(byName(results, 'certificate'), { status: 'WARN', detail: /not checked/ });
  });
});
