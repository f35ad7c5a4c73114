import { cell, formatTime, print } from '../app/table.js';
import { askDaemon, controlSocketPath } from '../control.js';
import type { DisplayEntry } from '../devices/display/display.js';
import { formatYuan } from '../money.js';

/**
 * `scanbox display [--follow] [--json]`: the customer-display line (contract §10) as the running daemon reads
 * it, through its control socket: the line's settings and counts, then each burst with its timing, bytes (hex),
 * what it means and what the box did or would do, and each scan. `--follow` goes on printing new entries until
 * Ctrl-C. A technician at a new shop rings up one sale in learn mode and reads family, variant, baud and parity
 * off this.
 *
 * Exit codes: 0 shown, 1 the daemon is not running or cannot be asked, 2 usage or no display line configured.
 */

const USAGE = 'usage: scanbox display [--follow] [--json]';
const POLL_MS = 500;

/** What the daemon answers of one entry of the display line's log (its armed total is not shown here). */
type Entry = Omit<DisplayEntry, 'armedFen'>;

function seconds(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

export function formatEntry(entry: Entry): string[] {
  const at = formatTime(entry.at, true);
  if (entry.kind === 'scan') return [`#${entry.seq} ${at}  scan -> ${cell(entry.decision)}`];
  const quiet = entry.quietBeforeMs === null || entry.quietBeforeMs === undefined ? 'first burst' : `after ${seconds(entry.quietBeforeMs)} quiet`;
  return [
    `#${entry.seq} ${at}  burst of ${entry.bytes} byte(s) in ${entry.ms} ms (longest pause ${entry.longestGapMs} ms), ${quiet}`,
    `    ${entry.hex ?? ''}${entry.truncated ? ' ...' : ''}`,
    `    ${cell(entry.meaning)}`,
    `    -> ${cell(entry.decision)}`,
  ];
}

function header(answer: Record<string, unknown>): string[] {
  const counts = (answer.counts ?? {}) as Record<string, number>;
  const armed = typeof answer.armed_fen === 'number' ? `armed ${formatYuan(answer.armed_fen)}` : 'nothing armed';
  return [
    `display line ${cell(String(answer.port))} ${answer.baud} baud, parity ${answer.parity}; family ${answer.family}; settle ${answer.settle_ms} ms`,
    answer.out_port ? `inline: every byte forwarded to ${cell(String(answer.out_port))}` : 'passive tap (no out port)',
    `mode ${answer.mode}${answer.mode === 'learn' ? ' (charges nothing: shows what it would charge)' : ' (takes payments)'}; ${armed}`,
    `bytes received ${counts.received ?? 0}, forwarded ${counts.forwarded ?? 0}, not forwarded ${counts.notForwarded ?? 0}, undecodable ${counts.undecodable ?? 0}`,
  ];
}

export async function displayCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const follow = args.includes('--follow') || args.includes('-f');
  const json = args.includes('--json');
  if (args.some((a) => !['--follow', '-f', '--json'].includes(a))) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const socket = controlSocketPath(env);
  let since = 0;
  let first = true;
  let stop = false;
  const onSignal = (): void => void (stop = true);
  process.once('SIGINT', onSignal);
  try {
    for (;;) {
      let answer: Record<string, unknown> | null;
      try {
        answer = await askDaemon(socket, { cmd: 'display', since }, 5000);
      } catch (error) {
        print(`daemon: cannot be asked: ${(error as Error).message}`);
        return 1;
      }
      if (answer === null) {
        print([
          `daemon: not running (nothing listens on ${socket})`,
          'the display line is read by the running daemon only; its log keeps every burst: journalctl -u scanbox | grep "display burst"',
        ]);
        return 1;
      }
      if (typeof answer.error === 'string') {
        print(`display: ${answer.error}`);
        return /no customer-display line/.test(answer.error) ? 2 : 1;
      }
      const entries = (Array.isArray(answer.entries) ? answer.entries : []) as Entry[];
      if (json) print(entries.map((e) => JSON.stringify(e)));
      else {
        if (first) print([...header(answer), '']);
        if (first && entries.length === 0) print('no burst yet');
        for (const entry of entries) print(formatEntry(entry));
      }
      first = false;
      since = entries.at(-1)?.seq ?? since;
      if (!follow || stop) return 0;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (stop) return 0;
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
}
