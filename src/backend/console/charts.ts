import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { formatYuan } from '../../money.js';

/**
 * Server-rendered SVG bar charts: no script, nothing fetched, readable on a phone (the viewBox scales). Values
 * are fen; labels are yuan.
 */
export function barChart(options: { title: string; labels: string[]; values: number[]; labelEvery?: number; id: string }): HtmlEscapedString | Promise<HtmlEscapedString> {
  const { labels, values } = options;
  const width = 720;
  const height = 220;
  const left = 56;
  const bottom = 28;
  const top = 12;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const max = Math.max(1, ...values);
  // A round top for the axis: 1, 2 or 5 times a power of ten, in fen.
  const pow = 10 ** Math.floor(Math.log10(max));
  const scaleTop = [1, 2, 5, 10].map((m) => m * pow).find((v) => v >= max)!;
  const step = plotW / values.length;
  const every = options.labelEvery ?? 1;
  const bars = values.map((v, i) => {
    const h = Math.round((v / scaleTop) * plotH);
    const x = left + i * step + step * 0.15;
    return html`<rect class="bar" x="${x.toFixed(1)}" y="${top + plotH - h}" width="${(step * 0.7).toFixed(1)}" height="${h}"><title>${labels[i]}: ${formatYuan(v)}</title></rect>`;
  });
  const ticks = [0, 0.5, 1].map(
    (f) => html`<line class="grid" x1="${left}" x2="${width - 8}" y1="${top + plotH - f * plotH}" y2="${top + plotH - f * plotH}"></line><text class="axis" x="${left - 6}" y="${top + plotH - f * plotH + 4}" text-anchor="end">${formatYuan(Math.round(scaleTop * f))}</text>`,
  );
  const xLabels = labels.map((l, i) =>
    i % every === 0 ? html`<text class="axis" x="${(left + i * step + step / 2).toFixed(1)}" y="${height - 8}" text-anchor="middle">${l}</text>` : '',
  );
  return html`<figure class="chart" id="${options.id}"><figcaption>${options.title}</figcaption><svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${options.title}" xmlns="http://www.w3.org/2000/svg">${ticks}${bars}${xLabels}</svg></figure>`;
}
