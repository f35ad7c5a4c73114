import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BILL_TIME_ZONE } from '../../../src/books/reconcile.js';
import { businessDay, dayBounds, previousDay } from '../../../src/business-day.js';
import { GatewaySimulator, type SimBillRow } from '../../../src/simulator/gateway.js';
import { packageRoot } from '../../../src/simulator/package-root.js';
import { WechatPayClient } from '../../../src/wechatpay/client.js';
import type { Row } from './common.js';
import type { BusyDay } from './year-journal.js';

/**
 * Reconciliation at scale: a bill of BILL_ROWS rows (a busy merchant with several boxes: the bench box's paid
 * sales of that day, the rest other boxes' sales and a few of their refunds) against the year's journal
 * (year-journal.ts, with that day made busy: BILL_ROWS x 0.95 of its sales on it, 92 % of them paid, with
 * `paid_at` on that China-time day).
 *
 * The bill is the simulator's: its rows are planted (plantBillRow) and it is fetched from /pay/downloadbill
 * with the product's client (gzip, as `scanbox reconcile` asks for it), then written to a file. A child
 * process (reconcile-child.ts), started with the Node flags and environment of systemd/scanbox-reconcile.service,
 * reads the text and does what the command does with it: parseBill, Journal.open, reconcile(). The figures are
 * its own: parseBill + reconcile() in ms (Journal.open, which runs quick_check over the whole file, shown
 * apart), and VmHWM from /proc/self/status at its end, the peak resident set of the whole process (Node
 * itself included), as /usr/bin/time -v would report it.
 *
 * Twice: a clean bill (must give 0 discrepancies and match every row of the box), and the same bill with
 * planted differences, each of which must be found once with its kind, and nothing else.
 */

const BILL_ROWS = Number(process.env.BENCH_BILL_ROWS ?? 20_000);
const DEVICE = 'BENCH01';
const OTHER_BOXES = ['SHOP02', 'SHOP03', 'SHOP04'];

type Progress = (text: string) => void;

/** The China-time day two days ago (its bill is ready and within WeChat Pay's three months), and the busy day for the journal. */
export function billDay(now: number): { date: string; busy: BusyDay } {
  const date = previousDay(previousDay(businessDay(now, BILL_TIME_ZONE)));
  const { startMs, endMs } = dayBounds(date, BILL_TIME_ZONE);
  return { date, busy: { startMs, endMs, sales: Math.round(BILL_ROWS * 0.95) } };
}

interface ChildResult {
  chars: number;
  rows: number;
  parseMs: number;
  openMs: number;
  reconcileMs: number;
  rssAtStartKb: number;
  hwmKb: number;
  rssKb: number;
  steps: Record<string, { rss: number; anon: number; file: number; heap: number; hwm: number }>;
  matched: number;
  mine: number;
  others: number;
  discrepancies: { kind: string; out_trade_no: string; out_refund_no?: string }[];
}

/** The Node flags and the environment the reconcile unit starts `scanbox reconcile` with. */
function unitRuntime(): { flags: string[]; env: Record<string, string> } {
  const unit = readFileSync(join(packageRoot(), 'systemd', 'scanbox-reconcile.service'), 'utf8');
  const exec = /^ExecStart=\S*node((?:\s+--\S+)*)\s+\S+cli\.js reconcile\s*$/m.exec(unit);
  if (!exec) throw new Error('systemd/scanbox-reconcile.service: no ExecStart=... node [flags] .../cli.js reconcile line');
  const env: Record<string, string> = {};
  for (const [, key, value] of unit.matchAll(/^Environment=(\w+)=(\S*)\s*$/gm)) env[key!] = value!;
  return { flags: exec[1]!.trim().split(/\s+/).filter(Boolean), env };
}

function runChild(billPath: string, dbPath: string, date: string): Promise<ChildResult> {
  const { flags, env } = unitRuntime();
  const script = fileURLToPath(new URL('./reconcile-child.js', import.meta.url));
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && key !== 'NODE_OPTIONS') base[key] = value;
  const child = spawn(process.execPath, [...flags, script, billPath, dbPath, DEVICE, date], {
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`reconcile child exited with ${code}: ${err.trim()}`));
      try {
        resolve(JSON.parse(out) as ChildResult);
      } catch {
        reject(new Error(`reconcile child printed no result: ${out.slice(0, 300)} ${err.slice(0, 300)}`));
      }
    });
  });
}

type Planted = Partial<SimBillRow> & { at: number; outTradeNo: string };

export async function reconcilePhase(dir: string, yearPath: string, tag: string, date: string, progress: Progress): Promise<Row[]> {
  const { startMs, endMs } = dayBounds(date, BILL_TIME_ZONE);
  // The journal's side of the day, read straight from the file.
  const db = new Database(yearPath, { readonly: true });
  const paid = db
    .prepare("SELECT ref, amount_fen, out_trade_no, transaction_id, paid_at FROM sales WHERE state = 'paid' AND paid_at >= ? AND paid_at < ? ORDER BY paid_at, id")
    .all(startMs, endMs) as { ref: string; amount_fen: number; out_trade_no: string; transaction_id: string; paid_at: number }[];
  const failed = db
    .prepare("SELECT ref, amount_fen, out_trade_no, created_at FROM sales WHERE state = 'failed' AND created_at >= ? AND created_at < ? ORDER BY id LIMIT 1")
    .get(startMs, endMs) as { ref: string; amount_fen: number; out_trade_no: string; created_at: number } | undefined;
  db.close();
  if (paid.length < 50 || !failed) throw new Error(`the journal has ${paid.length} paid sales on ${date}: too few to reconcile at scale`);

  // The box's rows, then the other boxes' up to BILL_ROWS (one in 50 of theirs a refund).
  const mine: Planted[] = paid.map((s) => ({
    at: s.paid_at,
    outTradeNo: s.out_trade_no,
    transactionId: s.transaction_id,
    deviceInfo: DEVICE,
    settlementFen: s.amount_fen,
    orderFen: s.amount_fen,
    attach: s.ref,
    body: 'scanbox',
  }));
  const others: Planted[] = [];
  let seed = 777;
  const random = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const otherCount = Math.max(0, BILL_ROWS - mine.length);
  for (let i = 0; i < otherCount; i++) {
    const box = OTHER_BOXES[i % OTHER_BOXES.length]!;
    const at = startMs + Math.floor(((i + 0.5) / otherCount) * (endMs - startMs - 1000));
    const outTradeNo = `${box}K7Q9${String(i + 1).padStart(8, '0')}`;
    const fen = 100 + Math.floor(random() * 20000);
    if (i % 50 === 49) {
      others.push({ at, outTradeNo, deviceInfo: box, tradeState: 'REFUND', outRefundNo: `${box}K7Q9R${String(i + 1).padStart(8, '0')}`, refundFen: 100, body: 'other box' });
    } else others.push({ at, outTradeNo, deviceInfo: box, settlementFen: fen, orderFen: fen, attach: `O${i}`, body: 'other box' });
  }

  // The planted differences, each one of a kind the box must name.
  const pick = (k: number): Planted => mine[Math.floor((k / 7) * mine.length)]!;
  const amount = pick(1);
  const dropped = pick(2);
  const revoked = pick(3);
  const refunded = pick(4);
  const ghostNo = `${DEVICE}${tag}99999999`;
  const expected = [
    { kind: 'AMOUNT_MISMATCH', out_trade_no: amount.outTradeNo },
    { kind: 'PAID_NOT_IN_BILL', out_trade_no: dropped.outTradeNo },
    { kind: 'PAID_NOT_IN_BILL', out_trade_no: revoked.outTradeNo },
    { kind: 'UNKNOWN_ORDER', out_trade_no: ghostNo },
    { kind: 'CHARGED_NOT_REPORTED', out_trade_no: failed.out_trade_no },
    { kind: 'REFUND_MISMATCH', out_trade_no: refunded.outTradeNo },
  ];
  const plantedBill: Planted[] = [];
  for (const row of mine) {
    if (row === dropped) continue;
    if (row === amount) plantedBill.push({ ...row, settlementFen: row.settlementFen! + 100, orderFen: row.orderFen! + 100 });
    else if (row === revoked) plantedBill.push({ ...row, tradeState: 'REVOKED' });
    else plantedBill.push(row);
  }
  plantedBill.push(
    { at: revoked.at + 60_000, outTradeNo: ghostNo, deviceInfo: DEVICE, settlementFen: 500, orderFen: 500, attach: 'GHOST' },
    { at: failed.created_at + 1000, outTradeNo: failed.out_trade_no, deviceInfo: DEVICE, settlementFen: failed.amount_fen, orderFen: failed.amount_fen, attach: failed.ref },
    {
      at: refunded.at + 3_600_000 < endMs ? refunded.at + 3_600_000 : refunded.at,
      outTradeNo: refunded.outTradeNo,
      deviceInfo: DEVICE,
      tradeState: 'REFUND',
      outRefundNo: `${DEVICE}${tag}R00000001`,
      refundFen: 100,
      attach: refunded.attach!,
    },
    ...others,
  );

  // The bills, as the simulator serves them.
  const merchant = { mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: 'BenchReconcileKey0123456789abcdef' };
  const sim = await GatewaySimulator.start(merchant);
  const client = new WechatPayClient({ merchant: { ...merchant, signType: 'HMAC-SHA256' }, apiBase: sim.origin, ca: sim.pki.ca.certPem });
  const fetchBill = async (rows: Planted[], name: string): Promise<string> => {
    sim.clearBillChanges();
    for (const row of rows) sim.plantBillRow(row);
    const outcome = await client.downloadbill({ billDate: date, billType: 'ALL', gzip: true });
    if (outcome.kind !== 'bill') throw new Error(`downloadbill ${date}: ${JSON.stringify(outcome).slice(0, 300)}`);
    const path = join(dir, name);
    writeFileSync(path, outcome.text);
    progress(`bill ${name}: ${rows.length} rows, ${(outcome.text.length / 1e6).toFixed(2)} M characters, ${(outcome.bytes / 1e6).toFixed(2)} MB gzip`);
    return path;
  };
  let cleanPath: string;
  let plantedPath: string;
  try {
    cleanPath = await fetchBill([...mine, ...others], 'bill-clean.txt');
    plantedPath = await fetchBill(plantedBill, 'bill-planted.txt');
  } finally {
    await client.close();
    await sim.close();
  }

  const clean = await runChild(cleanPath, yearPath, date);
  const describe = (r: ChildResult): string =>
    `parse ${r.parseMs.toFixed(0)} ms + reconcile ${r.reconcileMs.toFixed(0)} ms (Journal.open ${r.openMs.toFixed(0)} ms), ` +
    `VmHWM ${(r.hwmKb / 1024).toFixed(1)} MB (RSS at start ${(r.rssAtStartKb / 1024).toFixed(1)}, at end ${(r.rssKb / 1024).toFixed(1)}), ` +
    `${r.rows} rows: ${r.mine} of the box, ${r.others} of others; matched ${r.matched}, discrepancies ${r.discrepancies.length}`;
  progress(`reconcile, clean bill: ${describe(clean)}`);
  const mb = (k: number): string => (k / 1024).toFixed(1);
  progress(
    `  memory by step (RSS = anon + file, V8 heap used, MB): ` +
      Object.entries(clean.steps).map(([name, m]) => `${name} ${mb(m.rss)} = ${mb(m.anon)} + ${mb(m.file)}, heap ${mb(m.heap)}`).join('; '),
  );
  const planted = await runChild(plantedPath, yearPath, date);
  progress(`reconcile, planted bill: ${describe(planted)}`);

  const problems: string[] = [];
  if (clean.rows !== mine.length + others.length) problems.push(`clean bill: ${clean.rows} rows parsed, ${mine.length + others.length} planted`);
  if (clean.discrepancies.length !== 0) problems.push(`clean bill: ${clean.discrepancies.length} discrepancies: ${JSON.stringify(clean.discrepancies.slice(0, 3))}`);
  if (clean.matched !== mine.length || clean.mine !== mine.length || clean.others !== others.length) {
    problems.push(`clean bill: matched ${clean.matched}, mine ${clean.mine}, others ${clean.others}; expected ${mine.length}, ${mine.length}, ${others.length}`);
  }
  const key = (d: { kind: string; out_trade_no: string }): string => `${d.kind} ${d.out_trade_no}`;
  const found = planted.discrepancies.map(key).sort();
  const wanted = expected.map(key).sort();
  if (JSON.stringify(found) !== JSON.stringify(wanted)) problems.push(`planted bill: found [${found.join(', ')}], planted [${wanted.join(', ')}]`);
  // Every row of the box but the three changed ones (the dropped one is not in the bill) still matches.
  if (planted.matched !== mine.length - 3) problems.push(`planted bill: matched ${planted.matched}, expected ${mine.length - 3}`);
  for (const p of problems) progress(`reconcile check FAILED: ${p}`);

  // The slower and the larger of the two runs (they differ by a few rows).
  const slow = clean.parseMs + clean.reconcileMs >= planted.parseMs + planted.reconcileMs ? clean : planted;
  const large = clean.hwmKb >= planted.hwmKb ? clean : planted;
  const worstMs = slow.parseMs + slow.reconcileMs;
  const worstHwm = large.hwmKb / 1024;
  const size = `${(mine.length + others.length).toLocaleString('en-US')} rows (${mine.length.toLocaleString('en-US')} this box's)`;
  const byStep = Object.entries(large.steps)
    .map(([name, m]) => `${name} ${mb(m.rss)}`)
    .join(', ');
  return [
    {
      metric: `reconcile: bill of ${size} vs a year's journal: parseBill + reconcile(), slower of 2 runs (Journal.open apart: ${slow.openMs.toFixed(0)} ms)`,
      value: `${(slow.parseMs / 1000).toFixed(2)} + ${(slow.reconcileMs / 1000).toFixed(2)} s`,
      target: '<= 5 s',
      ok: worstMs <= 5000,
    },
    {
      metric: 'reconcile: peak RSS of that process (VmHWM at its end, Node included), larger of 2 runs',
      value: `${worstHwm.toFixed(1)} MB`,
      target: '<= 100 MB',
      ok: worstHwm <= 100,
    },
    {
      metric: `reconcile: its RSS after each step, MB: ${byStep}`,
      value: `parseBill +${mb((large.steps['parsed']?.rss ?? NaN) - (large.steps['text read']?.rss ?? NaN))} MB`,
      target: '-',
      ok: null,
    },
    {
      metric: `reconcile: discrepancies, clean bill / bill with ${expected.length} planted (each kind checked)`,
      value: `${clean.discrepancies.length} / ${planted.discrepancies.length}`,
      target: `0 / exactly the ${expected.length}`,
      ok: problems.length === 0,
    },
  ];
}
