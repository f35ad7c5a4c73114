import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { BackendStore } from '../store.js';
import { ADMIN_NAME, ADMIN_NAME_RULE, hashPassword, passwordProblem } from './password.js';

/**
 * `scanbox backend admin add NAME [--password-file FILE]` / `admin remove NAME` (contract §1, §11): the people who
 * may use the console. The password comes from FILE (its first line) or is asked on the terminal without echo;
 * only its scrypt hash is kept. Each change is kept in the store's admin actions, by the system user who ran it.
 */

export const ADMIN_USAGE = `  scanbox backend admin add NAME [--password-file FILE]   a person who may use the web console (password asked if no FILE)
  scanbox backend admin remove NAME                       take that away (their open sessions end at their next request)`;

export async function adminCommand(
  args: string[],
  openStore: () => BackendStore | number | Promise<BackendStore | number>,
  io: { out: (line: string) => void; err: (line: string) => void; askPassword?: (prompt: string) => Promise<string> } ,
): Promise<number> {
  const [sub, name, ...rest] = args;
  if ((sub !== 'add' && sub !== 'remove') || name === undefined) {
    io.err(`usage:\n${ADMIN_USAGE}`);
    return 2;
  }
  if (!ADMIN_NAME.test(name)) {
    io.err(`NAME must be ${ADMIN_NAME_RULE}`);
    return 2;
  }
  let password: string | null = null;
  if (sub === 'add') {
    let file: string | undefined;
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] === '--password-file' && rest[i + 1] !== undefined) file = rest[++i];
      else {
        io.err(`unexpected argument: ${rest[i]}\nusage:\n${ADMIN_USAGE}`);
        return 2;
      }
    }
    try {
      password = file !== undefined ? (readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '') : await (io.askPassword ?? askOnTerminal)(`password for ${name}: `);
    } catch (error) {
      io.err(`cannot read the password: ${(error as Error).message}`);
      return 2;
    }
    const problem = passwordProblem(password);
    if (problem !== null) {
      io.err(problem);
      return 2;
    }
  } else if (rest.length > 0) {
    io.err(`unexpected argument: ${rest[0]}`);
    return 2;
  }
  const store = await openStore();
  if (typeof store === 'number') return store;
  const who = `${process.env.SUDO_USER ?? safeUser()} (command line)`;
  try {
    if (sub === 'add') {
      const added = await store.putAdmin({ name, passwordHash: await hashPassword(password!), at: Date.now() });
      await store.recordAdminAction({ admin: who, action: added ? 'admin_add' : 'admin_password', deviceId: null, detail: name, at: Date.now() });
      io.out(added ? `admin ${name} added: they can log in to the console` : `admin ${name}: password changed`);
      return 0;
    }
    if (!(await store.removeAdmin(name))) {
      io.err(`no admin ${name}`);
      return 1;
    }
    await store.recordAdminAction({ admin: who, action: 'admin_remove', deviceId: null, detail: name, at: Date.now() });
    io.out(`admin ${name} removed`);
    return 0;
  } finally {
    await store.close();
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** The password from the terminal, not echoed; from standard input's first line when it is not a terminal. */
function askOnTerminal(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return new Promise((resolve, reject) => {
      let text = '';
      stdin.setEncoding('utf8');
      stdin.on('data', (chunk: string) => (text += chunk));
      stdin.once('end', () => resolve(text.split(/\r?\n/)[0] ?? ''));
      stdin.once('error', reject);
    });
  }
  process.stderr.write(prompt);
  return new Promise((resolve) => {
    let text = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(text);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          process.stderr.write('\n');
          process.exit(130);
        }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on('data', onData);
  });
}
