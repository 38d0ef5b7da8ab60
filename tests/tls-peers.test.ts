/**
 * The peer handshake between servers: mutual TLS under the cluster CA, and a
 * challenge-response whose proofs cover both server ids and both nonces. A
 * proof recorded from one handshake is worth nothing in another, and one made
 * for another pair of servers cannot be spliced in.
 */
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Link } from "../net/link";
import { nonce, proof } from "../server/peer-proof";
import { startCluster, waitFor, type Cluster } from "./support/cluster";
import { refusal } from "./support/errors";
import { TEST_MEMBER, TEST_SECRET } from "./support/tls";

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
});
afterAll(async () => {
  await cluster.stop();
});

/** A peer's hello to server B, claiming to be A, with a certificate of the cluster. */
async function peerHello(callerNonce: Uint8Array, caller = cluster.servers[0]!.id) {
  let bye: string | undefined;
  const link = await Link.connect(cluster.servers[1]!.addr, {
    tls: TEST_MEMBER.tls,
    hello: { role: "peer", server: caller, nonce: callerNonce },
    onBye: (e) => (bye = e.code),
  });
  const h = { caller, callee: cluster.servers[1]!.id, callerNonce, calleeNonce: link.helloReply.nonce as Uint8Array };
  return { link, h, bye: () => bye };
}

test("a proof recorded from one peer handshake is refused in the next", async () => {
  const n = nonce();
  const first = await peerHello(n);
  const recorded = proof(TEST_SECRET, "connect", first.h);
  first.link.close();

  // Same caller nonce again: the server's fresh nonce makes the old proof worthless.
  const replay = await peerHello(n);
  expect(replay.h.calleeNonce).not.toEqual(first.h.calleeNonce);
  expect((await refusal(replay.link.request("peer.auth", { proof: recorded }))).code).toBe("E_AUTH");
  await waitFor(() => replay.link.closed, "the server to close the link");
  expect(replay.bye()).toBe("E_AUTH");
});

test("a proof spliced from a handshake with another server, or of the old unbound kind, is refused; the right one is accepted", async () => {
  const attempt = await peerHello(nonce());
  // Made for the same nonces, but for a handshake between A and some other server C.
  const spliced = proof(TEST_SECRET, "connect", { ...attempt.h, callee: "some-other-server" });
  expect((await refusal(attempt.link.request("peer.auth", { proof: spliced }))).code).toBe("E_AUTH");

  // What servers used to send: bound to the acceptor's nonce and the caller's id only.
  const old = await peerHello(nonce());
  const unbound = createHmac("sha256", TEST_SECRET).update(`chatterbox peer connect ${old.h.caller} `).update(old.h.calleeNonce).digest();
  expect((await refusal(old.link.request("peer.auth", { proof: new Uint8Array(unbound) }))).code).toBe("E_AUTH");

  // The check can pass: the proof for this very handshake is taken.
  const honest = await peerHello(nonce());
  await honest.link.request("peer.auth", { proof: proof(TEST_SECRET, "connect", honest.h) });
  expect(honest.link.closed).toBe(false);
  honest.link.close();
});

test("a peer without a certificate under the cluster CA is refused at hello", async () => {
  const error = await refusal(Link.connect(cluster.servers[1]!.addr, { hello: { role: "peer", server: cluster.servers[0]!.id, nonce: nonce() } }));
  expect(error.code).toBe("E_AUTH");
});
