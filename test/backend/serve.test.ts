import { spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { createTestPki } from '../../src/simulator/ca.js';
import { startPostgres } from '../helpers/postgres.js';
import { MERCHANT, tempDir } from '../helpers/world.js';

/**
 * `scanbox backend` (the built CLI) serves /metrics and the console on SCANBOX_BACKEND_ADMIN_LISTEN, apart from
 * the boxes' port; `scanbox backend admin add` makes a login that the console takes; a console off loopback
 * without TLS is a configuration error.
 */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function env(dir: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  const pki = createTestPki({ mchId: MERCHANT.mchId });
  writeFileSync(join(dir, 'apikey'), MERCHANT.apiKey + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), pki.client.certPem);
  writeFileSync(join(dir, 'key.pem'), pki.client.keyPem, { mode: 0o600 });
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCANBOX_') && k !== 'NOTIFY_SOCKET') base[k] = v;
  return {
    ...base,
    SCANBOX_MCH_ID: MERCHANT.mchId,
    SCANBOX_APPID: MERCHANT.appId,
    SCANBOX_API_KEY_FILE: join(dir, 'apikey'),
    SCANBOX_CERT_FILE: join(dir, 'cert.pem'),
    SCANBOX_CERT_KEY_FILE: join(dir, 'key.pem'),
    SCANBOX_BACKEND_DB: join(dir, 'backend.db'),
    ...extra,
  };
}

async function consoleServed(t: Test, database: (dir: string) => Promise<Record<string, string>>): Promise<void> {
  const dir = tempDir('scanbox-backend-serve-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [boxes, admin] = [await freePort(), await freePort()];
  const e = env(dir, { SCANBOX_BACKEND_LISTEN: `127.0.0.1:${boxes}`, SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${admin}`, ...(await database(dir)) });
  writeFileSync(join(dir, 'pw'), 'a long enough password\n');
  const added = spawnSync(process.execPath, [CLI, 'backend', 'admin', 'add', 'ops', '--password-file', join(dir, 'pw')], { env: e, encoding: 'utf8' });
  t.equal(added.status, 0, added.stderr);
  const child = spawn(process.execPath, [CLI, 'backend'], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const up = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(l);
      if (/console and \/metrics listening/.test(l)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${lines.join('\n')}`)));
  });
  t.teardown(() => void child.kill('SIGKILL'));
  await up;
  const base = `http://127.0.0.1:${admin}`;
  const metrics = await fetch(`${base}/metrics`);
  t.equal(metrics.status, 200);
  t.match(await metrics.text(), /^scanbox_build_info\{version="[^"]+"\} 1$/m);
  const home = await fetch(`${base}/`, { redirect: 'manual' });
  t.equal(home.status, 303);
  t.equal(home.headers.get('location'), '/login');
  const login = await fetch(`${base}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'name=ops&password=a+long+enough+password',
  });
  t.equal(login.status, 303, 'the admin made by the command logs in');
  const cookie = /scanbox_console=[^;]+/.exec(login.headers.get('set-cookie') ?? '')![0];
  const fleet = await fetch(`${base}/`, { headers: { cookie } });
  t.equal(fleet.status, 200);
  t.match(await fleet.text(), '全部门店');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly');
}

t.test('scanbox backend: /metrics and the console on the admin listener', (t) => consoleServed(t, async () => ({})));

t.test('scanbox backend on a PostgreSQL database: the admin command and the console use it', async (t) => {
  const cluster = await startPostgres();
  t.teardown(() => cluster.close());
  const url = (await cluster.newDatabase()).replace('postgres://', 'postgres://postgres@');
  await consoleServed(t, async (dir) => ({ SCANBOX_BACKEND_DB: url, SCANBOX_BACKEND_DB_PASSWORD_FILE: cluster.passwordFile, SCANBOX_BACKEND_PKI: join(dir, 'pki') }));
});

t.test('a console on the LAN without TLS is refused at start', async (t) => {
  const dir = tempDir('scanbox-backend-serve-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = spawnSync(process.execPath, [CLI, 'backend'], { env: env(dir, { SCANBOX_BACKEND_ADMIN_LISTEN: '0.0.0.0:8444' }), encoding: 'utf8', timeout: 20_000 });
  t.equal(run.status, 2);
  t.match(run.stdout, /SCANBOX_BACKEND_ADMIN_LISTEN: 0\.0\.0\.0 is reachable from other machines: set SCANBOX_BACKEND_ADMIN_TLS=on/);
});

t.test('SCANBOX_BACKEND_ADMIN_TLS=on: HTTPS with the backend certificate, a Secure cookie', async (t) => {
  const dir = tempDir('scanbox-backend-serve-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [boxes, admin] = [await freePort(), await freePort()];
  const e = env(dir, { SCANBOX_BACKEND_LISTEN: `127.0.0.1:${boxes}`, SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${admin}`, SCANBOX_BACKEND_ADMIN_TLS: 'on' });
  writeFileSync(join(dir, 'pw'), 'a long enough password\n');
  t.equal(spawnSync(process.execPath, [CLI, 'backend', 'admin', 'add', 'ops', '--password-file', join(dir, 'pw')], { env: e }).status, 0);
  const child = spawn(process.execPath, [CLI, 'backend'], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => /console and \/metrics listening/.test(l) && resolve());
    child.on('exit', (code) => reject(new Error(`exited ${code}`)));
  });
  const { request } = await import('node:https');
  const ca = (await import('node:fs')).readFileSync(join(dir, 'backend_ca.pem'), 'utf8');
  const answer = await new Promise<{ status: number; cookie: string }>((resolve, reject) => {
    const body = 'name=ops&password=a+long+enough+password';
    const req = request(`https://127.0.0.1:${admin}/login`, { method: 'POST', ca, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie'] ?? '') });
    });
    req.on('error', reject);
    req.end(body);
  });
  t.equal(answer.status, 303);
  t.match(answer.cookie, /; Secure/);
  t.match(answer.cookie, /HttpOnly/);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0);
});
