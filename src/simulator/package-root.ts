import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root, where package.json, dist/ and scripts/ are: the nearest directory above this file that
 * holds a package.json. The simulator runs from dist/simulator/ (the demo, also on an installed box), from
 * src/simulator/ (the tests, as TypeScript) and from build/tooling/src/simulator/ (the soak and the bench,
 * built by test/tooling/tsconfig.json), so no fixed number of '..' finds it from all three.
 */
export function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json in ${here} or above`);
  }
}
