import type { BackendPki, BoxCertificate } from './pki.js';
import type { BackendStore, BoxPolicy, BoxRecord } from './store.js';

export class EnrolError extends Error {
  readonly code = 'ENROL';
  constructor(message: string) {
    super(message);
    this.name = 'EnrolError';
  }
}

/**
 * Issues the box `deviceId` a client certificate and records its serial in the store, in that order: a
 * certificate whose serial is not recorded is refused by the backend, so a failure in between hands out
 * nothing usable. Enrolling a box again gives it a new certificate and revokes its earlier ones.
 */
export async function enrolBox(
  pki: BackendPki,
  store: BackendStore,
  deviceId: string,
  options: { policy?: Partial<BoxPolicy>; now?: number; days?: number } = {},
): Promise<{ certificate: BoxCertificate; box: BoxRecord }> {
  const certificate = pki.enroll(deviceId, options.days === undefined ? {} : { days: options.days });
  const result = await store.enrol(
    { deviceId, serial: certificate.serial, notAfter: certificate.notAfter, at: options.now ?? Date.now() },
    options.policy ?? {},
  );
  if (!result.ok) throw new EnrolError(result.problem);
  return { certificate, box: result.box };
}
