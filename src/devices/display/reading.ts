/**
 * What one burst on the customer-display line means, as a family's reader (led8.ts, vfd.ts) concludes it once
 * the line has been quiet for the settle time. The arming rules (arming.ts) decide from this alone.
 */

export type Lamp = 'off' | 'price' | 'total' | 'collect' | 'change';

export interface Reading {
  /** A total that may arm a sale, in fen; null when the burst is anything else. */
  totalFen: number | null;
  /** What the display shows, in a technician's words: lamp, number, label, the screen's two lines. */
  meaning: string;
  /** Why this burst is not a total (empty for a total). */
  why: string;
  /** The burst ended with the display cleared (ESC @, CLR, CAN, a blank screen). */
  cleared: boolean;
  /** Bytes that are no command of the family (or a command out of its rules): a wrong baud or parity, or another device. */
  undecodable: number;
  /** False when no byte of the burst was meant for the display (a printer's bytes on a shared line, `ESC = n`). */
  touched: boolean;
}

/** One family's reader: fed the bytes of a burst, as they come; concludes at the burst's end. */
export interface DisplayReader {
  readonly family: DisplayFamily;
  /** A new burst starts: what is collected per burst starts again (a VFD's screen stays). */
  begin(): void;
  push(chunk: Uint8Array): void;
  /** The burst is over (the line was quiet for the settle time). */
  end(): Reading;
}

export const DISPLAY_FAMILIES = ['led8', 'cd5220', 'epson'] as const;
export type DisplayFamily = (typeof DISPLAY_FAMILIES)[number];

export const DISPLAY_PARITIES = ['none', 'odd', 'even', 'space', 'mark'] as const;
export type DisplayParity = (typeof DISPLAY_PARITIES)[number];

/** `1b 40 0c` */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex').replace(/(..)(?!$)/g, '$1 ');
}
