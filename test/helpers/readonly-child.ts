/**
 * Opens journals as an unprivileged user (the test runs it through setpriv when it is itself root, since
 * root may write anywhere). Prints one JSON line: what each open did.
 */
import { VirtualClock } from '../../src/clock.js';
import { Journal, JournalError } from '../../src/journal/journal.js';

const [lockedDir, existingFile] = process.argv.slice(2) as [string, string];
const options = { deviceId: 'TESTBOX1', clock: new VirtualClock() };
const attempt = (fn: () => Journal): { code: string; message: string } => {
  try {
    fn().close();
    return { code: 'OK', message: '' };
  } catch (error) {
    return error instanceof JournalError
      ? { code: error.code, message: error.message }
      : { code: 'OTHER', message: (error as Error).message };
  }
};
let readable = -1;
const result = {
  newInLockedDir: attempt(() => Journal.open(`${lockedDir}/scanbox.db`, options)),
  existingReadWrite: attempt(() => Journal.open(existingFile, options)),
  existingReadOnly: attempt(() => {
    const journal = Journal.open(existingFile, { ...options, readonly: true });
    readable = journal.recent(5).length;
    return journal;
  }),
  readable,
};
result.readable = readable;
process.stdout.write(JSON.stringify(result) + '\n');
