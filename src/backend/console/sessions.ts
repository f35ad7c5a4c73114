import { randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The console's sessions, in this process's memory: a random token in an HttpOnly, SameSite=Strict cookie
 * (Secure on TLS), a CSRF token of its own that every form carries, an absolute lifetime. A restart of the
 * backend logs everybody out, which is acceptable for a console; several backends of a chain each keep their
 * own (a load balancer in front of the consoles needs sticky sessions).
 */

export const SESSION_COOKIE = 'scanbox_console';
export const SESSION_MS = 8 * 3600_000;

export interface Session {
  admin: string;
  csrf: string;
  expiresAt: number;
}

export class Sessions {
  private readonly byToken = new Map<string, Session>();

  constructor(private readonly now: () => number) {}

  open(admin: string): { token: string; session: Session } {
    this.sweep();
    const token = randomBytes(32).toString('base64url');
    const session = { admin, csrf: randomBytes(24).toString('base64url'), expiresAt: this.now() + SESSION_MS };
    this.byToken.set(token, session);
    return { token, session };
  }

  get(token: string | undefined): Session | null {
    if (token === undefined || token.length > 100) return null;
    const session = this.byToken.get(token);
    if (session === undefined) return null;
    if (session.expiresAt <= this.now()) {
      this.byToken.delete(token);
      return null;
    }
    return session;
  }

  close(token: string | undefined): void {
    if (token !== undefined) this.byToken.delete(token);
  }

  /** Ends every session of an admin (removed by `scanbox backend admin remove` is seen at their next request). */
  closeAdmin(admin: string): void {
    for (const [token, s] of this.byToken) if (s.admin === admin) this.byToken.delete(token);
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, s] of this.byToken) if (s.expiresAt <= now) this.byToken.delete(token);
  }
}

export function sameToken(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Login attempts: at most `max` failures per `windowMs` per address and per name; a success does not reset the
 * name's count (a guesser who also knows a password must not clear the slate).
 */
export class LoginLimit {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly now: () => number,
    private readonly max = 5,
    private readonly windowMs = 15 * 60_000,
  ) {}

  blocked(keys: string[]): boolean {
    const since = this.now() - this.windowMs;
    return keys.some((k) => (this.failures.get(k) ?? []).filter((t) => t > since).length >= this.max);
  }

  fail(keys: string[]): void {
    const now = this.now();
    for (const k of keys) {
      const list = (this.failures.get(k) ?? []).filter((t) => t > now - this.windowMs);
      list.push(now);
      this.failures.set(k, list);
    }
    if (this.failures.size > 10_000) this.failures.clear();
  }
}
