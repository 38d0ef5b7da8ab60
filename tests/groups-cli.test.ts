/**
 * The scriptable client drives groups: `chatterbox chat --json` reads commands
 * from stdin and prints one JSON event a line, and what it does reaches the
 * other members like anything a person types.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectUser, PASSWORD, ROOT, signup, startCluster, waitFor, type Cluster } from "./support/cluster";

// Real PostgreSQL, real sockets, several servers: give slow machines room.
setDefaultTimeout(60_000);

let cluster: Cluster;
const home = mkdtempSync(join(tmpdir(), "chatterbox-groups-cli-"));

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  for (const name of ["alice", "bob"]) await signup(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(home, { recursive: true, force: true });
});

/** Runs `chatterbox chat --json` as alice with these lines on stdin; returns the events it printed. */
async function chatScript(user: string, lines: string[]): Promise<{ events: Record<string, any>[]; code: number; stderr: string }> {
  await using proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--user", user, "--json", "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  proc.stdin.write(lines.map((l) => `${l}\n`).join(""));
  await proc.stdin.end();
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { events: stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l)), code, stderr };
}

test("chat --json creates a group, talks in it, lists groups and members, and bob receives the line and the message", async () => {
  const bob = await connectUser(cluster.balancerAddr, "bob");
  const { events, code, stderr } = await chatScript("alice", ["/group create friends bob", "hello", "/groups", "/group members friends"]);
  expect({ code, stderr }).toEqual({ code: 0, stderr: "" });

  expect(events.filter((e) => e.type === "error")).toEqual([]);
  expect(events.find((e) => e.type === "status" && e.text.includes("friends"))).toEqual({ type: "status", text: "talking in #friends" });
  const sent = events.find((e) => e.type === "sent");
  expect(sent).toMatchObject({ type: "sent", group: "friends", text: "hello" });
  expect(typeof sent!.id).toBe("number");
  const groups = events.find((e) => e.type === "groups");
  expect(groups!.groups).toEqual([{ name: "friends", conv: expect.any(Number), role: "admin", members: 2, unread: 0 }]);
  const members = events.find((e) => e.type === "members");
  expect(members!.group).toBe("friends");
  expect(members!.members.map((m: { name: string; role: string }) => [m.name, m.role])).toEqual([
    ["alice", "admin"],
    ["bob", "member"],
  ]);
  // The events come in the order of the commands.
  expect(events.map((e) => e.type).filter((t) => ["sent", "groups", "members"].includes(t))).toEqual(["sent", "groups", "members"]);

  await waitFor(() => bob.received.length === 2, "bob to receive the system line and the message");
  expect(bob.received.map((m) => [m.kind, m.text])).toEqual([
    ["system", "alice created friends with you"],
    ["chat", "hello"],
  ]);
  expect(bob.received[1]!.verified).toBe(true);
  expect(bob.received[1]!.id).toBe(sent!.id);
  await bob.session.close();
}, 60_000);

test("chat --json reports a refused group command as an error event with its code and goes on", async () => {
  const { events, code } = await chatScript("bob", ["/group add friends alice", "/group create Bad!", "/g nowhere", "/groups"]);
  expect(code).toBe(0);
  expect(events.filter((e) => e.type === "error").map((e) => e.code)).toEqual(["E_NOT_ADMIN", "E_INVALID_NAME", "E_NO_SUCH_GROUP"]);
  expect(events.find((e) => e.type === "groups")!.groups.map((g: { name: string; unread: number }) => [g.name, g.unread])).toEqual([["friends", 0]]);
}, 60_000);

/** Runs a one-shot command of the CLI with the test environment. */
async function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  await using proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

test("send --group, /to GROUP and history --group reach and read the group from the command line", async () => {
  const sent = await cli(["send", "--user", "bob", "--group", "friends", "from the command line"]);
  expect({ code: sent.code, stderr: sent.stderr }).toEqual({ code: 0, stderr: "" });
  const { events } = await chatScript("alice", ["/to friends said with /to"]);
  expect(events.find((e) => e.type === "sent")).toMatchObject({ group: "friends", text: "said with /to" });
  const history = await cli(["history", "--user", "bob", "--group", "friends", "--json"]);
  expect(history.code).toBe(0);
  const lines = history.stdout.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((l) => [l.type, l.from, l.text])).toEqual([
    ["system", "alice", "alice created friends with you"],
    ["message", "alice", "hello"],
    ["message", "bob", "from the command line"],
    ["message", "alice", "said with /to"],
  ]);
  expect(lines.filter((l) => l.type === "message").every((l) => l.verified && l.group === "friends")).toBe(true);
}, 60_000);
