/**
 * Certificates made the way an attacker (or an older Zerocell) would: leaves signed directly with
 * a CA's private key, and a local CA without name constraints like the ones minted before.
 */
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

const cryptoImpl = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

function pem(der: ArrayBuffer, label: string): string {
  return x509.PemConverter.encode(der, label);
}

/** Signs a serverAuth leaf for `sans` with a CA's key; returns the chain (leaf + CA) and the leaf's key. */
export async function signLeaf(caCertPem: string, caKeyPem: string, sans: x509.JsonGeneralNames): Promise<{ certPem: string; keyPem: string }> {
  const caCert = new x509.X509Certificate(caCertPem);
  const caKey = await webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(caKeyPem), EC, false, ["sign"]);
  const keys = await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: "CN=leaf",
      issuer: caCert.subjectName,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 30 * 86400_000),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(sans, false),
      ],
    },
    cryptoImpl,
  );
  const keyPem = pem(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { certPem: `${cert.toString("pem")}\n${caCert.toString("pem")}\n`, keyPem };
}

/** A CA like the ones Zerocell minted before name constraints (same extensions, no constraints). */
export async function makeUnconstrainedCa(): Promise<{ certPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: "O=Zerocell, CN=Zerocell Local CA (0123456789ab)",
      keys,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 3650 * 86400_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, cryptoImpl),
      ],
    },
    cryptoImpl,
  );
  return { certPem: `${cert.toString("pem")}\n`, keyPem: pem(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY") };
}
