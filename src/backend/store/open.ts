import type { Logger } from '../../log.js';
import type { BackendDatabase } from '../config.js';
import { SqliteBackendStore, type BackendStore } from '../store.js';
import { PostgresBackendStore } from './postgres.js';

/** A backend store as the database of SCANBOX_BACKEND_DB says: a SQLite file, or PostgreSQL (contract §8). */
export type OpenStore = BackendStore & {
  /** The SQLite path or the PostgreSQL URL as shown (no password). */
  readonly path: string;
  /** PostgreSQL only: hears every backend's revocations and policy changes (LISTEN), and '' after a reconnection. */
  onRevoked?(listener: (deviceId: string) => void): () => void;
};

/**
 * `settleMs` (PostgreSQL): how often this process settles the money sums on its own (PostgresBackendStore);
 * 0 for a command that opens the store for a moment (its reads settle what they need). Default: every 5 s.
 */
export async function openBackendStore(database: BackendDatabase, log: Logger, options: { waitMs?: number; lazy?: boolean; settleMs?: number } = {}): Promise<OpenStore> {
  if (database.kind === 'sqlite') return SqliteBackendStore.open(database.path);
  return PostgresBackendStore.open({ target: database.target, password: database.password, log, ...options });
}
