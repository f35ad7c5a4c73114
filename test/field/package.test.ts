import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { MERCHANT } from '../helpers/world.js';

/**
 * What ships: the files `npm pack` would put in the package (package.json's `files`, the same tree
 * scripts/install.sh copies to /opt/scanbox). The test tooling (the soak, the bench: test/tooling/, built
 * into build/) stays out, and so does every API key the tests use. `npm pack --dry-run` needs no network;
 * `--ignore-scripts` keeps it from building dist/ again under the tests that are using it (npm test has
 * just built it).
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Fixed API keys of the tests: the engine tests' merchant, the WeChat Pay signing vector's, the one the rig once had. */
const TEST_KEYS = [MERCHANT.apiKey, '192006250b4c09247ec02edce69f6a2d', 'Zk3q8Lw2Rt6Yp1Xs9Vb4Nm7Hc5Dg0Jf2'];

interface Packed {
  files: { path: string }[];
}

function packedPaths(): string[] {
  const env: NodeJS.ProcessEnv = {};
  // npm test hands its own npm_* settings down; the pack must not pick them up.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_')) env[k] = v;
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, env, encoding: 'utf8', timeout: 60_000 });
  if (pack.status !== 0) throw new Error(`npm pack --dry-run exited ${pack.status}:\n${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout) as Packed[];
  return packed!.files.map((f) => f.path).sort();
}

t.test('npm pack: the product only, no test tooling, no test key', async (t) => {
  const paths = packedPaths();
  t.ok(paths.includes('dist/cli.js'), 'dist/ is built and packed (npm run build first)');
  t.ok(paths.includes('scripts/install.sh') && paths.includes('systemd/scanbox.service'), 'the installer and the unit are packed');
  // The built-in voice: its manifest and every clip it names (dist/devices/voice/pack.js finds it at <root>/src/devices/voice/clips).
  const manifest = JSON.parse(readFileSync(join(REPO, 'src', 'devices', 'voice', 'clips', 'manifest.json'), 'utf8')) as { clips: Record<string, string> };
  const clips = Object.values(manifest.clips).map((file) => `src/devices/voice/clips/${file}`);
  t.same(clips.filter((p) => !paths.includes(p)), [], 'every clip of the built-in voice is packed');
  t.ok(paths.includes('src/devices/voice/clips/manifest.json'), 'the voice manifest is packed');
  t.same(
    // The voice's clips are the one part of src/ that ships (data, beside the code that reads them).
    paths.filter((p) => !p.startsWith('src/devices/voice/clips/') && (/soak|bench|tooling|money-rules/i.test(p) || /^(test|build|src)\//.test(p))),
    [],
    'no soak, bench, test tooling, tests or sources',
  );
  // dist/ is tsc's output of src/: a file without its source is left over from an older build and would ship.
  const stale = paths.filter((p) => p.startsWith('dist/') && !existsSync(join(REPO, 'src', p.slice('dist/'.length).replace(/\.js(\.map)?$/, '.ts'))));
  t.same(stale, [], 'every file in dist/ has its source in src/ (otherwise: remove dist/ and run npm run build)');

  for (const key of TEST_KEYS) {
    const holding = paths.filter((p) => readFileSync(join(REPO, p), 'latin1').includes(key));
    t.same(holding, [], `no packed file holds the test key ${key.slice(0, 4)}...`);
  }
});
