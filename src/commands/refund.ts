import { randomBytes } from 'node:crypto';
import { actAlone } from '../app/alone.js';
import { TECHNICIAN_REFUND_WAIT_MS, refundEngineFor } from '../app/parts.js';
import { print } from '../app/table.js';
import { systemClock } from '../clock.js';
import { ControlError, askDaemon, controlSocketPath, refundAnswer, type RefundAnswer } from '../control.js';
import { REF } from '../ids.js';
import { locateJournal, openJournalReadonly } from '../app/journal-access.js';
import type { Refund } from '../journal/refunds.js';
import { parseFen } from '../money.js';

/**
 * `scanbox refund REF AMOUNT [--id RID] [--again]`: a technician's refund of AMOUNT fen of the PAID sale REF,
 * journalled like a register refund (the RID is its idempotency key: the same command again refunds nothing
 * again). With the daemon running its own refund engine does it, through the control socket; with the daemon
 * stopped, this command opens the journal and WeChat Pay itself. SCANBOX_REFUNDS and the register's day cap do
 * not apply.
 *
 * Safe to run twice: the RID is printed before anything is sent; when the daemon does not answer, the command
 * says the refund may be under way and prints the command that follows it up with the same RID; and a second
 * refund of the same REF and amount within DUPLICATE_WINDOW_MS, without --id (a technician who did not see the
 * first one's answer and typed the command again), is refused unless --again says it is meant.
 *
 * Exit codes: 0 WeChat Pay accepted the refund (now or before), 1 not accepted (refused, still pending, a
 * probable duplicate, or it could not be tried), 2 usage or configuration.
 */

const USAGE = 'usage: scanbox refund REF AMOUNT [--id RID] [--again]   (AMOUNT in fen: 1234 = 12.34 yuan)';
/** A refund of the same REF and amount this recent is taken for the same one asked again. */
export const DUPLICATE_WINDOW_MS = 10 * 60_000;
/** The daemon works up to TECHNICIAN_REFUND_WAIT_MS on it, then answers. */
const DAEMON_TIMEOUT_MS = TECHNICIAN_REFUND_WAIT_MS + 15_000;

function usage(problem: string): number {
  process.stderr.write(`${problem}\n${USAGE}\n`);
  return 2;
}

/** A new RID: T, the time in base 36 and 4 random characters, within REF's syntax. */
export function newRid(now: number): string {
  return `T${now.toString(36).toUpperCase()}${randomBytes(3).toString('hex').toUpperCase().slice(0, 4)}`;
}

function asRefund(answer: Record<string, unknown>): RefundAnswer | null {
  const { ok, state, line, text } = answer;
  if (typeof ok !== 'boolean' || typeof state !== 'string' || typeof line !== 'string' || typeof text !== 'string') return null;
  return { ok, state, line, text };
}

/** The command that asks about the same refund again: idempotent, it never refunds twice. */
function followUp(req: { ref: string; amountFen: number; rid: string }): string {
  return `scanbox refund ${req.ref} ${req.amountFen} --id ${req.rid}`;
}

function report(result: RefundAnswer, how: string, req: { ref: string; amountFen: number; rid: string }): number {
  print(`${result.line}`);
  print(`${result.ok ? 'accepted by WeChat Pay' : result.state === 'none' ? 'not refunded' : `not accepted yet (state ${result.state})`} ${how}${result.text ? `: ${result.text}` : ''}`);
  if (!result.ok && result.state !== 'none' && result.state !== 'failed') {
    print(`to follow it up (nothing is refunded twice): ${followUp(req)}`);
  }
  return result.ok ? 0 : 1;
}

/**
 * A refund of the same REF and amount made within DUPLICATE_WINDOW_MS that may have moved money (any state but
 * refused or closed), from the journal read-only; null when there is none or the journal cannot be read (the
 * refund itself then says what is wrong).
 */
function recentTwin(env: NodeJS.ProcessEnv, ref: string, amountFen: number, now: number): Refund | null {
  let journal;
  try {
    journal = openJournalReadonly(locateJournal(env));
  } catch {
    return null;
  }
  try {
    const recent = journal.refunds.createdBetween(now - DUPLICATE_WINDOW_MS, now + 60_000);
    return recent.filter((r) => r.ref === ref && r.amountFen === amountFen && r.state !== 'failed' && r.state !== 'closed').pop() ?? null;
  } catch {
    return null;
  } finally {
    journal.close();
  }
}

function refundLocally(req: { ref: string; amountFen: number; rid: string }, env: NodeJS.ProcessEnv): Promise<number> {
  return actAlone(env, 'refund', async ({ log, upstream, journal }) => {
    const refunds = refundEngineFor({ journal, gateway: upstream, log });
    const result = refundAnswer(await refunds.technicianRefund(req, TECHNICIAN_REFUND_WAIT_MS));
    if (!result.ok && result.state !== 'none' && result.state !== 'failed') {
      print('the daemon finishes it when it starts (it asks WeChat Pay and retries with the same refund number)');
    }
    return report(result, 'by this command (daemon not running)', req);
  });
}

export async function refundCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const positional: string[] = [];
  let rid: string | null = null;
  let again = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--again') again = true;
    else if (arg === '--id') {
      const value = args[++i];
      if (value === undefined) return usage('--id needs a RID');
      rid = value;
    } else if (arg.startsWith('--id=')) rid = arg.slice(5);
    else if (arg.startsWith('-')) return usage(`unknown option ${JSON.stringify(arg.slice(0, 40))}`);
    else positional.push(arg);
  }
  const [ref, amountText, ...extra] = positional;
  if (ref === undefined || amountText === undefined || extra.length > 0) return usage('refund needs REF and AMOUNT');
  if (!REF.test(ref)) return usage(`not a register REF: ${JSON.stringify(ref.slice(0, 40))} (1-32 of A-Z a-z 0-9 _ -)`);
  const amountFen = parseFen(amountText);
  if (amountFen === null) return usage(`not an amount in fen: ${JSON.stringify(amountText.slice(0, 40))} (whole fen, digits only: 1234 = 12.34 yuan)`);
  if (rid !== null && !REF.test(rid)) return usage(`not a RID: ${JSON.stringify(rid.slice(0, 40))} (1-32 of A-Z a-z 0-9 _ -)`);
  const now = systemClock.now();
  if (rid === null && !again) {
    const twin = recentTwin(env, ref, amountFen, now);
    if (twin !== null) {
      const ago = Math.max(0, Math.round((now - twin.createdAt) / 60_000));
      print(
        `refused: refund ${twin.rid} of ${amountFen} fen of ${ref} was asked ${ago === 0 ? 'less than a minute' : `${ago} min`} ago (state ${twin.state}); nothing sent`,
      );
      print(`to follow that one up (nothing is refunded twice): ${followUp({ ref, amountFen, rid: twin.rid })}`);
      print(`to refund ${amountFen} fen of ${ref} once more on purpose: scanbox refund ${ref} ${amountFen} --again`);
      return 1;
    }
  }
  const request = { ref, amountFen, rid: rid ?? newRid(now) };
  // The RID is what makes a repeated command harmless: say it first, before anything is sent, so it can be given
  // again with --id whatever happens next.
  print(`refund ${request.rid}: ${amountFen} fen of ${ref}${rid === null ? ` (a new RID; to ask about it again: ${followUp(request)})` : ''}`);

  const socket = controlSocketPath(env);
  let answer: Record<string, unknown> | null;
  try {
    answer = await askDaemon(socket, { cmd: 'refund', ref, amount_fen: amountFen, rid: request.rid }, DAEMON_TIMEOUT_MS);
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof ControlError && error.code === 'DENIED') print(`cannot ask the daemon: ${message}`);
    else {
      print(`no answer from the daemon: ${message}`);
      print(`the refund may be under way: do not refund again under a new RID; follow it up (nothing is refunded twice): ${followUp(request)}`);
      print(`scanbox tx show ${ref} shows where it stands`);
    }
    return 1;
  }
  if (answer === null) {
    print('daemon not running (nothing listens on its control socket): refunding from this command');
    return refundLocally(request, env);
  }
  if (typeof answer.error === 'string') {
    print(`the daemon did not take the request: ${answer.error}`);
    return 1;
  }
  const result = asRefund(answer);
  if (!result) {
    print(`the daemon answered something unexpected: ${JSON.stringify(answer).slice(0, 200)}`);
    return 1;
  }
  return report(result, 'by the running daemon', request);
}
