/**
 * What a thrown value says, read one way everywhere: Node's errno-style `code` and the message.
 */

/** The `code` of an error (`ENOENT`, `SQLITE_BUSY`, `ERR_OSSL_...`), when it has a string one. */
export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The message of an Error, or the value as text. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
