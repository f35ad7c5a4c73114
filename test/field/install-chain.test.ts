import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

/**
 * scripts/install.sh --backend --backend-db URL in --root mode (its own file: install.test.ts is long already).
 * Everything stays under a temporary directory; no user is made, systemctl is not run.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const INSTALL = join(REPO, 'scripts', 'install.sh');
const NODE_DIR = dirname(process.execPath);
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
// ProtectHome=/PrivateTmp= hide these from the service: install.sh refuses a Node there.
const HIDDEN = /^\/(home|root|tmp|var\/tmp|run\/user)\//;

function run(script: string, args: string[]): SpawnSyncReturns<string> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_') && !k.startsWith('TAP')) env[k] = v;
  return spawnSync('bash', [script, ...args], { encoding: 'utf8', env: { ...env, PATH: [NODE_DIR, ...SYSTEM_PATH].join(':'), LC_ALL: 'C' }, timeout: 180_000 });
}

function show(result: SpawnSyncReturns<string>): string {
  return `exit ${result.status}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

function tempRoot(t: { teardown(fn: () => void): void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `scanbox-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** --backend-db: a chain's backend on PostgreSQL (README "A chain"): the URL into backend.env, the password as a credential. */
t.test(
  'install.sh --backend --backend-db URL: the URL set in backend.env, the password file loaded as the credential dbpassword, a password in the URL refused',
  { skip: HIDDEN.test(process.execPath) ? `node is ${process.execPath}: the installer refuses a Node the service cannot see` : false },
  async (t) => {
    const root = tempRoot(t, 'chain');
    const url = 'postgres://scanbox@db1.example:5432,db2.example:5432/scanbox';
    const withPassword = run(INSTALL, ['--backend', '--root', root, '--backend-db', 'postgres://scanbox:s3cret@db1.example/scanbox']);
    t.equal(withPassword.status, 2, 'a password in the URL is a usage error', { output: show(withPassword) });
    t.match(withPassword.stderr, /the URL holds a password; put it in \/etc\/scanbox-backend\/dbpassword/);
    t.notMatch(withPassword.stdout + withPassword.stderr, /s3cret/, 'and it is never echoed');
    const noBackend = run(INSTALL, ['--root', root, '--backend-db', url]);
    t.equal(noBackend.status, 2, '--backend-db without --backend');
    const bad = run(INSTALL, ['--backend', '--root', root, '--backend-db', 'mysql://db1/scanbox']);
    t.equal(bad.status, 2, 'not a PostgreSQL URL');

    const first = run(INSTALL, ['--backend', '--root', root, '--no-enable', '--backend-db', url]);
    t.equal(first.status, 0, 'installs', { output: show(first) });
    const envPath = join(root, 'etc', 'scanbox-backend', 'backend.env');
    const env = readFileSync(envPath, 'utf8');
    t.match(env, new RegExp(`^SCANBOX_BACKEND_DB=${url.replace(/[.]/g, '\\.')}$`, 'm'), 'SCANBOX_BACKEND_DB set in backend.env');
    t.equal(env.match(/^#?SCANBOX_BACKEND_DB=/gm)?.length, 1, 'in place of the default line, once');
    t.match(first.stdout, /Put the PostgreSQL password in \/etc\/scanbox-backend\/dbpassword/, 'says where the password goes');
    const dropin = join(root, 'etc', 'systemd', 'system', 'scanbox-backend.service.d', 'dbpassword.conf');
    t.notOk(existsSync(dropin), 'no credential drop-in without the file');

    writeFileSync(join(root, 'etc', 'scanbox-backend', 'dbpassword'), 'pretend password\n', { mode: 0o644 });
    const second = run(INSTALL, ['--backend', '--root', root, '--no-enable', '--backend-db', url]);
    t.equal(second.status, 0, 'installs again', { output: show(second) });
    t.match(second.stdout, /backend\.env already names that database/);
    t.match(readFileSync(dropin, 'utf8'), /^LoadCredential=dbpassword:\/etc\/scanbox-backend\/dbpassword$/m, 'the password file loaded as the credential dbpassword');
    t.equal(mode(join(root, 'etc', 'scanbox-backend', 'dbpassword')), 0o600, 'the password file made 0600');
    t.notMatch(second.stdout, /Put the PostgreSQL password/);
    t.notMatch(second.stdout + second.stderr, /pretend password/, 'the password is never shown');
  },
);
