import { X509Certificate } from 'node:crypto';
import { createSecureContext, type ConnectionOptions } from 'node:tls';

/**
 * The merchant client certificate that /secapi calls present (reverse, refund): how it is recognised, loaded
 * the way the TLS connection will load it, and when it expires. `scanbox run` (through the client),
 * `scanbox config check` and `scanbox selftest` all judge it here.
 */

export type ClientCertificate =
  | { kind: 'pem'; certPem: string; keyPem: string }
  | { kind: 'p12'; p12: Buffer; passphrase: string };

export const PEM_CERT = /-----BEGIN [A-Z0-9 ]*CERTIFICATE-----/;
export const PEM_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** A certificate that is this close to its end is worth a warning: WeChat Pay's renewal takes a person. */
export const RENEW_WITHIN_DAYS = 30;
const DAY_MS = 24 * 3600 * 1000;

/** The merchant certificate cannot be used; thrown by the client's constructor so the daemon stops at start. */
export class CertificateError extends Error {
  readonly code = 'CERTIFICATE';
  constructor(message: string) {
    super(message);
    this.name = 'CertificateError';
  }
}

const P12_CONVERT_HINT =
  'convert it once with `openssl pkcs12 -legacy -in apiclient_cert.p12 -nodes -out apiclient.pem` ' +
  '(password = mch_id), then set SCANBOX_CERT_FILE and SCANBOX_CERT_KEY_FILE to apiclient.pem';

/**
 * Turns what OpenSSL says about an unusable merchant certificate into a message a technician can act on.
 * Exported so the mapping of OpenSSL 3's refusal of legacy RC2-40 files can be tested on its own.
 */
export function certificateError(kind: ClientCertificate['kind'], error: unknown): CertificateError {
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : '';
  const detail = error instanceof Error ? error.message : String(error);
  if (kind === 'p12') {
    if (/mac verify failure|invalid password/i.test(detail)) {
      return new CertificateError(
        'merchant certificate apiclient_cert.p12: wrong password (WeChat Pay sets it to the mch_id; ' +
          'a different one goes in SCANBOX_CERT_P12_PASSWORD_FILE)',
      );
    }
    if (code === 'ERR_CRYPTO_UNSUPPORTED_OPERATION' || /unsupported/i.test(detail)) {
      return new CertificateError(
        `merchant certificate apiclient_cert.p12 uses a legacy cipher (RC2-40) that OpenSSL 3 refuses: ${P12_CONVERT_HINT}`,
      );
    }
    return new CertificateError(`merchant certificate apiclient_cert.p12 is unusable (${detail}): ${P12_CONVERT_HINT}`);
  }
  if (/key values mismatch/i.test(detail)) {
    return new CertificateError('merchant certificate: the private key does not belong to the certificate');
  }
  return new CertificateError(`merchant certificate (PEM) is unusable: ${detail}`);
}

/** The TLS options that present the certificate, parsed the way the connection will parse them; throws CertificateError. */
export function certificateTlsOptions(certificate: ClientCertificate): ConnectionOptions {
  const options: ConnectionOptions =
    certificate.kind === 'pem'
      ? { cert: certificate.certPem, key: certificate.keyPem }
      : { pfx: certificate.p12, passphrase: certificate.passphrase };
  if (certificate.kind === 'pem' && (!PEM_CERT.test(certificate.certPem) || !PEM_KEY.test(certificate.keyPem))) {
    throw new CertificateError('merchant certificate (PEM): expected a certificate and a private key in PEM form');
  }
  try {
    createSecureContext(options);
  } catch (error) {
    throw certificateError(certificate.kind, error);
  }
  return options;
}

/**
 * The X.509 certificate inside, loaded as the client loads it (OpenSSL refuses legacy PKCS#12 files here
 * too); null for a PKCS#12 whose certificate OpenSSL does not hand out. Throws what OpenSSL throws.
 */
export function certificateX509(certificate: ClientCertificate): X509Certificate | null {
  if (certificate.kind === 'pem') return new X509Certificate(certificate.certPem);
  const context = createSecureContext({ pfx: certificate.p12, passphrase: certificate.passphrase });
  const der = (context.context as { getCertificate?: () => Buffer | null }).getCertificate?.();
  return der ? new X509Certificate(der) : null;
}

export interface Expiry {
  /** notAfter, ms since the epoch (NaN when unreadable). */
  notAfter: number;
  /** Whole days left (negative once expired). */
  days: number;
  expired: boolean;
  /** Within RENEW_WITHIN_DAYS of its end, not yet expired. */
  renewSoon: boolean;
  /** `YYYY-MM-DD` of notAfter. */
  date: string;
  commonName: string | null;
}

/**
 * When the certificate ends, as of `now`. notBefore is never judged: a Pi without a real-time clock may start
 * with its clock in the past, and refusing a freshly issued certificate then would stop a box that is fine
 * once NTP has synchronised.
 */
export function expiryOf(x509: X509Certificate, now: number): Expiry {
  const notAfter = new Date(x509.validTo).getTime();
  const days = Math.floor((notAfter - now) / DAY_MS);
  const readable = !Number.isNaN(notAfter);
  return {
    notAfter,
    days,
    expired: readable && notAfter < now,
    renewSoon: readable && notAfter >= now && days < RENEW_WITHIN_DAYS,
    date: readable ? new Date(notAfter).toISOString().slice(0, 10) : 'unknown',
    commonName: /^CN=(.*)$/m.exec(x509.subject)?.[1] ?? null,
  };
}
