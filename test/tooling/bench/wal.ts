import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Counts the commits SQLite appends to a WAL file, read from the outside while the daemon writes.
 *
 * WAL layout (sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version, page size,
 * checkpoint sequence, salt-1, salt-2, checksums), then frames of a 24-byte header (page number, database
 * size in pages after the commit for a commit frame or 0 for any other frame, salt-1, salt-2, checksums)
 * followed by one page. Every frame of the current WAL generation carries the header's salts; a commit is
 * a frame whose "database size" is not 0. After a checkpoint the next writer restarts the WAL from the
 * front with new salts, and the file is not truncated, so frames of the old generation further on are
 * stale: they are told apart by their salts.
 *
 * With journal_mode=WAL and synchronous=FULL, SQLite syncs the WAL once per commit; a checkpoint adds a
 * sync of the WAL and one of the database file, and the first commit after a restart syncs the new WAL
 * header. So fsyncs = commits + about 3 per WAL restart, which is what `fsyncs` reports.
 *
 * Poll between writes (here: after each sale's final line, when its commits are done): a frame being
 * written at that instant could be counted early.
 */
export class WalCommitCounter {
  commits = 0;
  frames = 0;
  /** WAL generations started (checkpoints that reset the WAL). */
  restarts = 0;
  private salts: [number, number] | null = null;
  private pageSize = 0;
  private offset = 32;

  constructor(readonly path: string) {}

  /** fsyncs implied by what was counted (see the class comment). */
  get fsyncs(): number {
    return this.commits + 3 * this.restarts;
  }

  /** Starts counting from what the WAL holds now. */
  baseline(): void {
    this.poll();
    this.commits = 0;
    this.frames = 0;
    this.restarts = 0;
  }

  poll(): void {
    if (!existsSync(this.path)) return;
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < 32) return;
      const header = Buffer.alloc(32);
      readSync(fd, header, 0, 32, 0);
      const magic = header.readUInt32BE(0);
      if (magic !== 0x377f0682 && magic !== 0x377f0683) return;
      const pageSize = header.readUInt32BE(8);
      const salts: [number, number] = [header.readUInt32BE(16), header.readUInt32BE(20)];
      if (this.salts === null) {
        this.salts = salts;
        this.pageSize = pageSize;
        this.offset = 32;
      } else if (salts[0] !== this.salts[0] || salts[1] !== this.salts[1]) {
        // Restarted since the last poll: first the old generation's frames written after the last poll
        // (not yet overwritten: the new generation starts at the front), then the new one from the front.
        this.scan(fd, size, this.salts);
        this.restarts++;
        this.salts = salts;
        this.pageSize = pageSize;
        this.offset = 32;
      }
      this.scan(fd, size, this.salts);
    } finally {
      closeSync(fd);
    }
  }

  private scan(fd: number, size: number, salts: [number, number]): void {
    const frame = Buffer.alloc(24);
    while (this.offset + 24 + this.pageSize <= size) {
      readSync(fd, frame, 0, 24, this.offset);
      if (frame.readUInt32BE(8) !== salts[0] || frame.readUInt32BE(12) !== salts[1]) break;
      this.frames++;
      if (frame.readUInt32BE(4) !== 0) this.commits++;
      this.offset += 24 + this.pageSize;
    }
  }
}
