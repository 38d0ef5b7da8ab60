/**
 * Membership lines: a system message's body comes from the server and is shown, never trusted. Whatever it
 * holds, the client shows a line and goes on; only a map of strings is put in words.
 */
import { expect, test } from "bun:test";
import { pack } from "msgpackr";
import { describeSystem, joinsMe } from "../client/system";
import type { WireMessage } from "../protocol/messages";

const line = (body: unknown): WireMessage => ({
  id: 1, conv: 1, seq: 1, from: "alice", to: "team", group: "team", kind: "system", at: 0, cmid: "c", body: pack(body),
});

test("a server's membership events read as sentences", () => {
  expect(describeSystem(line({ event: "created", actor: "alice", users: ["bob"] }), "bob")).toBe("alice created team with you");
  expect(describeSystem(line({ event: "added", actor: "alice", users: ["bob", "carol"] }), "carol")).toBe("alice added bob, you");
  expect(joinsMe(line({ event: "added", actor: "alice", users: ["bob"] }), "bob")).toBe(true);
  expect(joinsMe(line({ event: "removed", actor: "alice", users: ["bob"] }), "bob")).toBe(false);
});

test("a body that is not a map of strings is an unreadable change, not a crash", () => {
  for (const body of [7, "added", null, [1, 2], { event: 3 }, { event: "added", users: "bob" }, { event: "added", users: [1] }, { event: "left", actor: {} }]) {
    expect(describeSystem(line(body), "bob")).toBe("(an unreadable membership change)");
    expect(joinsMe(line(body), "bob")).toBe(false);
  }
  const garbage = { ...line(0), body: new Uint8Array([0xc1]) };
  expect(describeSystem(garbage, "bob")).toBe("(an unreadable membership change)");
});
