import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

/**
 * A throwaway certificate authority for the gateway simulator: a CA, a server certificate for the
 * loopback names, and a merchant client certificate (the `apiclient_cert` WeChat Pay issues), all made in
 * memory at start. Nothing here is a secret; it exists so tests and the demo run real HTTPS with a real
 * client certificate without any file from outside.
 */

export interface IssuedCert {
  certPem: string;
  keyPem: string;
}

export interface TestPki {
  ca: IssuedCert;
  server: IssuedCert;
  client: IssuedCert;
  /** The client certificate as PKCS#12 protected by `password` (WeChat Pay uses the mch_id). */
  clientP12(password: string, algorithm?: 'aes256' | '3des'): Buffer;
}

function rsaKey(): { publicKey: forge.pki.PublicKey; privateKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  // Node's own keygen is native and fast; forge only signs.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  return { publicKey, privateKey: forgeKey, keyPem };
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

interface CertSpec {
  commonName: string;
  issuer?: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey };
  isCa?: boolean;
  serverNames?: string[];
  clientAuth?: boolean;
  days?: number;
  notBefore?: Date;
}

function issue(spec: CertSpec): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey; pem: IssuedCert } {
  const { publicKey, privateKey, keyPem } = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  const notBefore = spec.notBefore ?? new Date(Date.now() - 24 * 3600 * 1000);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = new Date(notBefore.getTime() + (spec.days ?? 3650) * 24 * 3600 * 1000);
  const subject = [{ name: 'commonName', value: spec.commonName }, { name: 'organizationName', value: 'scanbox simulator' }];
  cert.setSubject(subject);
  cert.setIssuer(spec.issuer ? spec.issuer.cert.subject.attributes : subject);
  const extensions: object[] = [{ name: 'basicConstraints', cA: spec.isCa === true, critical: true }];
  if (spec.isCa) {
    extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
  } else {
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    extensions.push({ name: 'extKeyUsage', serverAuth: !spec.clientAuth, clientAuth: spec.clientAuth === true });
  }
  if (spec.serverNames) {
    extensions.push({
      name: 'subjectAltName',
      altNames: spec.serverNames.map((n) => (/^[0-9.]+$/.test(n) || n.includes(':') ? { type: 7, ip: n } : { type: 2, value: n })),
    });
  }
  extensions.push({ name: 'subjectKeyIdentifier' });
  cert.setExtensions(extensions);
  cert.sign(spec.issuer?.key ?? privateKey, forge.md.sha256.create());
  return { cert, key: privateKey, pem: { certPem: forge.pki.certificateToPem(cert), keyPem } };
}

export interface PkiOptions {
  /** Names the server certificate is valid for. */
  serverNames?: string[];
  /** Validity of the client certificate in days (selftest reports its expiry). */
  clientDays?: number;
  /** mch_id written into the client certificate's common name, as WeChat Pay does. */
  mchId?: string;
}

export function createTestPki(options: PkiOptions = {}): TestPki {
  const ca = issue({ commonName: 'scanbox simulator CA', isCa: true });
  const server = issue({
    commonName: 'scanbox simulator gateway',
    issuer: { cert: ca.cert, key: ca.key },
    serverNames: options.serverNames ?? ['localhost', '127.0.0.1', '::1'],
  });
  const client = issue({
    commonName: options.mchId ?? 'scanbox merchant',
    issuer: { cert: ca.cert, key: ca.key },
    clientAuth: true,
    days: options.clientDays ?? 1825,
  });
  return {
    ca: ca.pem,
    server: server.pem,
    client: client.pem,
    clientP12(password: string, algorithm: 'aes256' | '3des' = 'aes256'): Buffer {
      const asn1 = forge.pkcs12.toPkcs12Asn1(client.key, [client.cert, ca.cert], password, { algorithm });
      return Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary');
    },
  };
}
