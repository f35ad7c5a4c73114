/**
 * What the box says about itself: the register's `STATUS` answer, systemd's STATUS=, the control socket's
 * health answer and `scanbox status` all come from this one value, worded here.
 */

export type Health =
  | { kind: 'READY' }
  | { kind: 'BUSY'; ref: string }
  | { kind: 'OFFLINE'; text: string }
  | { kind: 'FAULT'; text: string };

/** `READY`, `BUSY R1`, `OFFLINE WeChat Pay unreachable (NETWORK)`, `FAULT ...`. */
export function describeHealth(health: Health): string {
  const detail = health.kind === 'READY' ? '' : health.kind === 'BUSY' ? health.ref : health.text;
  return detail === '' ? health.kind : `${health.kind} ${detail}`;
}

/** The register's answer to `STATUS` (contract §3). */
export function statusLine(health: Health): string {
  return `STATUS ${describeHealth(health)}`;
}

/** The daemon's health as the control socket carried it, checked: a daemon of another version may answer something else. */
export function asHealth(answer: Record<string, unknown>): Health | null {
  const { kind, ref, text } = answer;
  if (kind === 'READY') return { kind };
  if (kind === 'BUSY') return typeof ref === 'string' ? { kind, ref } : null;
  if (kind === 'OFFLINE' || kind === 'FAULT') return { kind, text: typeof text === 'string' ? text : '' };
  return null;
}
