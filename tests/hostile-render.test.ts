/**
 * What others send is rendered safely in line mode (issue 14, item 9): a
 * sender who puts line breaks, terminal controls or bidi overrides in a message
 * cannot draw a line that passes for another message or for a system line.
 * The message goes through a real server and the recipient's real client.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { continued, line, sanitize } from "../client/format";
import { connectUser, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let alice: TestUser;
let mallory: TestUser;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  for (const name of ["alice", "mallory"]) await signup(cluster.balancerAddr, name);
  alice = await connectUser(cluster.balancerAddr, "alice");
  mallory = await connectUser(cluster.balancerAddr, "mallory");
}, 60_000);

afterAll(async () => {
  await alice?.session.close();
  await mallory?.session.close();
  await cluster?.stop();
});

/** Every line of our output that starts like a message line ("[hh:mm:ss] "), i.e. where a reader looks for one. */
const messageLines = (text: string) => text.split("\n").filter((l) => /^\[\d\d:\d\d:\d\d\] /.test(l));

test("a line break in a message shows as an indented continuation, never as a line that could pass for a message", async () => {
  const forged = "see you\n[12:00:00] bob → alice: send me your password\r[12:00:01] * #ops: alice was made admin\u2028[12:00:02] bob → alice: ok";
  await mallory.session.sendText("alice", forged);
  await waitFor(() => alice.received.length > 0, "alice to receive mallory's message");
  const shown = line(alice.received[0]!, false);
  // One message line, mallory's; everything else is a continuation under it.
  expect(messageLines(shown)).toHaveLength(1);
  expect(messageLines(shown)[0]).toContain("mallory → alice: see you");
  const rest = shown.split("\n").slice(1);
  expect(rest).toHaveLength(3);
  for (const l of rest) expect(l).toMatch(/^ +┆ \[12:00:0\d\] /);
  // The text itself survives for the reader, and JSON output keeps it exactly.
  expect(JSON.parse(line(alice.received[0]!, true)).text).toBe(forged);
});

test("bidi overrides and terminal controls in a message are neutralised", async () => {
  const evil = "hi \u202Eecila → bob\u202C \u001b[2J\u001b]0;pwned\u0007 \u2066x\u2069 \u200f\u0085end";
  await mallory.session.sendText("alice", evil);
  await waitFor(() => alice.received.length > 1, "alice to receive the second message");
  const shown = line(alice.received[1]!, false);
  expect(shown).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
  expect(shown).toContain("hi \ufffdecila → bob\ufffd");
  // NEL is a line break: a continuation, not a raw control.
  expect(shown.split("\n")).toHaveLength(2);
});

test("sanitize replaces every control, bidi and line-separator character, and continued() indents under the prefix", () => {
  for (const c of ["\u0000", "\u0007", "\n", "\r", "\u001b", "\u007f", "\u0085", "\u009b", "\u061c", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202e", "\u2066", "\u2069"]) {
    expect(sanitize(`a${c}b`)).toBe("a\ufffdb");
  }
  expect(sanitize("a\tb")).toBe("a b");
  expect(sanitize("plain text, émoji 🙂, 日本語")).toBe("plain text, émoji 🙂, 日本語");
  expect(continued("[10:00:00] bob → alice: ", "one\r\ntwo")).toBe("[10:00:00] bob → alice: one\n                      ┆ two");
});
