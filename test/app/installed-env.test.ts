import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { installedEnv, parseEnvFile } from '../../src/app/installed-env.js';

t.test('the env file is read like EnvironmentFile=: comments, blanks, quotes', async (t) => {
  t.same(parseEnvFile('# c\n\nSCANBOX_MCH_ID=1900000109\nSCANBOX_BODY="Shop - Pay"\n; x\nSCANBOX_APPID = wx1\nbad line\n'), {
    SCANBOX_MCH_ID: '1900000109',
    SCANBOX_BODY: 'Shop - Pay',
    SCANBOX_APPID: 'wx1',
  });
});

t.test('a command run by hand sees what systemd gives the daemon; the environment wins', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-env-'));
  const envFile = join(dir, 'scanbox.env');
  writeFileSync(envFile, 'SCANBOX_MCH_ID=1900000109\nSCANBOX_DB=/var/lib/scanbox/scanbox.db\n');
  writeFileSync(join(dir, 'apikey'), 'k');
  const env = installedEnv({ SCANBOX_DB: '/tmp/other.db', PATH: '/bin' }, { envFile, credentials: dir });
  t.equal(env.SCANBOX_MCH_ID, '1900000109');
  t.equal(env.SCANBOX_DB, '/tmp/other.db', 'the environment wins');
  t.equal(env.CREDENTIALS_DIRECTORY, dir, 'secrets from /etc/scanbox under their credential names');
  t.equal(installedEnv({ CREDENTIALS_DIRECTORY: '/run/creds' }, { envFile, credentials: dir }).CREDENTIALS_DIRECTORY, '/run/creds');
  const none = installedEnv({ PATH: '/bin' }, { envFile: join(dir, 'absent.env'), credentials: join(dir, 'absent') });
  t.same(none, { PATH: '/bin' }, 'nothing installed: nothing added');
});

t.test('a box in backend mode holds only its own certificate: the credentials are found by it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-env-'));
  writeFileSync(join(dir, 'backend_cert.pem'), 'c');
  const env = installedEnv({ PATH: '/bin' }, { envFile: join(dir, 'absent.env'), credentials: dir });
  t.equal(env.CREDENTIALS_DIRECTORY, dir);
});
