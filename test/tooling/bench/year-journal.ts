import Database from 'better-sqlite3';
import { systemClock } from '../../../src/clock.js';
import { Journal } from '../../../src/journal/journal.js';
import { formatYuan } from '../../../src/money.js';

/** A day of the year that holds more sales than the others: [startMs, endMs) and how many of the sales. */
export interface BusyDay {
  startMs: number;
  endMs: number;
  sales: number;
}

/**
 * A journal as a busy box leaves it after a year: `sales` settled sales (92 % paid, 5 % declined, 3 %
 * reversed after a password wait) spread over the last 365 days, each with the events the engine writes for
 * it; with `busy`, that many of them fall inside that day (a day whose bill the bench reconciles) and the
 * others are spread over the rest of the year. A paid sale's `paid_at`, WeChat Pay's time of payment as the
 * engine records it from time_end (whole seconds), is 380 ms after it was created, rounded down to the second.
 * The schema and the tag come from Journal.open itself (the real migrations); the rows go in with
 * better-sqlite3 directly in one transaction, which takes seconds instead of the hours 200,000 synced
 * commits would.
 */
export function makeYearJournal(path: string, deviceId: string, sales: number, busy?: BusyDay): { bytes: number; ms: number; tag: string } {
  const started = performance.now();
  const journal = Journal.open(path, { deviceId, clock: systemClock });
  const tag = journal.tag;
  journal.close();

  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const insertSale = db.prepare(
    `INSERT INTO sales (id, ref, amount_fen, out_trade_no, state, code_masked, transaction_id, final_code, final_text,
       reverse_reason, reverse_attempts, next_reverse_at, submitted_at, paid_at, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)`,
  );
  const insertEvent = db.prepare('INSERT INTO events (sale_id, at, kind, detail) VALUES (?, ?, ?, ?)');
  const now = Date.now();
  const yearMs = 365 * 24 * 3600 * 1000;
  let seed = 12345;
  const random = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const digits = (n: number): string => {
    let out = '';
    while (out.length < n) out += String(Math.floor(random() * 1e9)).padStart(9, '0');
    return out.slice(0, n);
  };

  // Creation times, oldest first: the busy day's sales inside it (ending 2 s before its end, so that their
  // payment times stay in it), the others over the rest of the year.
  const from = now - yearMs;
  const busyCount = busy ? Math.max(0, Math.min(busy.sales, sales)) : 0;
  const busyLength = busy ? busy.endMs - busy.startMs : 0;
  if (busy && (busy.startMs < from || busy.endMs > now || busyLength <= 2000)) throw new RangeError('the busy day must lie within the last 365 days');
  const normal = sales - busyCount;
  const normalAt = (k: number): number => {
    const t = from + ((k + 1) / normal) * (yearMs - busyLength);
    return busy && t >= busy.startMs ? t + busyLength : t;
  };
  const busyAt = (j: number): number => busy!.startMs + ((j + 0.5) / busyCount) * (busyLength - 2000);
  let nextNormal = 0;
  let nextBusy = 0;
  const nextCreated = (): number => {
    const takeBusy = nextBusy < busyCount && (nextNormal >= normal || busyAt(nextBusy) <= normalAt(nextNormal));
    return Math.floor(takeBusy ? busyAt(nextBusy++) : normalAt(nextNormal++));
  };

  db.transaction(() => {
    for (let id = 1; id <= sales; id++) {
      const created = nextCreated();
      const ref = `R${String(id).padStart(7, '0')}`;
      const amount = 100 + Math.floor(random() * 20000);
      const outTradeNo = `${deviceId}${tag}${String(id).padStart(8, '0')}`;
      const code = `13**********${digits(4)}`;
      const roll = random();
      const state = roll < 0.92 ? 'paid' : roll < 0.97 ? 'failed' : 'reversed';
      const transactionId = state === 'paid' ? `4200${digits(24)}` : null;
      const finalCode = state === 'failed' ? 'NOTENOUGH' : state === 'reversed' ? 'TIMEOUT_REVERSED' : null;
      const finalText =
        state === 'failed'
          ? 'Insufficient balance: ask the customer to pay with another card'
          : state === 'reversed'
            ? 'Password not entered in time: order reversed, nothing charged'
            : null;
      const updated = created + (state === 'reversed' ? 15_500 : 400);
      const paidAt = state === 'paid' ? Math.floor((created + 380) / 1000) * 1000 : null;
      insertSale.run(id, ref, amount, outTradeNo, state, code, transactionId, finalCode, finalText,
        state === 'reversed' ? 'TIMEOUT_REVERSED' : null, state === 'reversed' ? 1 : 0, created + 5, paidAt, created, updated);
      insertEvent.run(id, created, 'created', `ref=${ref} amount=${formatYuan(amount)} out_trade_no=${outTradeNo}`);
      insertEvent.run(id, created + 5, 'micropay_sent', JSON.stringify({ code }));
      if (state === 'paid') {
        insertEvent.run(id, created + 400, 'micropay_answer', JSON.stringify({
          call: 'micropay', result: 'success', ms: 380, origin: 'https://api.mch.weixin.qq.com',
          transaction_id: transactionId, total_fee: String(amount), time_end: '20250101120000',
        }));
      } else if (state === 'failed') {
        insertEvent.run(id, created + 300, 'micropay_answer', JSON.stringify({
          call: 'micropay', result: 'business', ms: 290, origin: 'https://api.mch.weixin.qq.com',
          err_code: 'NOTENOUGH', err_code_des: '余额不足',
        }));
      } else {
        insertEvent.run(id, created + 300, 'micropay_answer', JSON.stringify({
          call: 'micropay', result: 'business', ms: 290, origin: 'https://api.mch.weixin.qq.com', err_code: 'USERPAYING',
        }));
        for (let q = 1; q <= 6; q++) {
          insertEvent.run(id, created + q * 5000, 'orderquery_answer', JSON.stringify({
            call: 'orderquery', result: 'success', ms: 120, origin: 'https://api.mch.weixin.qq.com', trade_state: 'USERPAYING',
          }));
        }
        insertEvent.run(id, created + 30_100, 'reverse_started', JSON.stringify({ reason: 'TIMEOUT_REVERSED', why: 'password not entered in time' }));
        insertEvent.run(id, created + 30_500, 'reverse_answer', JSON.stringify({
          call: 'reverse', result: 'success', ms: 200, origin: 'https://api.mch.weixin.qq.com', recall: 'N',
        }));
      }
    }
    db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'sales'").run(sales);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const bytes = (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
  db.close();
  return { bytes, ms: performance.now() - started, tag };
}
