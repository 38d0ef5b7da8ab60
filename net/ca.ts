/**
 * The cluster's own certificate authority: ECDSA P-256 keys made with WebCrypto,
 * certificates written by @peculiar/x509. Pure functions over PEM text; where
 * the CA is kept is the caller's business (server/cluster-identity.ts).
 */
type X509 = typeof import("@peculiar/x509");
let library: Promise<X509> | undefined;

/**
 * @peculiar/x509 reaches tsyringe, which needs the Reflect metadata API loaded
 * first. A static import cannot promise that order in the compiled binary (the
 * bundler hoists the ES module above the CommonJS polyfill), so load both here,
 * in order, and only when a certificate is made.
 */
function x509lib(): Promise<X509> {
  return (library ??= (async () => {
    await import("reflect-metadata");
    return await import("@peculiar/x509");
  })());
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 24 * 3600_000;
/** Clocks drift: a certificate is valid from an hour before it was made. */
const BACKDATE_MS = 3600_000;

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

export interface Issued {
  /** The leaf followed by the CA, so a peer that has neither can still see the chain. */
  certPem: string;
  keyPem: string;
}

export async function createCa(name = "ChatterBox cluster CA", days = 3650): Promise<CertificateAuthority> {
  const x509 = await x509lib();
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - BACKDATE_MS),
    notAfter: new Date(Date.now() + days * DAY_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      // pathLength 0: the CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/**
 * A certificate for one process (a server or the balancer), naming every host
 * it is reached by; good for both ends of a link (serverAuth and clientAuth),
 * because servers also present it when they call a peer or the balancer.
 */
export async function issueCertificate(ca: CertificateAuthority, hosts: string[], days = 397): Promise<Issued> {
  const x509 = await x509lib();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(ca.keyPem), ALG, false, ["sign"]);
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const names = [...new Set(hosts)].map((host) => ({ type: isIp(host) ? "ip" : "dns", value: host }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${hosts[0] ?? "chatterbox"}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - BACKDATE_MS),
    notAfter: new Date(Date.now() + days * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names as import("@peculiar/x509").JsonGeneralName[]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: `${cert.toString("pem")}\n${ca.certPem}`, keyPem: await keyToPem(keys.privateKey) };
}

/** SHA-256 of the certificate's DER, as colon-separated hex: what `ca fingerprint` shows and clients pin. */
export function fingerprint(certPem: string): string {
  const hex = new Bun.CryptoHasher("sha256").update(derOf(firstCertificate(certPem))).digest("hex").toUpperCase();
  return `SHA256:${hex.match(/../g)!.join(":")}`;
}

/** Accepts a fingerprint as people paste it: any case, with or without colons or the prefix. */
export function normalFingerprint(text: string): string {
  const hex = text.trim().replace(/^sha256:?/i, "").replace(/[:\s]/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new Error(`Not a SHA-256 fingerprint: "${text.slice(0, 120)}"`);
  return `SHA256:${hex.match(/../g)!.join(":")}`;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;

/** The first certificate of a PEM text, in one canonical form: a file's comments and further certificates are dropped. */
export function firstCertificate(pem: string): string {
  const match = PEM_BLOCK.exec(pem);
  if (!match) throw new Error("Expected a PEM certificate (-----BEGIN CERTIFICATE-----)");
  const body = match[1]!.replace(/\s+/g, "");
  return `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
}

function derOf(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""), "base64"));
}

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // a positive serial number, as RFC 5280 asks
  return Buffer.from(bytes).toString("hex");
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const x509 = await x509lib();
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(":");
}
