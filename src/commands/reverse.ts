import { actAlone } from '../app/alone.js';
import { locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { engineFor } from '../app/parts.js';
import { SALE_ALIGN, SALE_HEADERS, print, saleRows, table } from '../app/table.js';
import { ControlError, askDaemon, controlSocketPath, reverseAnswer, type ReverseAnswer } from '../control.js';
import { OUT_TRADE_NO } from '../ids.js';

/**
 * `scanbox reverse OUT_TRADE_NO`: a technician's manual reversal (a paid sale is given back to the payer;
 * a reversal that is pending or was refused is tried again now), recorded in the journal like any other.
 *
 * With the daemon running, the daemon's own engine does it (through the control socket), so the two never
 * reverse one sale at once. With the daemon stopped, this command opens the journal and WeChat Pay itself.
 *
 * Exit codes: 0 the sale is reversed (now or before), 1 not reversed (refused, still pending, or it could
 * not be tried), 2 usage or configuration.
 */

const USAGE = 'usage: scanbox reverse OUT_TRADE_NO';
/** The 15 s rule, three attempts with back-off, each up to 8 s and a failover: the daemon answers well within this. */
const DAEMON_TIMEOUT_MS = 120_000;

function asReverse(answer: Record<string, unknown>): ReverseAnswer | null {
  const { ok, state, code, text } = answer;
  if (typeof ok !== 'boolean' || typeof state !== 'string' || typeof text !== 'string') return null;
  return { ok, state, code: typeof code === 'string' ? code : null, text };
}

/** The outcome in words, and the exit code it means: 0 only for a sale that is reversed. */
function report(outTradeNo: string, result: ReverseAnswer, how: string): number {
  const label =
    result.state === 'reversed'
      ? 'reversed'
      : result.state === 'reversing'
        ? 'pending'
        : result.state === 'reverse_failed'
          ? 'refused by WeChat Pay'
          : `not reversed (state ${result.state})`;
  print(`${label}: ${outTradeNo}${result.code ? ` [${result.code}]` : ''} ${how}: ${result.text}`);
  return result.state === 'reversed' ? 0 : 1;
}

/** The sale's row as it now stands, for the record on the technician's screen; nothing when it cannot be read. */
function showSale(env: NodeJS.ProcessEnv, outTradeNo: string): void {
  try {
    const journal = openJournalReadonly(locateJournal(env));
    try {
      const sale = journal.byOutTradeNo(outTradeNo);
      if (sale) print(table(SALE_HEADERS, saleRows([sale]), SALE_ALIGN));
    } finally {
      journal.close();
    }
  } catch {
    // The outcome above is what counts; the row is a courtesy.
  }
}

function reverseLocally(outTradeNo: string, env: NodeJS.ProcessEnv): Promise<number> {
  return actAlone(env, 'reverse', async ({ config, log, upstream, journal }) => {
    const engine = engineFor(config, { journal, gateway: upstream, log });
    const result = await engine.manualReverse(outTradeNo);
    return report(outTradeNo, reverseAnswer(result), 'by this command (daemon not running)');
  });
}

export async function reverseCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const outTradeNo = args[0];
  if (args.length !== 1 || outTradeNo === undefined || !OUT_TRADE_NO.test(outTradeNo)) {
    process.stderr.write(`${args.length === 1 ? `not an out_trade_no: ${JSON.stringify(String(outTradeNo).slice(0, 40))}\n` : ''}${USAGE}\n`);
    return 2;
  }
  const socket = controlSocketPath(env);
  // WeChat Pay's 15 s rule and the retries can make this take a while: say what is going on first.
  print(`reversing ${outTradeNo}: asking the daemon (${socket}); this can take up to a minute`);
  let answer: Record<string, unknown> | null;
  try {
    answer = await askDaemon(socket, { cmd: 'reverse', out_trade_no: outTradeNo }, DAEMON_TIMEOUT_MS);
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof ControlError && error.code === 'DENIED') print(`cannot ask the daemon: ${message}`);
    else {
      // The request may have reached the daemon (it timed out, or the daemon stopped meanwhile).
      print(`no answer from the daemon: ${message}; the reversal may be under way: scanbox tx show ${outTradeNo} shows where it stands`);
    }
    return 1;
  }
  let exit: number;
  if (answer === null) {
    print('daemon not running (nothing listens on its control socket): reversing from this command');
    exit = await reverseLocally(outTradeNo, env);
  } else if (typeof answer.error === 'string') {
    print(`the daemon did not take the request: ${answer.error}`);
    return 1;
  } else {
    const result = asReverse(answer);
    if (!result) {
      print(`the daemon answered something unexpected: ${JSON.stringify(answer).slice(0, 200)}`);
      return 1;
    }
    exit = report(outTradeNo, result, 'by the running daemon');
  }
  if (exit !== 2) showSale(env, outTradeNo);
  return exit;
}
