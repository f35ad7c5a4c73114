/**
 * The box's own result codes (contract §3). WeChat Pay's err_codes pass through unchanged beside them.
 */
export type BoxCode =
  | 'CANCELLED'
  | 'NO_SCAN'
  | 'NOT_WECHAT_CODE'
  | 'TIMEOUT_REVERSED'
  | 'REVERSED'
  | 'INTERRUPTED'
  | 'REVERSE_PENDING'
  | 'OFFLINE';

/** An error that carries a code from where it arises to the register line and the log. */
export class CodedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'CodedError';
  }
}
