import { join } from 'node:path';
import t from 'tap';
import { SqliteBackendStore, type BackendStore } from '../../../src/backend/store.js';
import { tempDir } from '../../helpers/world.js';
import { storeSuite } from './suite.js';

// The store suite on SQLite, the embedded default (the same suite runs on PostgreSQL in postgres.test.ts).
const paths = new Map<BackendStore, string>();
storeSuite(t, {
  async fresh() {
    const path = join(tempDir('scanbox-store-'), 'backend.db');
    const store = SqliteBackendStore.open(path);
    paths.set(store, path);
    return store;
  },
  async again(store) {
    const other = SqliteBackendStore.open(paths.get(store)!);
    paths.set(other, paths.get(store)!);
    return other;
  },
});
