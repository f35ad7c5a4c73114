import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { formatYuan } from '../../money.js';
import type { AdminActionRecord } from '../store.js';
import { barChart } from './charts.js';
import type { BoxPage, BoxView, FleetView, Money, Problem } from './figures.js';
import { problemText, t, type Lang } from './i18n.js';

/**
 * The console's pages, with hono's html template: every interpolated value is escaped (a device id, a health
 * text from a box, an admin name), only our own markup is raw. No script anywhere.
 */

type Out = HtmlEscapedString | Promise<HtmlEscapedString>;

export interface PageContext {
  lang: Lang;
  /** The logged-in admin, or null on the login page. */
  admin: string | null;
  csrf: string | null;
  now: number;
  path: string;
}

const dateTime = (ms: number | null, lang: Lang): string =>
  ms === null
    ? t(lang, 'never')
    : new Intl.DateTimeFormat(lang === 'zh' ? 'zh-CN' : 'en-GB', { timeZone: 'Asia/Shanghai', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false }).format(ms);

const fullDate = (ms: number | null): string => (ms === null ? '-' : new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' }).format(ms));

/** A business day YYYYMMDD as 2026-12-08. */
const day = (d: string): string => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;

const bytes = (n: number | null): string => (n === null ? '-' : n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

const duration = (s: number): string => (s >= 86400 ? `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m`);

export function layout(c: PageContext, title: string, body: Out): Out {
  const other: Lang = c.lang === 'zh' ? 'en' : 'zh';
  return html`<!doctype html>
<html lang="${c.lang === 'zh' ? 'zh-CN' : 'en'}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · ${t(c.lang, 'title')}</title><link rel="stylesheet" href="/static/console.css"></head>
<body>
<header><strong>${t(c.lang, 'title')}</strong>
<nav>${
    c.admin === null
      ? ''
      : html`<a href="/">${t(c.lang, 'fleet')}</a> <a href="/problems">${t(c.lang, 'problems')}</a> <a href="/actions">${t(c.lang, 'actions')}</a>
<form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${c.csrf}"><button type="submit" class="link">${t(c.lang, 'logout')} (${c.admin})</button></form>`
  } <a href="${c.path}?lang=${other}" class="lang">${t(c.lang, 'language')}</a></nav></header>
<main>${body}</main>
</body></html>`;
}

export function loginPage(c: PageContext, problem: string | null, name: string): Out {
  return layout(
    c,
    t(c.lang, 'login'),
    html`<section class="login"><h1>${t(c.lang, 'login')}</h1>${problem ? html`<p class="error" role="alert">${problem}</p>` : ''}
<form method="post" action="/login"><label>${t(c.lang, 'name')}<input name="name" autocomplete="username" required maxlength="32" value="${name}"></label>
<label>${t(c.lang, 'password')}<input name="password" type="password" autocomplete="current-password" required maxlength="200"></label>
<button type="submit">${t(c.lang, 'login')}</button></form></section>`,
  );
}

export function messagePage(c: PageContext, title: string, text: string): Out {
  return layout(c, title, html`<h1>${title}</h1><p>${text}</p><p><a href="/">${t(c.lang, 'fleet')}</a></p>`);
}

const yuan = (fen: number): string => formatYuan(fen);

function moneyCells(m: Money): Out {
  return html`<td class="num">${m.paidCount}</td><td class="num">${yuan(m.paidFen)}</td><td class="num">${yuan(m.refundFen)}</td><td class="num">${yuan(m.netFen)}</td>`;
}

function stateBadge(c: PageContext, state: BoxView['state']): Out {
  return html`<span class="badge ${state}">${t(c.lang, state)}</span>`;
}

function healthCell(v: BoxView): Out {
  const r = v.heartbeat?.report;
  if (r === undefined) return html`-`;
  return html`<span class="health ${r.health.toLowerCase()}">${r.health}</span>${r.healthText ? html` <small>${r.healthText}</small>` : ''}`;
}

function problemList(c: PageContext, problems: Problem[], withBox: boolean): Out {
  if (problems.length === 0) return html`<p class="ok">${t(c.lang, 'noProblems')}</p>`;
  return html`<div class="scroll"><table class="problems"><thead><tr>${withBox ? html`<th>${t(c.lang, 'box')}</th>` : ''}<th>${t(c.lang, 'problem')}</th><th>${t(c.lang, 'detail')}</th><th>${t(c.lang, 'since')}</th></tr></thead><tbody>${problems.map(
    (p) =>
      html`<tr class="problem ${p.kind.toLowerCase()}">${withBox ? html`<td>${p.deviceId === '' ? '—' : html`<a href="/box/${p.deviceId}">${p.deviceId}</a>`}</td>` : ''}<td>${problemText(c.lang, p.kind)}</td><td>${p.subject}</td><td>${p.kind === 'CERT_EXPIRING' ? fullDate(p.at) : dateTime(p.at, c.lang)}</td></tr>`,
  )}</tbody></table></div>`;
}

function charts(c: PageContext, byHour: number[], byDay: { day: string; money: Money }[], idPrefix: string): Out {
  return html`<div class="charts">${barChart({ id: `${idPrefix}-hours`, title: t(c.lang, 'byHour'), labels: byHour.map((_, h) => String(h)), values: byHour, labelEvery: 3 })}${barChart({
    id: `${idPrefix}-days`,
    title: t(c.lang, 'byDay'),
    labels: byDay.map((d) => `${d.day.slice(4, 6)}-${d.day.slice(6)}`),
    values: byDay.map((d) => d.money.paidFen),
    labelEvery: 5,
  })}</div>`;
}

export function fleetPage(c: PageContext, f: FleetView): Out {
  const tot = f.totals;
  return layout(
    c,
    t(c.lang, 'fleet'),
    html`<h1>${t(c.lang, 'chain')} · ${t(c.lang, 'today')} ${day(f.day)}</h1>
<section class="totals" id="totals">
<div><span>${t(c.lang, 'boxes')}</span><b>${f.boxes.length}</b><small><span class="online-count">${tot.online}</span> ${t(c.lang, 'online')} · <span class="offline-count">${tot.offline}</span> ${t(c.lang, 'offline')} · ${tot.revoked} ${t(c.lang, 'revoked')}</small></div>
<div><span>${t(c.lang, 'paidCount')}</span><b id="total-paid-count">${tot.paidCount}</b></div>
<div><span>${t(c.lang, 'paidSum')}</span><b id="total-paid">${yuan(tot.paidFen)}</b></div>
<div><span>${t(c.lang, 'refunds')}</span><b id="total-refunds">${yuan(tot.refundFen)}</b></div>
<div><span>${t(c.lang, 'net')}</span><b id="total-net">${yuan(tot.netFen)}</b></div>
<div><span>${t(c.lang, 'problems')}</span><b><a href="/problems">${f.problems.length}</a></b></div>
</section>
${charts(c, f.byHour, f.byDay, 'chain')}
<h2>${t(c.lang, 'fleet')}</h2>
<div class="scroll"><table class="fleet"><thead><tr><th>${t(c.lang, 'box')}</th><th>${t(c.lang, 'state')}</th><th>${t(c.lang, 'version')}</th><th>${t(c.lang, 'health')}</th><th class="num">${t(c.lang, 'paidCount')}</th><th class="num">${t(c.lang, 'paidSum')}</th><th class="num">${t(c.lang, 'refunds')}</th><th class="num">${t(c.lang, 'net')}</th><th>${t(c.lang, 'problems')}</th></tr></thead>
<tbody>${f.boxes.map(
      (v) =>
        html`<tr id="box-${v.box.deviceId}" data-state="${v.state}"><td><a href="/box/${v.box.deviceId}">${v.box.deviceId}</a></td><td>${stateBadge(c, v.state)}</td><td>${v.heartbeat?.report.version ?? '-'}</td><td>${healthCell(v)}</td>${moneyCells(v.today)}<td>${
          v.problems.length === 0 ? '' : html`<span class="warn">${v.problems.map((p) => problemText(c.lang, p.kind)).join('，')}</span>`
        }</td></tr>`,
    )}</tbody></table></div>`,
  );
}

export function boxPageView(c: PageContext, p: BoxPage): Out {
  const v = p.view;
  const b = v.box;
  const r = v.heartbeat?.report;
  const policyMax = b.maxAmountFen === null ? '' : yuan(b.maxAmountFen);
  return layout(
    c,
    b.deviceId,
    html`<h1>${t(c.lang, 'box')} ${b.deviceId} ${stateBadge(c, v.state)}</h1>
<section class="totals">
<div><span>${t(c.lang, 'paidCount')}</span><b>${v.today.paidCount}</b></div>
<div><span>${t(c.lang, 'paidSum')}</span><b class="box-paid">${yuan(v.today.paidFen)}</b></div>
<div><span>${t(c.lang, 'refunds')}</span><b>${yuan(v.today.refundFen)}</b></div>
<div><span>${t(c.lang, 'net')}</span><b>${yuan(v.today.netFen)}</b></div>
</section>
<dl class="facts">
<dt>${t(c.lang, 'lastHeard')}</dt><dd>${dateTime(v.heartbeat?.at ?? null, c.lang)}</dd>
<dt>${t(c.lang, 'version')}</dt><dd>${r?.version ?? '-'}</dd>
<dt>${t(c.lang, 'health')}</dt><dd>${healthCell(v)}</dd>
<dt>${t(c.lang, 'uptime')}</dt><dd>${r ? duration(r.uptimeS) : '-'}</dd>
<dt>${t(c.lang, 'clock')}</dt><dd>${r ? t(c.lang, r.clockSynced ? 'yes' : 'no') : '-'}</dd>
<dt>${t(c.lang, 'openSale')}</dt><dd>${r?.openSale ?? t(c.lang, 'none')}</dd>
<dt>${t(c.lang, 'pending')}</dt><dd>${r ? `${r.pendingReversals} / ${r.pendingRefunds}` : '-'}</dd>
<dt>${t(c.lang, 'reconciliation')}</dt><dd>${r?.reconciliation ? `${r.reconciliation.day}: ${r.reconciliation.matched} / ${r.reconciliation.discrepancies}` : t(c.lang, 'none')}</dd>
<dt>${t(c.lang, 'disk')}</dt><dd>${bytes(r?.diskFreeBytes ?? null)}</dd>
<dt>${t(c.lang, 'journal')}</dt><dd>${bytes(r?.journalBytes ?? null)}</dd>
<dt>${t(c.lang, 'certUntil')}</dt><dd>${fullDate(b.notAfter)}</dd>
</dl>
<h2>${t(c.lang, 'problems')}</h2>${problemList(c, v.problems, false)}
${charts(c, p.byHour, p.byDay, 'box')}
${
  b.revokedAt === null
    ? html`<h2>${t(c.lang, 'policy')}</h2>
<form method="post" action="/box/${b.deviceId}/policy" class="policy"><input type="hidden" name="_csrf" value="${c.csrf}">
<label>${t(c.lang, 'maxAmount')}<input name="max_amount" inputmode="decimal" value="${policyMax}" maxlength="12"></label>
<label>${t(c.lang, 'refundsAllowed')}<select name="refunds">${(['default', 'on', 'off'] as const).map(
        (o) => html`<option value="${o}"${(b.refunds ?? 'default') === o ? raw(' selected') : ''}>${t(c.lang, o)}</option>`,
      )}</select></label>
<button type="submit">${t(c.lang, 'save')}</button></form>
<p><a class="danger" href="/box/${b.deviceId}/revoke" id="revoke-link">${t(c.lang, 'revoke')}</a></p>`
    : ''
}
<h2>${t(c.lang, 'days')}</h2>
<div class="scroll"><table><thead><tr><th>${t(c.lang, 'day')}</th><th class="num">${t(c.lang, 'paidCount')}</th><th class="num">${t(c.lang, 'paidSum')}</th><th class="num">${t(c.lang, 'refunds')}</th><th class="num">${t(c.lang, 'net')}</th></tr></thead><tbody>${[...p.byDay]
      .reverse()
      .filter((d) => d.money.paidCount + d.money.refundCount > 0)
      .map((d) => html`<tr><td>${day(d.day)}</td>${moneyCells(d.money)}</tr>`)}</tbody></table></div>
<h2>${t(c.lang, 'calls')}</h2>
<div class="scroll"><table class="calls"><thead><tr><th>${t(c.lang, 'time')}</th><th>${t(c.lang, 'call')}</th><th>out_trade_no</th><th>${t(c.lang, 'outcome')}</th><th class="num">ms</th></tr></thead><tbody>${p.calls.map(
        (k) =>
          html`<tr><td>${dateTime(k.at, c.lang)}</td><td>${k.call}</td><td>${k.outTradeNo ?? k.outRefundNo ?? ''}</td><td>${k.outcome}${k.code ? ` ${k.code}` : ''}${k.state ? ` ${k.state}` : ''}${k.amountFen !== null ? ` ¥${yuan(k.amountFen)}` : ''}</td><td class="num">${k.ms ?? ''}</td></tr>`,
      )}</tbody></table></div>
<h2>${t(c.lang, 'heartbeats')}</h2>
<div class="scroll"><table class="heartbeats"><thead><tr><th>${t(c.lang, 'time')}</th><th>${t(c.lang, 'health')}</th><th>${t(c.lang, 'uptime')}</th><th>${t(c.lang, 'pending')}</th><th>${t(c.lang, 'disk')}</th></tr></thead><tbody>${p.heartbeats.map(
      (h) =>
        html`<tr><td>${dateTime(h.at, c.lang)}</td><td>${h.report.health}${h.report.healthText ? ` ${h.report.healthText}` : ''}</td><td>${duration(h.report.uptimeS)}</td><td>${h.report.pendingReversals} / ${h.report.pendingRefunds}</td><td>${bytes(h.report.diskFreeBytes)}</td></tr>`,
    )}</tbody></table></div>`,
  );
}

export function revokePage(c: PageContext, deviceId: string): Out {
  return layout(
    c,
    t(c.lang, 'revoke'),
    html`<h1>${t(c.lang, 'revoke')}: ${deviceId}</h1><p class="warn">${t(c.lang, 'revokeConfirm')}</p>
<form method="post" action="/box/${deviceId}/revoke" id="revoke-form"><input type="hidden" name="_csrf" value="${c.csrf}"><input type="hidden" name="confirm" value="yes">
<button type="submit" class="danger">${t(c.lang, 'revokeYes')}</button> <a href="/box/${deviceId}">${t(c.lang, 'cancel')}</a></form>`,
  );
}

export function problemsPage(c: PageContext, problems: Problem[]): Out {
  return layout(c, t(c.lang, 'problems'), html`<h1>${t(c.lang, 'problems')} (${problems.length})</h1>${problemList(c, problems, true)}`);
}

export function actionsPage(c: PageContext, actions: AdminActionRecord[]): Out {
  return layout(
    c,
    t(c.lang, 'actions'),
    html`<h1>${t(c.lang, 'actions')}</h1><div class="scroll"><table><thead><tr><th>${t(c.lang, 'time')}</th><th>${t(c.lang, 'who')}</th><th>${t(c.lang, 'what')}</th><th>${t(c.lang, 'box')}</th><th>${t(c.lang, 'detail')}</th></tr></thead><tbody>${actions.map(
      (a) => html`<tr><td>${dateTime(a.at, c.lang)}</td><td>${a.admin}</td><td>${a.action}</td><td>${a.deviceId ?? ''}</td><td>${a.detail}</td></tr>`,
    )}</tbody></table></div>`,
  );
}

export const CSS = `
:root{--fg:#1d2430;--muted:#667085;--line:#e4e7ec;--ok:#12805c;--bad:#c0362c;--warn:#b54708;--accent:#2e6bd1}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;color:var(--fg);background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;padding:.6rem 1rem;background:#fff;border-bottom:1px solid var(--line)}
nav a,nav button.link{margin-right:.8rem;color:var(--accent);text-decoration:none;background:none;border:0;font:inherit;cursor:pointer;padding:0}
main{padding:1rem;max-width:1200px;margin:0 auto}h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.6rem}
form.inline{display:inline}.totals{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:.6rem}
.totals div{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem;display:flex;flex-direction:column}
.totals span{color:var(--muted);font-size:.85rem}.totals b{font-size:1.35rem}.totals small{color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.8rem;margin-top:1rem}
figure.chart{margin:0;background:#fff;border:1px solid var(--line);border-radius:8px;padding:.5rem}figure.chart svg{width:100%;height:auto}
figcaption{font-size:.9rem;color:var(--muted)}rect.bar{fill:var(--accent)}line.grid{stroke:var(--line)}text.axis{font-size:11px;fill:var(--muted)}
.scroll{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:8px}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.4rem .6rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{padding:.05rem .45rem;border-radius:999px;font-size:.8rem;color:#fff}.badge.online{background:var(--ok)}.badge.offline{background:var(--bad)}.badge.revoked{background:#667085}
.health.ready,.health.busy{color:var(--ok)}.health.offline,.health.fault{color:var(--bad);font-weight:600}.warn{color:var(--warn)}.error{color:var(--bad);font-weight:600}.ok{color:var(--ok)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8rem}dt{color:var(--muted)}dd{margin:0}
section.login{max-width:360px;margin:3rem auto;background:#fff;border:1px solid var(--line);border-radius:8px;padding:1.2rem}
label{display:block;margin:.6rem 0}input,select{display:block;width:100%;padding:.5rem;font:inherit;border:1px solid var(--line);border-radius:6px;margin-top:.2rem}
button{padding:.5rem 1rem;font:inherit;border:0;border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}
form.policy{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8rem;max-width:420px}
a.danger,button.danger{color:#fff;background:var(--bad);padding:.45rem .9rem;border-radius:6px;text-decoration:none;display:inline-block}
@media (max-width:600px){main{padding:.6rem}th,td{padding:.35rem .4rem}}
`;
