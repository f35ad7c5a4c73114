/**
 * Fault injection for the real daemon (`node --import=<this file> dist/cli.js run`): its journal connection
 * gets PRAGMA max_page_count = the file's pages at open + FAULT_JOURNAL_ROOM_PAGES, so the disk is as full
 * as the test makes the file, and SQLite answers SQLITE_FULL exactly as on a full SD card. The daemon's
 * code is not touched: better-sqlite3's pragma() is wrapped, and the limit is set right after the journal
 * sets `synchronous = FULL` on a read-write connection (src/journal/journal.ts).
 */
import Database from 'better-sqlite3';

const room = Number(process.env.FAULT_JOURNAL_ROOM_PAGES);
if (!Number.isSafeInteger(room) || room < 0) throw new Error('FAULT_JOURNAL_ROOM_PAGES must be an integer >= 0');
const pragma = Database.prototype.pragma;
Database.prototype.pragma = function (source, options) {
  const result = pragma.call(this, source, options);
  if (source === 'synchronous = FULL') {
    const pages = pragma.call(this, 'page_count', { simple: true });
    pragma.call(this, `max_page_count = ${pages + room}`);
  }
  return result;
};
