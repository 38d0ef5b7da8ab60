// The one MLS cipher suite ChatterBox speaks, built on the @noble code the rest of crypto/ already uses.
import { getCiphersuiteFromName, getCiphersuiteImpl, nobleCryptoProvider, type CiphersuiteImpl } from "ts-mls";

export const MLS_SUITE = "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519" as const;

let cached: Promise<CiphersuiteImpl> | undefined;

/** Built once per process: the implementation is stateless, and building it loads modules. */
export function mlsSuite(): Promise<CiphersuiteImpl> {
  cached ??= getCiphersuiteImpl(getCiphersuiteFromName(MLS_SUITE), nobleCryptoProvider);
  return cached;
}
