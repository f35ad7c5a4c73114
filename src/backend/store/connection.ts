import { EventEmitter } from 'node:events';
import pg from 'pg';
import { messageOf } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * The backend's way to PostgreSQL (contract §8 "A chain"): a `postgres://` URL naming one host or several
 * (`postgres://db1:5432,db2:5432/scanbox`, as libpq does), of which the backend uses the one that accepts
 * writes (`pg_is_in_recovery()` false: libpq's `target_session_attrs=read-write`), and another when it fails.
 *
 * node-postgres has neither a host list nor `target_session_attrs`, so both are here: every host is asked at
 * once, the first writable one in the URL's order gets a pool, and any failure that speaks of the connection
 * (no SQLSTATE, class 08, an administrator's or crash shutdown, a read-only transaction on a demoted host)
 * drops the pool and starts the search again, every `retryMs`, for as long as it takes. Meanwhile every query
 * fails at once with `DatabaseUnavailable`: the server refuses the call (`BACKEND_UNAVAILABLE`, nothing
 * upstream) and the process never exits for it.
 *
 * The pool trap: node-postgres takes its own error listener off a client while it is checked out, and a dropped
 * connection then emits `'error'` on a client nobody listens to, which ends the process. Every client gets a
 * listener when it connects; the pool's own `'error'` (an idle client dropped) is listened to too; a client
 * whose query failed is released with `release(true)` (destroyed, not reused). Timeouts: connecting
 * (`connectionTimeoutMillis`, default in node-postgres: for ever), each statement on the server
 * (`statement_timeout`), a transaction left idle (`idle_in_transaction_session_timeout`), and each query on the
 * client side too (`query_timeout`: a host that vanished without a reset answers nothing, for ever).
 *
 * The password is never in the URL (refused there) nor in any message: it comes from the credential
 * `dbpassword` or `SCANBOX_BACKEND_DB_PASSWORD_FILE`, read by the configuration.
 */

export interface PgTarget {
  hosts: ReadonlyArray<{ host: string; port: number }>;
  database: string;
  user: string;
  ssl: 'disable' | 'require' | 'verify-full';
  applicationName: string;
}

export interface PgConnectionOptions {
  target: PgTarget;
  password: string | null;
  log: Logger;
  /** Most connections in the pool (default 10). */
  max?: number;
  /** Connecting to a host, in ms (default 3000). */
  connectMs?: number;
  /** statement_timeout on the server and query_timeout on the client, in ms (default 5000). */
  statementMs?: number;
  /** Between searches for a writable host while there is none, in ms (default 250). */
  retryMs?: number;
  /** Channels to LISTEN on, on a connection of their own to the writable host. */
  listen?: readonly string[];
}

/** No database accepts writes now (or the one in use just failed): nothing can be recorded. */
export class DatabaseUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DatabaseUnavailable';
  }
}

/** `postgres://[user@]host[:port][,host[:port]...]/database[?sslmode=...&application_name=...]`, or what is wrong with it. */
export function parsePgUrl(text: string): { ok: true; target: PgTarget } | { ok: false; problem: string } {
  const bad = (why: string) => ({ ok: false as const, problem: `SCANBOX_BACKEND_DB: ${why}` });
  const match = /^postgres(?:ql)?:\/\/(?:([^@/?#]*)@)?([^/?#]*)\/([^?#]*)(?:\?([^#]*))?$/.exec(text);
  if (!match) return bad('a PostgreSQL URL is postgres://[user@]host[:port][,host[:port]...]/database');
  const [, userinfo, hostlist, dbRaw, query] = match;
  if (userinfo !== undefined && userinfo.includes(':')) {
    // The text is never echoed: it holds a password.
    return bad('the URL holds a password: give it as the credential dbpassword or in SCANBOX_BACKEND_DB_PASSWORD_FILE, never in the URL');
  }
  let user = 'scanbox';
  if (userinfo !== undefined) {
    user = decodeURIComponent(userinfo);
    if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/.test(user)) return bad(`user ${JSON.stringify(user.slice(0, 40))} is not a plain role name`);
  }
  const hosts: Array<{ host: string; port: number }> = [];
  for (const part of (hostlist ?? '').split(',')) {
    const h = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(part);
    const port = h?.[3] === undefined ? 5432 : Number(h[3]);
    if (!h || !(port >= 1 && port <= 65535)) return bad(`host ${JSON.stringify(part.slice(0, 60))} is not host[:port]`);
    hosts.push({ host: h[1] ?? h[2]!, port });
  }
  const database = decodeURIComponent(dbRaw ?? '');
  if (!/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/.test(database)) return bad('the URL must end with the database name (e.g. /scanbox)');
  let ssl: PgTarget['ssl'] = 'disable';
  let applicationName = 'scanbox-backend';
  for (const pair of (query ?? '').split('&')) {
    if (pair === '') continue;
    const [k, v = ''] = pair.split('=').map((s) => decodeURIComponent(s));
    if (k === 'sslmode' && (v === 'disable' || v === 'require' || v === 'verify-full')) ssl = v;
    else if (k === 'application_name' && /^[A-Za-z0-9_.-]{1,60}$/.test(v)) applicationName = v;
    else if (k === 'target_session_attrs' && v === 'read-write') continue;
    else if (k === 'password') return bad('the URL holds a password: give it as the credential dbpassword or in SCANBOX_BACKEND_DB_PASSWORD_FILE, never in the URL');
    else return bad(`unknown or bad parameter ${JSON.stringify(String(k).slice(0, 30))} (known: sslmode=disable|require|verify-full, application_name)`);
  }
  return { ok: true, target: { hosts, database, user, ssl, applicationName } };
}

/** The URL as shown in logs and status: never a password (there is none in it). */
export function describePgTarget(target: PgTarget): string {
  const hosts = target.hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
  return `postgres://${target.user}@${hosts}/${target.database}${target.ssl === 'disable' ? '' : `?sslmode=${target.ssl}`}`;
}

/** Numbers of int8 (bigint) and numeric columns as JavaScript numbers: every value here is far below 2^53. */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (value: string) => (value === null ? null : Number(value));
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as unknown as pg.CustomTypesConfig;

/** Whether an error says the connection or the host's role failed, not the statement. */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '25006' || code === '53300';
}

/** The client-side limit of a long query: a day (setTimeout's own limit is 24.8 days). */
const LONG_QUERY_MS = 86_400_000;

export type PgState = { state: 'connecting' } | { state: 'writable'; host: string; since: number } | { state: 'unavailable'; since: number; why: string };

export class PgConnection extends EventEmitter {
  private pool: pg.Pool | null = null;
  private poolHost = '';
  private listener: pg.Client | null = null;
  private searching: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private current: PgState = { state: 'connecting' };
  private readonly connectMs: number;
  private readonly statementMs: number;
  private readonly retryMs: number;

  constructor(private readonly o: PgConnectionOptions) {
    super();
    this.connectMs = o.connectMs ?? 3000;
    this.statementMs = o.statementMs ?? 5000;
    this.retryMs = o.retryMs ?? 250;
  }

  get state(): PgState {
    return this.current;
  }

  get target(): PgTarget {
    return this.o.target;
  }

  /** Finds the writable host once (resolves either way; `state` tells). */
  start(): Promise<void> {
    return this.search();
  }

  private clientConfig(host: { host: string; port: number }): pg.ClientConfig {
    const t = this.o.target;
    return {
      host: host.host,
      port: host.port,
      database: t.database,
      user: t.user,
      ...(this.o.password !== null ? { password: this.o.password } : {}),
      ssl: t.ssl === 'disable' ? false : { rejectUnauthorized: t.ssl === 'verify-full' },
      application_name: t.applicationName,
      connectionTimeoutMillis: this.connectMs,
      statement_timeout: this.statementMs,
      idle_in_transaction_session_timeout: this.statementMs * 2,
      query_timeout: this.statementMs + 1000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 5000,
      types: TYPES,
    };
  }

  /** Asks every host at once whether it takes writes; the first writable one in the URL's order. */
  private async findWritable(): Promise<{ host: { host: string; port: number }; problems: string[] } | { host: null; problems: string[] }> {
    const answers = await Promise.all(
      this.o.target.hosts.map(async (host) => {
        const client = new pg.Client(this.clientConfig(host));
        client.on('error', () => undefined);
        try {
          await client.connect();
          const rows = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
          return rows.rows[0]?.r === false ? null : 'in recovery (a standby)';
        } catch (error) {
          return messageOf(error);
        } finally {
          void client.end().catch(() => undefined);
        }
      }),
    );
    const problems = answers.map((a, i) => `${this.o.target.hosts[i]!.host}:${this.o.target.hosts[i]!.port} ${a ?? 'writable'}`);
    const index = answers.findIndex((a) => a === null);
    return index < 0 ? { host: null, problems } : { host: this.o.target.hosts[index]!, problems };
  }

  private search(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.searching ??= (async () => {
      try {
        const found = await this.findWritable();
        if (this.closed) return;
        if (found.host === null) {
          const why = `no database accepts writes: ${found.problems.join('; ')}`;
          if (this.current.state !== 'unavailable') {
            this.o.log.error('backend: database unavailable; every call is refused until one accepts writes', { why });
            this.current = { state: 'unavailable', since: Date.now(), why };
            this.emit('state', this.current);
          }
          this.scheduleRetry();
          return;
        }
        await this.usePool(found.host);
      } finally {
        this.searching = null;
      }
    })();
    return this.searching;
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.search();
    }, this.retryMs);
  }

  private async usePool(host: { host: string; port: number }): Promise<void> {
    const pool = new pg.Pool({ ...this.clientConfig(host), max: this.o.max ?? 10, idleTimeoutMillis: 30_000 });
    const name = `${host.host}:${host.port}`;
    pool.on('error', (error) => this.failed(pool, error));
    pool.on('connect', (client) => client.on('error', (error: Error) => this.failed(pool, error)));
    this.pool = pool;
    this.poolHost = name;
    const was = this.current;
    this.current = { state: 'writable', host: name, since: Date.now() };
    this.o.log.info(was.state === 'unavailable' ? 'backend: database writable again' : 'backend: database writable', { host: name });
    this.emit('state', this.current);
    await this.listen(host);
  }

  private async listen(host: { host: string; port: number }): Promise<void> {
    const channels = this.o.listen ?? [];
    if (channels.length === 0) return;
    const client = new pg.Client({ ...this.clientConfig(host), query_timeout: undefined, statement_timeout: undefined } as pg.ClientConfig);
    const pool = this.pool;
    client.on('error', (error) => this.failed(pool, error));
    client.on('end', () => {
      if (this.listener === client) this.failed(pool, new Error('the LISTEN connection ended'));
    });
    client.on('notification', (n) => this.emit('notification', n.channel, n.payload ?? ''));
    try {
      await client.connect();
      for (const channel of channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
      this.listener = client;
      // Whatever was notified while nobody listened is caught by whoever asks the store again now.
      this.emit('listening');
    } catch (error) {
      void client.end().catch(() => undefined);
      this.failed(pool, error);
    }
  }

  /** The pool (or its LISTEN connection) failed: drop it and look for the writable host again. */
  private failed(pool: pg.Pool | null, error: unknown): void {
    if (this.closed || pool === null || pool !== this.pool) return;
    this.o.log.warning('backend: database connection lost; looking for the writable host', { host: this.poolHost, error: messageOf(error) });
    this.pool = null;
    const listener = this.listener;
    this.listener = null;
    void listener?.end().catch(() => undefined);
    void pool.end().catch(() => undefined);
    this.current = { state: 'unavailable', since: Date.now(), why: messageOf(error) };
    this.emit('state', this.current);
    void this.search();
  }

  private ready(): pg.Pool {
    if (this.closed) throw new DatabaseUnavailable('the database connection is closed');
    if (this.pool === null) {
      void this.search();
      throw new DatabaseUnavailable(this.current.state === 'unavailable' ? this.current.why : 'no database connection yet');
    }
    return this.pool;
  }

  /**
   * One statement (atomic on its own). With a `name`, a prepared statement: parsed and planned once per
   * connection, then only bound and run (the calls' hot path; a name must always stand for the same text).
   */
  async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], name?: string): Promise<R[]> {
    const pool = this.ready();
    try {
      return (await pool.query<R>(name === undefined ? { text, values } : { name, text, values })).rows;
    } catch (error) {
      throw this.failure(pool, error);
    }
  }

  /**
   * One short transaction in READ COMMITTED; `work` makes no call outside the database. A query given
   * `{ long: true }` has no client-side time limit (a schema step or migrate working through every call; the
   * caller lifts statement_timeout for the transaction too).
   */
  async transaction<T>(work: (q: <R extends pg.QueryResultRow>(text: string, values?: unknown[], options?: { long?: boolean }) => Promise<R[]>) => Promise<T>): Promise<T> {
    const pool = this.ready();
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw this.failure(pool, error);
    }
    let broken = false;
    try {
      await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
      const result = await work(async (text, values = [], options = {}) =>
        options.long ? (await client.query({ text, values, query_timeout: LONG_QUERY_MS } as pg.QueryConfig)).rows : (await client.query(text, values)).rows,
      );
      await client.query('COMMIT');
      return result;
    } catch (error) {
      broken = isConnectionFailure(error);
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.failure(pool, error);
    } finally {
      client.release(broken);
    }
  }

  private failure(pool: pg.Pool, error: unknown): Error {
    if (isConnectionFailure(error)) {
      this.failed(pool, error);
      return new DatabaseUnavailable(`database ${this.poolHost}: ${messageOf(error)}`, { cause: error });
    }
    return error instanceof Error ? error : new Error(String(error));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.searching?.catch(() => undefined);
    const pool = this.pool;
    this.pool = null;
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
    await pool?.end().catch(() => undefined);
  }
}
