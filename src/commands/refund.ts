import { randomBytes } from 'node:crypto';
import { actAlone } from '../app/alone.js';
import { TECHNICIAN_REFUND_WAIT_MS, refundEngineFor } from '../app/parts.js';
import { print } from '../app/table.js';
import { systemClock } from '../clock.js';
import { ControlError, askDaemon, controlSocketPath, refundAnswer, type RefundAnswer } from '../control.js';
import { REF } from '../ids.js';
import { parseFen } from '../money.js';

/**
 * `scanbox refund REF AMOUNT [--id RID]`: a technician's refund of AMOUNT fen of the PAID sale REF, journalled
 * like a register refund (the RID is its idempotency key: the same command again refunds nothing again). With
 * the daemon running its own refund engine does it, through the control socket; with the daemon stopped, this
 * command opens the journal and WeChat Pay itself. SCANBOX_REFUNDS and the register's day cap do not apply.
 *
 * Exit codes: 0 WeChat Pay accepted the refund (now or before), 1 not accepted (refused, still pending, or it
 * could not be tried), 2 usage or configuration.
 */

const USAGE = 'usage: scanbox refund REF AMOUNT [--id RID]   (AMOUNT in fen: 1234 = 12.34 yuan)';
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

function report(result: RefundAnswer, how: string): number {
  print(`${result.line}`);
  print(`${result.ok ? 'accepted by WeChat Pay' : result.state === 'none' ? 'not refunded' : `not accepted yet (state ${result.state})`} ${how}${result.text ? `: ${result.text}` : ''}`);
  return result.ok ? 0 : 1;
}

function refundLocally(req: { ref: string; amountFen: number; rid: string }, env: NodeJS.ProcessEnv): Promise<number> {
  return actAlone(env, 'refund', async ({ log, upstream, journal }) => {
    const refunds = refundEngineFor({ journal, gateway: upstream, log });
    const result = refundAnswer(await refunds.technicianRefund(req, TECHNICIAN_REFUND_WAIT_MS));
    const exit = report(result, 'by this command (daemon not running)');
    if (!result.ok && result.state !== 'none' && result.state !== 'failed') {
      print('the daemon finishes it when it starts (it asks WeChat Pay and retries with the same refund number)');
    }
    return exit;
  });
}

export async function refundCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const positional: string[] = [];
  let rid: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--id') {
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
  const request = { ref, amountFen, rid: rid ?? newRid(systemClock.now()) };
  // The RID is what makes a repeated command harmless: say it first, so it can be given again with --id.
  print(`refund ${request.rid}: ${amountFen} fen of ${ref}${rid === null ? ' (a new RID; repeat with --id ' + request.rid + ' to ask again)' : ''}`);

  const socket = controlSocketPath(env);
  let answer: Record<string, unknown> | null;
  try {
    answer = await askDaemon(socket, { cmd: 'refund', ref, amount_fen: amountFen, rid: request.rid }, DAEMON_TIMEOUT_MS);
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof ControlError && error.code === 'DENIED') print(`cannot ask the daemon: ${message}`);
    else print(`no answer from the daemon: ${message}; the refund may be under way: scanbox tx show ${ref} shows where it stands`);
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
  return report(result, 'by the running daemon');
}
