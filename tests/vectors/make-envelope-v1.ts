// Writes tests/vectors/envelope-v1.json. Run it only when the envelope format changes on purpose
// (and bump the version): the checked-in file is what keeps every client byte-compatible.
//   ./node_modules/.bin/bun tests/vectors/make-envelope-v1.ts
import { bytesToHex } from "@noble/hashes/utils.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { identityFromPrivate, seal, type EnvelopeHeader } from "../../crypto/index.ts";

const fixed = (label: string) => sha256(new TextEncoder().encode(`chatterbox test vector: ${label}`));
const person = (name: string) => ({ name, dhPrivate: fixed(`${name} dh`), signPrivate: fixed(`${name} sign`) });
const people = [person("alice"), person("bob"), person("carol")];
const [alice, ...recipients] = people.map((p) => ({ name: p.name, keys: identityFromPrivate(p.dhPrivate, p.signPrivate) }));
const rng = [fixed("content key"), fixed("content nonce").subarray(0, 24), fixed("ephemeral key")];
const header: EnvelopeHeader = { v: 1, from: "alice", conv: "group:friends", cmid: "01J9ZK3Q7C8M2W5X4Y6V0B1N3P", sentAt: 1_700_000_000_000, kind: "text" };
const plaintext = "Hello, friends! This is the ChatterBox envelope v1 test vector. Café ☕ — exactly as sealed.";

let call = 0;
const envelope = seal({
  header,
  plaintext: new TextEncoder().encode(plaintext),
  sender: alice!.keys,
  recipients: recipients.map((r) => ({ name: r.name, dh: r.keys.dhPublic })),
  rng: () => rng[call++]!,
});

const vector = {
  description: "Envelope v1: alice seals one text to bob and carol. rng lists the outputs seal() asks for, in order: content key (32), content nonce (24), ephemeral X25519 secret (32).",
  sender: "alice",
  people: people.map((p, i) => ({
    name: p.name,
    dhPrivate: bytesToHex(p.dhPrivate),
    signPrivate: bytesToHex(p.signPrivate),
    dhPublic: bytesToHex([alice, ...recipients][i]!.keys.dhPublic),
    signPublic: bytesToHex([alice, ...recipients][i]!.keys.signPublic),
  })),
  recipients: recipients.map((r) => r.name),
  rng: rng.map(bytesToHex),
  header,
  plaintext,
  envelope: bytesToHex(envelope),
};
await Bun.write(new URL("envelope-v1.json", import.meta.url), JSON.stringify(vector, null, 2) + "\n");
console.log(`envelope-v1.json: ${envelope.length} bytes`);
