import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeConfig, loadConfig } from '../../src/config.js';
import { createTestPki } from '../../src/simulator/ca.js';

/** Contract §10's variables: exactly one of the register and display lines, every error at once. */

const MCH_ID = '1900000109';
const pki = createTestPki({ mchId: MCH_ID });
const dir = mkdtempSync(join(tmpdir(), 'scanbox-display-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'apikey'), '192006250b4c09247ec02edce69f6a2d\n');
writeFileSync(join(dir, 'apiclient_cert.pem'), pki.client.certPem);
writeFileSync(join(dir, 'apiclient_key.pem'), pki.client.keyPem);
writeFileSync(join(dir, 'machine-id'), '4f1e2d3c4b5a69788796a5b4c3d2e1f0\n');

function load(extra: Record<string, string | undefined>, register: string | undefined = undefined) {
  return loadConfig({
    env: {
      CREDENTIALS_DIRECTORY: dir,
      SCANBOX_MCH_ID: MCH_ID,
      SCANBOX_APPID: 'wx2421b1c4370ec43b',
      SCANBOX_SCANNER_PORT: '/dev/serial/by-id/usb-scanner',
      ...(register ? { SCANBOX_REGISTER_PORT: register } : {}),
      ...extra,
    },
    machineIdPath: join(dir, 'machine-id'),
  });
}

t.test('the display line instead of the register line: defaults', async (t) => {
  const result = load({ SCANBOX_DISPLAY_PORT: '/dev/serial/by-id/usb-display' });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  t.equal(result.config.registerPort, null);
  t.same(result.config.display, {
    port: '/dev/serial/by-id/usb-display',
    outPort: null,
    family: 'led8',
    baud: 2400,
    parity: 'none',
    settleMs: 400,
    mode: 'learn',
  });
  t.ok(Object.isFrozen(result.config.display));
  const lines = describeConfig(result.config);
  t.ok(lines.includes('SCANBOX_REGISTER_PORT=unset (amounts come from the customer-display line)'));
  t.ok(lines.includes('SCANBOX_DISPLAY_MODE=learn (charges nothing: records what it would charge)'));
  t.ok(lines.includes('SCANBOX_DISPLAY_OUT_PORT=unset (passive tap)'));
});

t.test('every setting', async (t) => {
  const result = load({
    SCANBOX_DISPLAY_PORT: '/dev/ttyUSB2',
    SCANBOX_DISPLAY_OUT_PORT: '/dev/ttyUSB3',
    SCANBOX_DISPLAY_FAMILY: 'epson',
    SCANBOX_DISPLAY_BAUD: '9600',
    SCANBOX_DISPLAY_PARITY: 'space',
    SCANBOX_DISPLAY_SETTLE_MS: '500',
    SCANBOX_DISPLAY_MODE: 'charge',
  });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  t.same(result.config.display, { port: '/dev/ttyUSB2', outPort: '/dev/ttyUSB3', family: 'epson', baud: 9600, parity: 'space', settleMs: 500, mode: 'charge' });
});

t.test('exactly one of SCANBOX_REGISTER_PORT and SCANBOX_DISPLAY_PORT', async (t) => {
  const both = load({ SCANBOX_DISPLAY_PORT: '/dev/ttyUSB2' }, '/dev/ttyUSB1');
  t.match(both, { ok: false, errors: [/^SCANBOX_DISPLAY_PORT: set together with SCANBOX_REGISTER_PORT: set exactly one/] });
  const neither = load({});
  t.match(neither, { ok: false, errors: [/^SCANBOX_REGISTER_PORT: required, not set .*or SCANBOX_DISPLAY_PORT/] });
});

t.test('every error at once', async (t) => {
  const result = load({
    SCANBOX_DISPLAY_PORT: '/dev/serial/by-id/usb-scanner',
    SCANBOX_DISPLAY_OUT_PORT: 'ttyUSB3',
    SCANBOX_DISPLAY_FAMILY: 'vfd',
    SCANBOX_DISPLAY_BAUD: '2401',
    SCANBOX_DISPLAY_PARITY: 'N',
    SCANBOX_DISPLAY_SETTLE_MS: '50',
    SCANBOX_DISPLAY_MODE: 'live',
    SCANBOX_DISPLAY_BAUDRATE: '9600',
  });
  if (result.ok) throw new Error('expected errors');
  const names = result.errors.map((line) => line.slice(0, line.indexOf(':')));
  t.same(names, [
    'SCANBOX_DISPLAY_OUT_PORT',
    'SCANBOX_DISPLAY_PORT',
    'SCANBOX_DISPLAY_FAMILY',
    'SCANBOX_DISPLAY_BAUD',
    'SCANBOX_DISPLAY_PARITY',
    'SCANBOX_DISPLAY_SETTLE_MS',
    'SCANBOX_DISPLAY_MODE',
    'SCANBOX_DISPLAY_BAUDRATE',
  ]);
  const text = result.errors.join('\n');
  t.match(text, /SCANBOX_DISPLAY_PORT: is the same device as SCANBOX_SCANNER_PORT/);
  t.match(text, /SCANBOX_DISPLAY_OUT_PORT: "ttyUSB3" is not an absolute device path/);
  t.match(text, /SCANBOX_DISPLAY_FAMILY: "vfd" is not one of led8 cd5220 epson/);
  t.match(text, /SCANBOX_DISPLAY_BAUD: "2401" is not one of 1200 2400/);
  t.match(text, /SCANBOX_DISPLAY_PARITY: "N" is not one of none odd even space mark/);
  t.match(text, /SCANBOX_DISPLAY_SETTLE_MS: 50 ms is out of range 150..5000/);
  t.match(text, /SCANBOX_DISPLAY_MODE: "live" is not one of learn charge/);
  t.match(text, /SCANBOX_DISPLAY_BAUDRATE: unknown variable \(typo\? did you mean SCANBOX_DISPLAY_BAUD\?\)/);
  const same = load({ SCANBOX_DISPLAY_PORT: '/dev/ttyUSB2', SCANBOX_DISPLAY_OUT_PORT: '/dev/ttyUSB2' });
  t.match(same, { ok: false, errors: [/SCANBOX_DISPLAY_OUT_PORT: is the same device as SCANBOX_DISPLAY_PORT/] });
});

t.test('display settings without the display line are mistakes', async (t) => {
  const result = load({ SCANBOX_DISPLAY_FAMILY: 'led8', SCANBOX_DISPLAY_MODE: 'charge' }, '/dev/ttyUSB1');
  t.match(result, {
    ok: false,
    errors: [/^SCANBOX_DISPLAY_FAMILY: set without SCANBOX_DISPLAY_PORT/, /^SCANBOX_DISPLAY_MODE: set without SCANBOX_DISPLAY_PORT/],
  });
});
