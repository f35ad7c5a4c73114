import { posix } from 'node:path';
import { DISPLAY_FAMILIES, DISPLAY_PARITIES, type DisplayFamily, type DisplayParity } from '../devices/display/reading.js';
import type { DisplayMode } from '../devices/display/display.js';
import type { Reader } from '../config.js';

/**
 * The customer-display line's variables (contract §10): the box takes its amounts either from the register line
 * or from the display line, exactly one of the two. Every problem is reported with the others, one line each.
 */

export interface DisplayConfig {
  port: string;
  /** The real display when the box sits inline; null: a passive tap. */
  outPort: string | null;
  family: DisplayFamily;
  baud: number;
  parity: DisplayParity;
  settleMs: number;
  mode: DisplayMode;
}

export const DISPLAY_VARIABLES = [
  'SCANBOX_DISPLAY_PORT',
  'SCANBOX_DISPLAY_OUT_PORT',
  'SCANBOX_DISPLAY_FAMILY',
  'SCANBOX_DISPLAY_BAUD',
  'SCANBOX_DISPLAY_PARITY',
  'SCANBOX_DISPLAY_SETTLE_MS',
  'SCANBOX_DISPLAY_MODE',
] as const;

const MODES: readonly DisplayMode[] = ['learn', 'charge'];

function oneOf<T extends string>(r: Reader, name: string, allowed: readonly T[], fallback: T): T {
  const value = r.get(name);
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  r.error(name, `${JSON.stringify(value.slice(0, 40))} is not one of ${allowed.join(' ')}`);
  return fallback;
}

const same = (a: string | null, b: string | null): boolean => a !== null && b !== null && a !== '' && b !== '' && posix.normalize(a) === posix.normalize(b);

/** Null when the box takes its amounts from the register line (SCANBOX_DISPLAY_PORT unset). */
export function readDisplay(r: Reader, ports: { scanner: string; register: string | null }): DisplayConfig | null {
  if (r.get('SCANBOX_DISPLAY_PORT') === undefined) {
    for (const name of DISPLAY_VARIABLES.slice(1)) {
      if (r.get(name) !== undefined) r.error(name, 'set without SCANBOX_DISPLAY_PORT (the customer-display line is not used)');
    }
    return null;
  }
  if (r.get('SCANBOX_REGISTER_PORT') !== undefined) {
    r.error('SCANBOX_DISPLAY_PORT', 'set together with SCANBOX_REGISTER_PORT: set exactly one (the register line, or the customer-display line)');
  }
  const port = r.port('SCANBOX_DISPLAY_PORT');
  const outPort = r.get('SCANBOX_DISPLAY_OUT_PORT') === undefined ? null : r.port('SCANBOX_DISPLAY_OUT_PORT');
  if (same(port, ports.scanner)) r.error('SCANBOX_DISPLAY_PORT', 'is the same device as SCANBOX_SCANNER_PORT');
  if (same(outPort, port)) r.error('SCANBOX_DISPLAY_OUT_PORT', 'is the same device as SCANBOX_DISPLAY_PORT: the display goes on the second adapter');
  if (same(outPort, ports.scanner)) r.error('SCANBOX_DISPLAY_OUT_PORT', 'is the same device as SCANBOX_SCANNER_PORT');
  const family = oneOf(r, 'SCANBOX_DISPLAY_FAMILY', DISPLAY_FAMILIES, 'led8');
  const baud = r.get('SCANBOX_DISPLAY_BAUD') === undefined ? 2400 : r.baud('SCANBOX_DISPLAY_BAUD');
  const parity = oneOf(r, 'SCANBOX_DISPLAY_PARITY', DISPLAY_PARITIES, 'none');
  const settleMs = r.integer('SCANBOX_DISPLAY_SETTLE_MS', 400, 150, 5000, 'ms');
  const mode = oneOf(r, 'SCANBOX_DISPLAY_MODE', MODES, 'learn');
  return { port, outPort: outPort === '' ? null : outPort, family, baud, parity, settleMs, mode };
}

export function describeDisplay(display: DisplayConfig | null): string[] {
  if (display === null) return ['SCANBOX_DISPLAY_PORT=unset (amounts come from the register line)'];
  return [
    `SCANBOX_DISPLAY_PORT=${display.port}`,
    `SCANBOX_DISPLAY_OUT_PORT=${display.outPort ?? 'unset (passive tap)'}`,
    `SCANBOX_DISPLAY_FAMILY=${display.family}`,
    `SCANBOX_DISPLAY_BAUD=${display.baud}`,
    `SCANBOX_DISPLAY_PARITY=${display.parity}`,
    `SCANBOX_DISPLAY_SETTLE_MS=${display.settleMs}`,
    `SCANBOX_DISPLAY_MODE=${display.mode}${display.mode === 'learn' ? ' (charges nothing: records what it would charge)' : ''}`,
  ];
}
