import { clockPlausible, type Clock } from './clock.js';
import { businessDay, dayBounds } from './business-day.js';
import { cashierText, refundText, type BoxCode, type RefundCode } from './codes.js';
import type { CustomerDisplay } from './devices/display/display.js';
import type { Indicator } from './devices/indicator.js';
import type { LinePort } from './devices/line-port.js';
import { silentVoice, type Voice } from './devices/voice/announcer.js';
import { saleAnnouncement } from './devices/voice/phrases.js';
import { MAX_LINE_BYTES, parseRegisterLine, withChecksum, type RegisterCommand } from './devices/register-protocol.js';
import { classifyCode, describeForeign } from './devices/scanner.js';
import { statusLine, type Health } from './health.js';
import { JournalError, type Journal, type Sale, type SaleOrigin } from './journal/journal.js';
import type { Refund } from './journal/refunds.js';
import type { Logger } from './log.js';
import { messageOf } from './errors.js';
import { formatYuan } from './money.js';
import { verdictOf, type PaymentEngine, type Verdict } from './payment/engine.js';
import { Reachability } from './payment/reachability.js';
import { refundLine, type RefundEngine } from './payment/refund.js';
import { refundAccepted } from './journal/states.js';
import { dayTotals } from './books/totals.js';
import type { ApiOutcome } from './wechatpay/client.js';

/**
 * The counter: the only place that knows both the devices (register line, scanner, light) and the payment
 * engine. One open sale at a time. The register hears about a sale only from its journal row, after the
 * row is committed.
 */

export interface BoxOptions {
  engine: PaymentEngine;
  journal: Journal;
  /** The register line; null when the amounts come from the customer-display line. */
  register: LinePort | null;
  /**
   * The customer-display line as the box reads it (contract §10): a scan after a total is armed is a sale for
   * that total, under the box's own REF (`D` + business day + `-` + sequence). The register is told nothing.
   */
  display?: CustomerDisplay | null;

  scanner: LinePort;
  indicator: Indicator;
  clock: Clock;
  log: Logger;
  maxAmountFen: number;
  scanTimeoutMs: number;
  /**
   * Whether WeChat Pay can be reached, told about every answer by the engine (built before recovery, so
   * recovery's answers count) and by the probe here. Without it the box keeps its own, fed by the probe.
   */
  reachability?: Reachability;
  /** Asks WeChat Pay something harmless to learn whether it can be reached (an orderquery of no order). */
  probe?: () => Promise<ApiOutcome>;
  /** Wait between reachability probes while the gateway looks unreachable. */
  probeIntervalMs?: number;
  /** A Pi has no real-time clock: until the time is plausible no WeChat Pay call is made. */
  clockSane?: () => boolean;
  /** How long SIGTERM waits for a sale that is talking to WeChat Pay before leaving it to recovery. */
  stopGraceMs?: number;
  /** Event details of settled sales older than this are pruned while idle. */
  retentionMs?: number;
  /** The refund cycle; without it the register's REFUND is answered REFUNDS_OFF. */
  refunds?: RefundEngine;
  /** SCANBOX_REFUNDS, SCANBOX_REFUND_DAY_MAX, SCANBOX_TIMEZONE. Default: refunds off, Asia/Shanghai. */
  refundPolicy?: { register: boolean; dayMaxFen: number; timeZone: string };
  /** How long the register waits for a refund's answer before it hears REFUND_PENDING (contract §3: about 10 s). */
  refundAnswerMs?: number;
  /**
   * The speaker (contract §9): told what to say after the register line that says the same, never before it and
   * never holding it up. Without it the box is silent.
   */
  voice?: Voice;
  /** Told every finished sale, after the register has its answer (WeChat Pay's trade report). */
  onSaleFinished?: (sale: Sale) => void;
}

interface OpenRefund {
  rid: string;
  ref: string;
  amountFen: number;
  done: Promise<void>;
}

interface OpenSale {
  sale: Sale;
  /** The PAY carried a checksum, so every line about this sale carries one. */
  checksum: boolean;
  phase: 'scan' | 'paying';
  cancel: AbortController;
  scanWait: AbortController;
  done: Promise<void> | null;
}

/** The register line that says how a sale ended (or that it goes on), from its journal row only. */
export function finalLine(verdict: Verdict): string {
  if (verdict.kind === 'paid') return `PAID ${verdict.ref} ${verdict.outTradeNo} ${verdict.transactionId}`;
  if (verdict.kind === 'failed') return `FAILED ${verdict.ref} ${verdict.code} ${verdict.text}`;
  return `PENDING ${verdict.ref}`;
}

/** The answer to a line the port dropped (too long, or bytes that are not printable ASCII). */
function rejectedReply(reason: string): string {
  return reason === 'too_long'
    ? `ERR LINE_TOO_LONG line longer than ${MAX_LINE_BYTES} bytes dropped`
    : 'ERR BAD_LINE line with bytes that are not printable ASCII dropped';
}

/** Sends one line to the register, with a checksum when the line it answers had one. */
type Reply = (text: string, checksum: boolean) => Promise<void>;

/**
 * The register side both boxes share: a line that does not parse is answered `ERR <code>`, a line the port
 * dropped is answered too, and `onCommand` gets the good ones. Returns the box's way of replying.
 */
function listenToRegister(
  register: LinePort,
  log: Logger,
  maxAmountFen: number,
  onCommand: (command: RegisterCommand, checksum: boolean) => void,
): Reply {
  const reply: Reply = async (text, checksum) => {
    const line = withChecksum(text, checksum);
    const sent = await register.write(line);
    log.debug('to register', { line, sent });
  };
  register.on('line', (line: string) => {
    const parsed = parseRegisterLine(line, maxAmountFen);
    if (!parsed.ok) {
      log.info('register sent a bad line', { error: parsed.code });
      void reply(`ERR ${parsed.code} ${parsed.text}`, parsed.checksum);
      return;
    }
    onCommand(parsed.command, parsed.checksum);
  });
  register.on('rejected', (reason: string) => {
    log.warning('register line rejected', { reason });
    void reply(rejectedReply(reason), false);
  });
  return reply;
}

/** How long the paid and failed patterns play (contract §5: 3 s), and a little more. */
const FAILED_PATTERN_MS = 3100;

/** Before start(): nothing can be heard, so nothing is answered. */
const notListening: Reply = async () => undefined;

export class Box {
  private readonly o: BoxOptions;
  private open: OpenSale | null = null;
  /** A register refund waiting for WeChat Pay's answer: one thing at a time, as for sales. */
  private openRefund: OpenRefund | null = null;
  private fault: string | null = null;
  private readonly reachability: Reachability;
  private stopping = false;
  private reply: Reply = notListening;
  /** The open sale's id when its amount came from the display line. */
  private displaySaleId: number | null = null;
  /**
   * Until when a display sale's paid or failed pattern plays: "waiting for scan" must not cut it short (the
   * watch loop, a new total), so the light is refreshed once it has played.
   */
  private resultPlaysUntil = 0;
  private readonly background = new AbortController();
  private readonly tasks: Promise<void>[] = [];
  /**
   * Sales this box opened and has not finished yet: only these are announced when they end, once. A sale
   * finished by recovery at a restart, or a PAID line given again for a repeated PAY, is never announced.
   */
  private readonly toAnnounce = new Set<number>();
  readonly voice: Voice;

  constructor(options: BoxOptions) {
    this.o = options;
    this.reachability = options.reachability ?? new Reachability(options.log);
    this.voice = options.voice ?? silentVoice;
  }

  start(): void {
    this.reachability.onChange(() => this.refreshLight());
    if (this.o.register) {
      this.reply = listenToRegister(this.o.register, this.o.log, this.o.maxAmountFen, (command, checksum) => this.onRegisterCommand(command, checksum));
    }
    if (this.o.display) this.listenToDisplay(this.o.display);
    this.o.scanner.on('line', (line: string) => this.onScan(line));
    this.o.scanner.on('rejected', (reason: string) => {
      this.o.log.warning('scanner line rejected', { reason });
      if (this.open?.phase !== 'scan') this.o.indicator.flash();
    });
    this.refreshLight();
    this.tasks.push(this.watchLoop());
    if (this.o.probe) this.tasks.push(this.probeLoop());
    if (this.o.retentionMs) this.tasks.push(this.pruneLoop(this.o.retentionMs));
  }

  health(): Health {
    if (this.fault) return { kind: 'FAULT', text: this.fault };
    if (this.open) return { kind: 'BUSY', ref: this.open.sale.ref };
    if (this.openRefund) return { kind: 'BUSY', ref: this.openRefund.rid };
    const offline = this.offlineReason();
    if (offline) return { kind: 'OFFLINE', text: offline };
    return { kind: 'READY' };
  }

  /** The journal cannot be trusted or written: refuse sales and say why. */
  setFault(text: string): void {
    if (this.fault === text) return;
    this.fault = text;
    this.o.log.error('box fault: sales refused', { reason: text });
    this.refreshLight();
  }

  private clockSane(): boolean {
    return this.o.clockSane ? this.o.clockSane() : clockPlausible(this.o.clock.now());
  }

  private offlineReason(): string | null {
    if (!this.clockSane()) return 'clock not synchronised';
    return this.reachability.offlineText;
  }

  private refreshLight(): void {
    if (this.open || this.openRefund) return;
    if (this.fault || this.offlineReason()) return this.o.indicator.show('offline');
    const display = this.o.display;
    // A total armed from the display line: the customer light says a scan is awaited (contract §10).
    if (display && display.mode === 'charge' && display.armedFen !== null) {
      if (this.o.clock.now() < this.resultPlaysUntil) return;
      return this.o.indicator.show('waiting_scan');
    }
    this.o.indicator.show('ready');
  }

  private listenToDisplay(display: CustomerDisplay): void {
    display.on('armed', (amountFen, again) => {
      if (display.mode !== 'charge') return;
      if (!again) this.o.log.info('display total armed: waiting for the payment code', { amount: formatYuan(amountFen) });
      if (this.open || this.openRefund || this.settlingDisplay) return;
      this.refreshLight();
      // The amount to pay, said once per new total (contract §10): 请付款 + the amount.
      if (!again && !this.fault && !this.offlineReason()) this.voice.announce({ kind: 'due', fen: amountFen }, { event: `display:${display.family}:due:${amountFen}:${this.o.clock.now()}` });
    });
    display.on('disarmed', () => this.refreshLight());
    display.on('changedWhilePaying', () => {
      const open = this.open;
      if (!open || this.displaySaleId !== open.sale.id) return;
      // The payment goes on (a clear never touches a payment already sent); the cashier must look at it.
      this.o.log.warning('the register changed the display while this payment is in flight: it goes on for the amount taken', {
        ref: open.sale.ref,
        amount: formatYuan(open.sale.amountFen),
      });
      this.o.indicator.flash();
    });
  }

  private settlingDisplay = false;

  /**
   * A scan with no sale open, on a box that takes its amounts from the display line: the armed total, if any,
   * becomes a sale through the same engine and journal as a register's PAY; the scan is its payment code.
   */
  private scanForDisplay(display: CustomerDisplay, line: string): void {
    const scanned = classifyCode(line);
    const ignore = (why: string, fields: Record<string, string | number> = {}): void => {
      this.o.log.info(`scan ignored: ${why}`, { kind: scanned.kind, ...fields });
      this.o.indicator.flash();
    };
    if (scanned.kind !== 'wechat') return ignore(describeForeign(scanned.kind));
    if (this.fault) return ignore(`the box is in FAULT: ${this.fault}`);
    if (this.stopping) return ignore('the box is restarting');
    if (this.openRefund) return ignore('a refund is being answered');
    const offline = this.offlineReason();
    if (offline) return ignore(`${cashierText('OFFLINE')} (${offline})`);
    // Taken in the same turn of the event loop that commits the sale and hands micropay its request: no display
    // byte can be read in between, so this is the re-check "just before the micropay" (display.md rule 2).
    const taken = display.take();
    if (!taken.ok) {
      if (taken.why === 'learn') return ignore(taken.text, { amount: formatYuan(taken.amountFen) });
      return ignore(taken.text);
    }
    const origin: SaleOrigin = { family: display.family, bytes: taken.burst.bytes, meaning: taken.reading.meaning, armedAt: taken.burst.endedAt };
    let started;
    try {
      let ref = this.nextDisplayRef();
      started = this.o.engine.startSale(ref, taken.amountFen, origin);
      // A REF of the day already used otherwise (a register's own `D...` REF before the box was switched to the
      // display line): the next number, never that sale again.
      for (let tries = 0; tries < 5 && (started.kind === 'paid' || started.kind === 'held'); tries++) {
        ref = this.nextDisplayRef(ref);
        started = this.o.engine.startSale(ref, taken.amountFen, origin);
      }
    } catch (error) {
      display.settled(true, 'not started');
      if (!this.journalFailed(error, false)) this.internalError(error, 'opening a display sale');
      this.o.indicator.flash();
      return;
    }
    if (started.kind !== 'open') {
      display.settled(true, `not started: ${started.kind} ${started.sale.ref}`);
      return ignore(`an unfinished sale ${started.sale.ref} is still being worked on`);
    }
    const open: OpenSale = {
      sale: started.sale,
      checksum: false,
      phase: 'paying',
      cancel: new AbortController(),
      scanWait: new AbortController(),
      done: null,
    };
    this.open = open;
    this.displaySaleId = open.sale.id;
    this.toAnnounce.add(open.sale.id);
    this.o.log.info('display sale: the armed total is charged', {
      ref: open.sale.ref,
      out_trade_no: open.sale.outTradeNo,
      amount: formatYuan(open.sale.amountFen),
      burst_bytes: taken.burst.length,
    });
    this.o.indicator.show('paying');
    open.done = this.runPayment(open, scanned.code);
  }

  /** The box's own REF for a display sale: D + the business day + '-' + a sequence of that day. */
  private nextDisplayRef(after?: string): string {
    const day = businessDay(this.o.clock.now(), this.o.refundPolicy?.timeZone ?? 'Asia/Shanghai');
    const prefix = `D${day}-`;
    const last = after ?? this.o.journal.lastRefWithPrefix(prefix);
    const previous = last === null ? 0 : Number(last.slice(prefix.length));
    // A REF of that day that is not ours (no number after the prefix) starts the count at the id of the newest sale.
    const seq = Number.isSafeInteger(previous) && previous >= 0 ? previous + 1 : (this.o.journal.recent(1)[0]?.id ?? 0) + 1;
    return `${prefix}${String(seq).padStart(4, '0')}`;
  }

  private onRegisterCommand(command: RegisterCommand, checksum: boolean): void {
    try {
      switch (command.kind) {
        case 'STATUS':
          void this.reply(statusLine(this.health()), checksum);
          return;
        case 'QUERY': {
          const sale = this.o.journal.latestByRef(command.ref);
          if (!sale) void this.reply(`ERR UNKNOWN_REF ${command.ref}`, checksum);
          else void this.reply(finalLine(verdictOf(sale)), checksum);
          return;
        }
        case 'CANCEL':
          this.cancel(command.ref, checksum);
          return;
        case 'PAY':
          this.pay(command.ref, command.amountFen, checksum);
          return;
        case 'REFUND':
          this.refund(command.ref, command.amountFen, command.rid, checksum);
          return;
        case 'QUERY_REFUND': {
          const refund = this.o.journal.refunds.byRid(command.rid);
          void this.reply(refund ? refundLine(refund) : `ERR UNKNOWN_REF ${command.rid}`, checksum);
          return;
        }
        case 'TOTALS':
          void this.reply(this.totals(command.date), checksum);
          return;
      }
    } catch (error) {
      if (this.journalFailed(error, checksum)) return;
      this.internalError(error, `register command ${command.kind}`);
      void this.reply('ERR INTERNAL the box hit an internal error: try again, call the technician if it repeats', checksum);
      void this.settleStrays(checksum);
    }
  }

  /**
   * A journal error means the journal cannot be trusted or written: FAULT mode, no sale until a technician
   * has looked (returns true). Anything else is not the journal's fault (returns false).
   */
  private journalFailed(error: unknown, checksum: boolean): boolean {
    if (!(error instanceof JournalError)) return false;
    this.o.engine.coolDown();
    this.setFault(`journal: ${error.message}`);
    void this.reply(`ERR FAULT journal cannot be written, call the technician`, checksum);
    return true;
  }

  /** A bug of the box: said at error level with what it was doing; the box keeps serving. */
  private internalError(error: unknown, doing: string): void {
    this.o.log.error('internal error: the box keeps serving; send this log to the developers', {
      doing,
      error: messageOf(error),
      stack: error instanceof Error ? (error.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' | ') : '',
    });
  }

  /**
   * Finishes, by the money rules, a sale a bug left unfinished (as recovery would at a restart: what reached
   * WeChat Pay is queried and reversed unless closed) and tells the register how it ended.
   */
  private async settle(saleId: number, checksum: boolean): Promise<void> {
    try {
      const sale = await this.o.engine.finishUnfinished(saleId);
      if (sale.state !== 'reversing' || sale.finalCode !== null) this.finish(sale, checksum);
    } catch (error) {
      if (this.journalFailed(error, checksum)) return;
      // Twice in a row: the sale stays as the journal has it, and recovery finishes it at the next start.
      this.internalError(error, 'finishing a sale after an internal error');
    }
  }

  /** After a bug outside a running payment: any sale it left open or in flight (not the one still running) is settled. */
  private async settleStrays(checksum: boolean): Promise<void> {
    let strays: Sale[];
    try {
      strays = this.o.journal.unfinished().filter((sale) => sale.id !== this.open?.sale.id && sale.state !== 'reversing');
    } catch (error) {
      if (!this.journalFailed(error, checksum)) this.internalError(error, 'looking for unfinished sales');
      return;
    }
    for (const stray of strays) await this.settle(stray.id, checksum);
  }

  private pay(ref: string, amountFen: number, checksum: boolean): void {
    if (this.fault) return void this.reply(`ERR FAULT ${this.fault}`, checksum);
    if (this.stopping) return void this.reply('ERR SHUTTING_DOWN the box is restarting, try again shortly', checksum);
    if (this.openRefund) return void this.reply(`ERR BUSY ${this.openRefund.rid}`, checksum);
    if (this.open) {
      // The register repeating the PAY it is waiting on (a lost ACK) is answered, not refused.
      if (this.open.sale.ref === ref && this.open.sale.amountFen === amountFen) return void this.reply(`ACK ${ref}`, checksum);
      return void this.reply(`ERR BUSY ${this.open.sale.ref}`, checksum);
    }
    const started = this.o.engine.startSale(ref, amountFen);
    if (started.kind === 'paid') {
      this.o.log.info('PAY repeated for a paid sale: answered again, nothing charged', { ref, out_trade_no: started.sale.outTradeNo });
      return void this.reply(finalLine(verdictOf(started.sale)), checksum);
    }
    if (started.kind === 'busy') return void this.reply(`ERR BUSY ${started.sale.ref}`, checksum);
    if (started.kind === 'held') return void this.reply(finalLine(started.verdict), checksum);

    void this.reply(`ACK ${ref}`, checksum);
    this.toAnnounce.add(started.sale.id);
    const offline = this.offlineReason();
    if (offline) {
      const sale = this.o.engine.failOpen(started.sale.id, 'OFFLINE', `${cashierText('OFFLINE')} (${offline})`);
      this.finish(sale, checksum, false);
      return;
    }
    const open: OpenSale = {
      sale: started.sale,
      checksum,
      phase: 'scan',
      cancel: new AbortController(),
      scanWait: new AbortController(),
      done: null,
    };
    this.open = open;
    // While the customer opens the payment code: a live connection to WeChat Pay, for the scan to use.
    this.o.engine.warmUp();
    this.o.indicator.show('waiting_scan');
    this.o.log.info('waiting for the payment code', { ref, out_trade_no: open.sale.outTradeNo, amount: formatYuan(amountFen) });
    void this.o.clock.sleep(this.o.scanTimeoutMs, open.scanWait.signal).then(
      () => {
        if (this.open === open && open.phase === 'scan') {
          this.endUnscanned(open, 'NO_SCAN', cashierText('NO_SCAN'));
        }
      },
      () => undefined,
    );
  }

  private endUnscanned(open: OpenSale, code: BoxCode, text: string): void {
    open.scanWait.abort();
    try {
      const sale = this.o.engine.failOpen(open.sale.id, code, text);
      this.open = null;
      this.finish(sale, open.checksum, false);
    } catch (error) {
      this.open = null;
      if (this.journalFailed(error, open.checksum)) return;
      this.internalError(error, 'ending a sale before any request');
      void this.settle(open.sale.id, open.checksum);
    }
  }

  private cancel(ref: string, checksum: boolean): void {
    const open = this.open;
    if (!open || open.sale.ref !== ref) {
      const sale = this.o.journal.latestByRef(ref);
      if (!sale) return void this.reply(`ERR UNKNOWN_REF ${ref}`, checksum);
      // Already over: say how it ended, so a register that missed the final line learns it.
      return void this.reply(finalLine(verdictOf(sale)), checksum);
    }
    this.o.log.info('cashier cancelled the sale', { ref, phase: open.phase });
    if (open.phase === 'scan') return this.endUnscanned(open, 'CANCELLED', cashierText('CANCELLED'));
    open.cancel.abort();
  }

  private onScan(line: string): void {
    const open = this.open;
    if (!open && this.o.display) return this.scanForDisplay(this.o.display, line);
    const scanned = classifyCode(line);
    if (!open || open.phase !== 'scan') {
      this.o.log.info('scan ignored: no sale is waiting for a code', { kind: scanned.kind });
      this.o.indicator.flash();
      return;
    }
    if (scanned.kind !== 'wechat') {
      this.o.log.info('not a WeChat payment code: sale ended without any request', { ref: open.sale.ref, kind: scanned.kind });
      return this.endUnscanned(open, 'NOT_WECHAT_CODE', describeForeign(scanned.kind));
    }
    open.phase = 'paying';
    open.scanWait.abort();
    open.done = this.runPayment(open, scanned.code);
  }

  private async runPayment(open: OpenSale, code: string): Promise<void> {
    try {
      const sale = await this.o.engine.pay(open.sale.id, code, {
        signal: open.cancel.signal,
        onProgress: (progress) => {
          if (progress === 'scanned') {
            this.o.indicator.show('paying');
            void this.reply(`WAIT ${open.sale.ref} SCANNED`, open.checksum);
          } else {
            const sent = this.reply(`WAIT ${open.sale.ref} PASSWORD`, open.checksum);
            this.voice.announce({ kind: 'password' }, { after: sent, event: `sale:${open.sale.id}:password` });
          }
        },
      });
      this.open = null;
      this.finish(sale, open.checksum);
    } catch (error) {
      this.open = null;
      if (error instanceof JournalError) {
        // The journal refused a write mid-sale: the sale stays unfinished in the journal and recovery
        // finishes it at the next start. The register is not told anything that is not committed.
        this.o.log.error('sale stopped by a journal error; recovery will finish it', { ref: open.sale.ref, error: error.message });
        this.journalFailed(error, open.checksum);
        return;
      }
      this.internalError(error, `payment of ${open.sale.outTradeNo}`);
      await this.settle(open.sale.id, open.checksum);
    }
  }

  /**
   * The register's REFUND (contract §3): the RID is the idempotency key; one thing at a time; refunds only
   * with SCANBOX_REFUNDS=register; NOT_PAID, OVER_AMOUNT and REFUND_LIMIT decided here without a request.
   * The final line comes within `refundAnswerMs`: REFUND_PENDING when WeChat Pay's answer is not confirmed
   * by then (the refund engine goes on with the same refund number).
   */
  private refund(ref: string, amountFen: number, rid: string, checksum: boolean): void {
    if (this.fault) return void this.reply(`ERR FAULT ${this.fault}`, checksum);
    if (this.stopping) return void this.reply('ERR SHUTTING_DOWN the box is restarting, try again shortly', checksum);
    if (this.open) return void this.reply(`ERR BUSY ${this.open.sale.ref}`, checksum);
    if (this.openRefund) {
      const same = this.openRefund.rid === rid && this.openRefund.ref === ref && this.openRefund.amountFen === amountFen;
      return void this.reply(same ? `ACK ${rid}` : `ERR BUSY ${this.openRefund.rid}`, checksum);
    }
    const used = this.o.journal.refunds.byRid(rid);
    if (used) {
      if (used.ref !== ref || used.amountFen !== amountFen) return void this.reply(`ERR RID_REUSED ${rid}`, checksum);
      this.o.log.info('REFUND repeated: answered again, nothing refunded again', { rid, out_refund_no: used.outRefundNo });
      return void this.reply(refundLine(used), checksum);
    }
    const refuse = (code: RefundCode, text: string = refundText(code)): void => {
      this.o.log.info('refund refused by the box; nothing sent', { rid, ref, amount: formatYuan(amountFen), result: code });
      void this.reply(`ACK ${rid}`, checksum);
      void this.reply(`FAILED ${rid} ${code} ${text}`, checksum);
      this.o.indicator.show('failed');
    };
    const policy = this.o.refundPolicy;
    if (!this.o.refunds || !policy?.register) return refuse('REFUNDS_OFF');
    const offline = this.offlineReason();
    if (offline) return refuse('OFFLINE', `${refundText('OFFLINE')} (${offline})`);
    const now = this.o.clock.now();
    const result = this.o.refunds.request({
      rid,
      ref,
      amountFen,
      source: 'register',
      dayCap: { maxFen: policy.dayMaxFen, ...dayBounds(businessDay(now, policy.timeZone), policy.timeZone) },
    });
    switch (result.kind) {
      case 'existing':
        return void this.reply(refundLine(result.refund), checksum);
      case 'rid_reused':
        return void this.reply(`ERR RID_REUSED ${rid}`, checksum);
      case 'not_paid':
        return refuse('NOT_PAID');
      case 'over_amount':
        return refuse('OVER_AMOUNT', `${refundText('OVER_AMOUNT')} (${formatYuan(result.leftFen)} yuan left)`);
      case 'limit':
        return refuse('REFUND_LIMIT', `${refundText('REFUND_LIMIT')} (${formatYuan(result.usedFen)} of ${formatYuan(result.maxFen)} yuan used)`);
      case 'created':
        break;
    }
    void this.reply(`ACK ${rid}`, checksum);
    this.o.indicator.show('paying');
    const refunds = this.o.refunds;
    const refundId = result.refund.id;
    const open: OpenRefund = { rid, ref, amountFen, done: Promise.resolve() };
    this.openRefund = open;
    open.done = (async () => {
      try {
        const refund = await refunds.answerWithin(refundId, this.o.refundAnswerMs ?? 10_000);
        // The line comes from the committed row only.
        const sent = this.reply(refundLine(refund), checksum);
        this.announceRefund(refund, sent);
        this.o.indicator.show(refund.state === 'failed' ? 'failed' : 'refunded');
      } catch (error) {
        if (!this.journalFailed(error, checksum)) {
          // Left to the refund queue, which asks WeChat Pay and retries with the same number.
          this.internalError(error, `refund ${rid}`);
          try {
            void this.reply(refundLine(refunds.markPending(refundId)), checksum);
          } catch (again) {
            if (!this.journalFailed(again, checksum)) this.internalError(again, `marking refund ${rid} pending`);
          }
        }
      } finally {
        if (this.openRefund === open) this.openRefund = null;
        this.refreshLight();
      }
    })();
  }

  /**
   * A refund just answered, from the register (after its line, `after`) or from the technician's `scanbox refund`
   * through the control socket: 退款成功 and the amount once WeChat Pay has accepted it (contract §9), once per
   * refund; nothing for one refused, failed or still pending (§9 has no words for those).
   */
  announceRefund(refund: Refund, after?: Promise<unknown>): void {
    if (!refundAccepted(refund.state)) return;
    const event = `refund:${refund.id}`;
    this.voice.announce({ kind: 'refunded', fen: refund.amountFen }, after === undefined ? { event } : { after, event });
  }

  /** `TOTALS [YYYYMMDD]`: the business day's paid sales and refunds (contract §3), from the journal only. */
  private totals(date: string | null): string {
    const timeZone = this.o.refundPolicy?.timeZone ?? 'Asia/Shanghai';
    const day = date ?? businessDay(this.o.clock.now(), timeZone);
    const totals = dayTotals(this.o.journal, day, timeZone);
    return `TOTALS ${day} PAID ${totals.paidCount} ${totals.paidFen} REFUNDED ${totals.refundedCount} ${totals.refundedFen} NET ${totals.netFen}`;
  }

  /** `scanned`: a payment code had been read (a CANCEL before it is the cashier's own act, not announced). */
  private finish(sale: Sale, checksum: boolean, scanned = true): void {
    this.o.engine.coolDown();
    const verdict = verdictOf(sale);
    const sent = this.reply(finalLine(verdict), checksum);
    if (verdict.kind !== 'pending' && this.toAnnounce.delete(sale.id)) {
      const said = saleAnnouncement(verdict.kind === 'paid' ? { kind: 'paid', fen: sale.amountFen } : { kind: 'failed', code: verdict.code, scanned });
      if (said) this.voice.announce(said, { after: sent, event: `sale:${sale.id}:end` });
    }
    if (verdict.kind === 'paid') {
      this.o.log.info('sale paid', { ref: sale.ref, out_trade_no: sale.outTradeNo, amount: formatYuan(sale.amountFen) });
      this.o.indicator.show('paid');
    } else {
      this.o.log.info('sale failed', {
        ref: sale.ref,
        out_trade_no: sale.outTradeNo,
        amount: formatYuan(sale.amountFen),
        result: verdict.kind === 'failed' ? verdict.code : 'PENDING',
      });
      this.o.indicator.show('failed');
    }
    // The paid/failed pattern returns by itself to the last steady one (ready or offline).
    if (this.displaySaleId === sale.id && this.o.display) {
      this.displaySaleId = null;
      // Only a sale that ended with nothing taken (failed, not reversed or pending) may leave its total armed.
      this.settlingDisplay = true;
      try {
        this.o.display.settled(sale.state === 'failed', verdict.kind === 'paid' ? 'PAID' : verdict.kind === 'failed' ? `FAILED ${verdict.code}` : 'PENDING');
      } finally {
        this.settlingDisplay = false;
      }
      // Once the pattern has played the light says what is next: a scan awaited again if a total is armed (still
      // armed after nothing was taken, or a new total shown meanwhile), else ready.
      this.resultPlaysUntil = this.o.clock.now() + FAILED_PATTERN_MS;
      void this.o.clock.sleep(FAILED_PATTERN_MS, this.background.signal).then(() => this.refreshLight(), () => undefined);
    }
    this.o.onSaleFinished?.(sale);
  }

  /** Notices what changes without an event (the clock getting synchronised) and shows it on the light. */
  private async watchLoop(): Promise<void> {
    const signal = this.background.signal;
    let sane = this.clockSane();
    if (!sane) this.o.log.error('clock not synchronised: no WeChat Pay call until it is', { now: new Date(this.o.clock.now()).toISOString() });
    while (!signal.aborted) {
      try {
        await this.o.clock.sleep(5000, signal);
      } catch {
        return;
      }
      const now = this.clockSane();
      if (now !== sane) {
        sane = now;
        if (now) this.o.log.info('clock synchronised: sales resume');
        else this.o.log.error('clock not synchronised: no WeChat Pay call until it is');
      }
      this.refreshLight();
    }
  }

  private async probeLoop(): Promise<void> {
    const interval = this.o.probeIntervalMs ?? 15000;
    const signal = this.background.signal;
    while (!signal.aborted) {
      try {
        await this.o.clock.sleep(interval, signal);
      } catch {
        return;
      }
      if (!this.reachability.doubtful || this.open || !this.clockSane() || !this.o.probe) continue;
      try {
        this.reachability.note(await this.o.probe());
      } catch (error) {
        this.o.log.warning('reachability probe failed', { error: (error as Error).message });
      }
    }
  }

  private async pruneLoop(retentionMs: number): Promise<void> {
    const signal = this.background.signal;
    while (!signal.aborted) {
      try {
        await this.o.clock.sleep(10 * 60 * 1000, signal);
      } catch {
        return;
      }
      // Small batches, only while idle: the SD card sees short writes between sales.
      for (let batch = 0; batch < 10 && !this.open && !signal.aborted; batch++) {
        try {
          const removed = this.o.journal.prune(this.o.clock.now() - retentionMs, 500);
          if (removed > 0) this.o.log.debug('pruned old event details', { events: removed });
          if (removed < 500) break;
        } catch (error) {
          this.o.log.warning('pruning failed', { error: (error as Error).message });
          break;
        }
      }
    }
  }

  /**
   * SIGTERM: take no new sale; a sale still waiting for its code ends now (nothing was sent); a sale
   * talking to WeChat Pay gets `stopGraceMs` to finish. Every state is already journalled, so whatever is
   * still open when the grace runs out is finished by recovery at the next start.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.background.abort();
    const open = this.open;
    if (open?.phase === 'scan') {
      this.endUnscanned(open, 'INTERRUPTED', 'box is restarting; nothing charged, pay again');
    } else if (open?.done) {
      const grace = this.o.stopGraceMs ?? 20000;
      const timeout = new AbortController();
      await Promise.race([open.done, this.o.clock.sleep(grace, timeout.signal).catch(() => undefined)]);
      timeout.abort();
    }
    if (this.openRefund) await this.openRefund.done;
    await Promise.allSettled(this.tasks);
  }
}

export interface FaultBoxOptions {
  register: LinePort | null;
  scanner: LinePort;
  indicator: Indicator;
  log: Logger;
  maxAmountFen: number;
  /** What is wrong, in words for the cashier: the register hears `STATUS FAULT <text>` and `ERR FAULT <text>`. */
  text: string;
}

/**
 * The counter when the journal cannot be used at start (damaged, not writable, unreadable, or too full for
 * recovery to journal its steps): no journal, no engine, no sale. The daemon keeps running so the cashier and the technician learn why, instead of a
 * restart loop: the register is answered (`STATUS FAULT`, and `ERR FAULT` for PAY, QUERY and CANCEL), the
 * light shows the offline/fault pattern, scans are ignored. Nothing is sent to WeChat Pay.
 */
export class FaultBox {
  private readonly o: FaultBoxOptions;
  private reply: Reply = notListening;

  constructor(options: FaultBoxOptions) {
    this.o = options;
  }

  start(): void {
    if (this.o.register) {
      this.reply = listenToRegister(this.o.register, this.o.log, this.o.maxAmountFen, (command, checksum) => this.onRegisterCommand(command, checksum));
    }
    this.o.scanner.on('line', () => this.onScan());
    this.o.scanner.on('rejected', () => this.onScan());
    this.o.indicator.show('offline');
  }

  health(): Health {
    return { kind: 'FAULT', text: this.o.text };
  }

  private onRegisterCommand(command: RegisterCommand, checksum: boolean): void {
    if (command.kind === 'STATUS') {
      void this.reply(statusLine(this.health()), checksum);
      return;
    }
    const ref = 'ref' in command ? command.ref : undefined;
    const rid = 'rid' in command ? command.rid : undefined;
    this.o.log.info('register command refused: the box is in FAULT', { command: command.kind, ref, rid });
    void this.reply(`ERR FAULT ${this.o.text}`, checksum);
  }

  private onScan(): void {
    this.o.log.info('scan ignored: the box is in FAULT and takes no sale');
    this.o.indicator.flash();
  }

  /** Nothing to finish: there is no sale. */
  async stop(): Promise<void> {}
}
