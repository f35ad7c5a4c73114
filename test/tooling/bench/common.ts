/** What the bench's parts share: the table's rows and a few statistics. */

export interface Row {
  metric: string;
  value: string;
  target: string;
  ok: boolean | null;
}

/** The q-quantile by the nearest-rank method (q = 0.99 of 20 values is the largest). */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

export const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
export const median = (values: number[]): number => quantile(values, 0.5);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));
