import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { tempDir } from '../helpers/world.js';
import { consoleSuite } from './console-suite.js';

// The console's rules on SQLite, the embedded default (the same suite runs on PostgreSQL in console-postgres.test.ts).
consoleSuite(t, {
  async fresh() {
    return SqliteBackendStore.open(join(tempDir('scanbox-console-store-'), 'backend.db'));
  },
  async again(store) {
    return SqliteBackendStore.open((store as SqliteBackendStore).path);
  },
  async holds(store, text) {
    const path = (store as SqliteBackendStore).path;
    return [path, `${path}-wal`].some((file) => {
      try {
        return readFileSync(file).includes(Buffer.from(text));
      } catch {
        return false;
      }
    });
  },
});
