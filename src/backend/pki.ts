import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import forge from 'node-forge';
import { DEVICE_ID, DEVICE_ID_RULE } from '../ids.js';

/**
 * The backend's own certificate authority (contract §8): made once, at first start, in the directory of the
 * backend's journal. It signs the backend's server certificate and one client certificate per box. The boxes
 * trust only this CA for the backend (backend_ca.pem), and the backend accepts only client certificates it
 * signed; which of those are still good is the store's business (enrolled, not revoked), checked per request.
 *
 * Files (keys 0600, certificates 0644):
 *   backend_ca.pem, backend_ca_key.pem         the CA (10 years)
 *   backend_server.pem, backend_server_key.pem the server certificate (2 years), re-issued from the same CA when
 *                                              a configured name is missing from it or it has less than 30 days left
 */

export const CA_FILE = 'backend_ca.pem';
export const CA_KEY_FILE = 'backend_ca_key.pem';
export const SERVER_CERT_FILE = 'backend_server.pem';
export const SERVER_KEY_FILE = 'backend_server_key.pem';

/** What `enroll` writes for a box (contract §1): the names SCANBOX_BACKEND_*_FILE default to. */
export const BOX_CERT_FILE = 'backend_cert.pem';
export const BOX_KEY_FILE = 'backend_key.pem';
export const BOX_CA_FILE = 'backend_ca.pem';

const DAY_MS = 24 * 3600 * 1000;
export const CA_DAYS = 3650;
export const LEAF_DAYS = 730;
/** A server certificate closer than this to its end is issued again at start. */
const RENEW_BEFORE_MS = 30 * DAY_MS;
/** notBefore this far back, so a box whose clock is a little behind still accepts a fresh certificate. */
const BACKDATE_MS = 3600 * 1000;

export interface BoxCertificate {
  deviceId: string;
  /** Lower-case hex, as recorded in the store (Node's getPeerCertificate gives it upper-case). */
  serial: string;
  notBefore: number;
  notAfter: number;
  certPem: string;
  keyPem: string;
  caPem: string;
}

export interface PkiOptions {
  /** Names besides the hostname, `localhost` and `127.0.0.1` (SCANBOX_BACKEND_HOSTNAMES): DNS names or IP addresses. */
  hostnames?: readonly string[];
  /** Default Date.now; tests move it to make expired certificates. */
  now?: () => number;
  /** Default os.hostname(). */
  hostname?: string;
}

export class PkiError extends Error {
  readonly code = 'PKI';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PkiError';
  }
}

/** 16 random bytes, the top bit clear so the DER integer stays positive; lower-case hex. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Node prints serials upper-case and may drop a leading zero; the store keeps them lower-case, no leading zeros. */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, '');
}

function rsaKey(): { publicKey: forge.pki.PublicKey; privateKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return { publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), privateKey: forgeKey, keyPem };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A name SCANBOX_BACKEND_HOSTNAMES may hold, or what is wrong with it. */
export function checkHostname(name: string): string | null {
  if (IPV4.test(name)) return null;
  if (name.includes(':')) return /^[0-9A-Fa-f:.]+$/.test(name) ? null : `${name} is not an IPv6 address`;
  return DNS_NAME.test(name) ? null : `${name} is not a DNS name or an IP address`;
}

interface Spec {
  subject: string;
  issuer: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } | null;
  kind: 'ca' | 'server' | 'client';
  names?: readonly string[];
  now: number;
  days: number;
}

function issue(spec: Spec): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey; certPem: string; keyPem: string; serial: string } {
  const { publicKey, privateKey, keyPem } = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = new Date(spec.now - BACKDATE_MS);
  cert.validity.notAfter = new Date(spec.now + spec.days * DAY_MS);
  const subject = [
    { name: 'commonName', value: spec.subject },
    { name: 'organizationName', value: 'scanbox backend' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(spec.issuer ? spec.issuer.cert.subject.attributes : subject);
  const extensions: object[] = [{ name: 'basicConstraints', cA: spec.kind === 'ca', critical: true }];
  if (spec.kind === 'ca') {
    extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
  } else {
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    // A box certificate cannot serve, a server certificate cannot log in as a box.
    extensions.push({ name: 'extKeyUsage', serverAuth: spec.kind === 'server', clientAuth: spec.kind === 'client' });
  }
  if (spec.names) {
    extensions.push({
      name: 'subjectAltName',
      altNames: spec.names.map((n) => (IPV4.test(n) || n.includes(':') ? { type: 7, ip: n } : { type: 2, value: n })),
    });
  }
  extensions.push({ name: 'subjectKeyIdentifier' });
  if (spec.issuer) extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: spec.issuer.cert.generateSubjectKeyIdentifier().getBytes() });
  cert.setExtensions(extensions);
  cert.sign(spec.issuer?.key ?? privateKey, forge.md.sha256.create());
  return { cert, key: privateKey, certPem: forge.pki.certificateToPem(cert), keyPem, serial: cert.serialNumber };
}

/** Written to a temporary file, fsynced and renamed: a power cut leaves the old file or the new one. */
export function writeFileDurably(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
  const dirFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

function readPem(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new PkiError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** The names a server certificate is valid for (DNS names and IP addresses), from its subjectAltName. */
function sanNames(certPem: string): Set<string> {
  const san = new X509Certificate(certPem).subjectAltName ?? '';
  const names = new Set<string>();
  for (const part of san.split(',')) {
    const match = /^\s*(DNS|IP Address):(.+)$/.exec(part);
    if (match) names.add(match[2]!.trim().toLowerCase());
  }
  return names;
}

export class BackendPki {
  readonly dir: string;
  readonly caPem: string;
  readonly serverCertPem: string;
  readonly serverKeyPem: string;
  /** The names in the server certificate. */
  readonly serverNames: readonly string[];
  private readonly now: () => number;

  /**
   * The PKI in `dir`: loaded when it is there, made when it is not (the CA only once: a new CA would cut off
   * every enrolled box). Throws PkiError for files that are there but unusable.
   */
  static openOrCreate(dir: string, options: PkiOptions = {}): BackendPki {
    const now = options.now ?? Date.now;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const caPath = join(dir, CA_FILE);
    const caKeyPath = join(dir, CA_KEY_FILE);
    if (existsSync(caPath) !== existsSync(caKeyPath)) {
      throw new PkiError(`${dir} holds only one of ${CA_FILE} and ${CA_KEY_FILE}: restore the other (a new CA would cut off every enrolled box)`);
    }
    if (!existsSync(caPath)) {
      const ca = issue({ subject: 'scanbox backend CA', issuer: null, kind: 'ca', now: now(), days: CA_DAYS });
      // The key first: a CA certificate without its key is the state refused above.
      writeFileDurably(caKeyPath, ca.keyPem, 0o600);
      writeFileDurably(caPath, ca.certPem, 0o644);
    }
    const names = [...new Set([options.hostname ?? hostname(), 'localhost', '127.0.0.1', ...(options.hostnames ?? [])].map((n) => n.toLowerCase()))];
    for (const name of names) {
      const problem = checkHostname(name);
      if (problem !== null) throw new PkiError(`server certificate name: ${problem}`);
    }
    const pki = new BackendPki(dir, now);
    const serverPath = join(dir, SERVER_CERT_FILE);
    const serverKeyPath = join(dir, SERVER_KEY_FILE);
    if (pki.serverNeedsIssue(serverPath, serverKeyPath, names)) {
      const { cert, key } = pki.caPair();
      const server = issue({ subject: names[0]!, issuer: { cert, key }, kind: 'server', names, now: now(), days: LEAF_DAYS });
      writeFileDurably(serverKeyPath, server.keyPem, 0o600);
      writeFileDurably(serverPath, server.certPem, 0o644);
    }
    return new BackendPki(dir, now);
  }

  private constructor(dir: string, now: () => number) {
    this.dir = dir;
    this.now = now;
    this.caPem = readPem(join(dir, CA_FILE));
    const serverPath = join(dir, SERVER_CERT_FILE);
    this.serverCertPem = existsSync(serverPath) ? readPem(serverPath) : '';
    this.serverKeyPem = existsSync(join(dir, SERVER_KEY_FILE)) ? readPem(join(dir, SERVER_KEY_FILE)) : '';
    this.serverNames = this.serverCertPem === '' ? [] : [...sanNames(this.serverCertPem)];
  }

  private serverNeedsIssue(certPath: string, keyPath: string, names: readonly string[]): boolean {
    if (!existsSync(certPath) || !existsSync(keyPath)) return true;
    try {
      const cert = new X509Certificate(readPem(certPath));
      const ca = new X509Certificate(this.caPem);
      if (!cert.verify(ca.publicKey)) return true;
      if (Date.parse(cert.validTo) - this.now() < RENEW_BEFORE_MS) return true;
      const have = sanNames(cert.toString());
      return names.some((name) => !have.has(name));
    } catch {
      return true;
    }
  }

  private caPair(): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } {
    try {
      const cert = forge.pki.certificateFromPem(this.caPem);
      const key = forge.pki.privateKeyFromPem(readPem(join(this.dir, CA_KEY_FILE))) as forge.pki.rsa.PrivateKey;
      return { cert, key };
    } catch (error) {
      if (error instanceof PkiError) throw error;
      throw new PkiError(`the CA in ${this.dir} cannot be read: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * A client certificate for the box `deviceId` (CN = the device id, clientAuth only). Nothing is recorded
   * here: the caller records the serial in the store before handing the files out.
   */
  enroll(deviceId: string, options: { days?: number } = {}): BoxCertificate {
    if (typeof deviceId !== 'string' || !DEVICE_ID.test(deviceId)) throw new TypeError(`device id must be ${DEVICE_ID_RULE}`);
    const days = options.days ?? LEAF_DAYS;
    const { cert, key } = this.caPair();
    const now = this.now();
    const issued = issue({ subject: deviceId, issuer: { cert, key }, kind: 'client', now, days });
    return {
      deviceId,
      serial: normalizeSerial(issued.serial),
      notBefore: now - BACKDATE_MS,
      notAfter: now + days * DAY_MS,
      certPem: issued.certPem,
      keyPem: issued.keyPem,
      caPem: this.caPem,
    };
  }
}

/** Writes a box's three files into `dir` (made 0700 if missing): the key 0600, the certificates 0644. */
export function writeBoxFiles(dir: string, box: BoxCertificate): { cert: string; key: string; ca: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = { cert: join(dir, BOX_CERT_FILE), key: join(dir, BOX_KEY_FILE), ca: join(dir, BOX_CA_FILE) };
  writeFileDurably(paths.key, box.keyPem, 0o600);
  writeFileDurably(paths.cert, box.certPem, 0o644);
  writeFileDurably(paths.ca, box.caPem, 0o644);
  return paths;
}
