/**
 * The chat behind any view, without a terminal: runChat drives a real
 * session against a real cluster, and a recording view stands in for the
 * screen. What the view is told, and what it may ask, is the interface.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { runChat } from "../client/chat";
import type { ReceiptEvent, Received, TypingEvent } from "../client/session";
import type { ChatView, Secrecy, Sending, Target, ViewActions } from "../client/view";
import { connectUser, PASSWORD, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;
const users: TestUser[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
}, 60_000);

afterAll(async () => {
  for (const u of users) await u.session.close().catch(() => {});
  await cluster?.stop();
});

/** A view that records what it is told and shows nothing; `showAll` decides whether it reports messages shown. */
class RecordingView implements ChatView {
  readonly json = false;
  actions!: ViewActions;
  readonly log: { kind: string; [k: string]: unknown }[] = [];
  constructor(private readonly showAll: boolean) {}
  open(actions: ViewActions) {
    this.actions = actions;
    this.log.push({ kind: "open" });
  }
  message(m: Received) {
    this.log.push({ kind: "message", text: m.text, from: m.from, seq: m.seq, conv: m.conv });
    if (this.showAll) this.actions.shown(m.conv, m.seq);
  }
  receipt(r: ReceiptEvent) {
    this.log.push({ kind: "receipt", ...r });
  }
  read(conv: number, seq: number) {
    this.log.push({ kind: "read", conv, seq });
  }
  typing(t: TypingEvent) {
    this.log.push({ kind: "typing", ...t });
  }
  status(text: string) {
    this.log.push({ kind: "status", text });
  }
  secrecy(s: Secrecy) {
    this.log.push({ kind: "secrecy", ...s });
  }
  event(type: string, fields: Record<string, unknown>) {
    this.log.push({ kind: "event", type, ...fields });
  }
  pending(target: Target, text: string): Sending {
    this.log.push({ kind: "pending", target, text });
    return {
      stored: (r) => this.log.push({ kind: "stored", text, seq: r.seq }),
      failed: (e) => this.log.push({ kind: "failed", text, message: e.message }),
    };
  }
  switched(target: Target, conv: number | undefined) {
    this.log.push({ kind: "switched", target, conv });
  }
  ended(error: Error) {
    this.log.push({ kind: "ended", message: error.message });
  }
  fileLine(text: string) {
    this.log.push({ kind: "file", text });
  }
  close() {}
  of(kind: string) {
    return this.log.filter((l) => l.kind === kind);
  }
}

async function start(name: string, view: RecordingView): Promise<{ done: Promise<void> }> {
  const done = runChat({ balancer: cluster.balancerAddr, user: name, password: async () => PASSWORD }, view);
  await waitFor(() => view.actions !== undefined, "the view to open");
  return { done };
}

async function person(name: string): Promise<TestUser> {
  await signup(cluster.balancerAddr, name);
  const u = await connectUser(cluster.balancerAddr, name);
  users.push(u);
  return u;
}

test("what waited is told after 'logged in', in order; a view that shows it moves the read marker", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = await person(uniqueName("bob"));
  for (const text of ["one", "two", "three"]) await bob.session.sendText(alice, text);
  const view = new RecordingView(true);
  const { done } = await start(alice, view);
  await waitFor(() => view.of("message").length === 3, "the three messages");
  const loggedIn = view.log.findIndex((l) => l.kind === "event" && String(l.text).startsWith("logged in"));
  expect(loggedIn).toBeGreaterThanOrEqual(0);
  expect(loggedIn).toBeLessThan(view.log.findIndex((l) => l.kind === "message"));
  expect(view.of("message").map((m) => m.text)).toEqual(["one", "two", "three"]);
  // Shown: bob hears that alice read up to the last.
  const conv = view.of("message")[2]!.conv as number;
  for (let i = 0; ((await bob.session.receipts(conv)).find((r) => r.user === alice)?.read ?? 0) < 3; i++) {
    expect(i).toBeLessThan(150);
    await Bun.sleep(100);
  }
  view.actions.quit();
  await done;
});

test("a view that does not show a message leaves it unread", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = await person(uniqueName("bob"));
  const view = new RecordingView(false);
  const { done } = await start(alice, view);
  await bob.session.sendText(alice, "not on screen");
  await waitFor(() => view.of("message").length === 1, "the message");
  await Bun.sleep(500);
  const conv = view.of("message")[0]!.conv as number;
  expect((await bob.session.receipts(conv)).find((r) => r.user === alice)?.read ?? 0).toBe(0);
  view.actions.quit();
  await done;
});

test("switching checks the name: /dm of no such user is an error and nothing switches; a real one switches with its conversation", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = await person(uniqueName("bob"));
  const view = new RecordingView(true);
  const { done } = await start(alice, view);
  view.actions.submit("/dm nosuchuser1");
  await waitFor(() => view.of("event").some((e) => e.type === "error"), "the error");
  expect(view.of("event").find((e) => e.type === "error")!.code).toBe("E_NO_SUCH_USER");
  expect(view.of("switched")).toHaveLength(0);
  await view.actions.switchTo({ kind: "dm", name: bob.name });
  await waitFor(() => view.of("switched").length === 1, "the switch");
  expect(view.of("switched")[0]!.conv).toBeGreaterThan(0);
  // A send is pending, then stored with its place in the conversation.
  view.actions.submit("hello bob");
  view.actions.submit("   ");
  await waitFor(() => view.of("stored").length === 1, "the send to be stored");
  expect(view.of("pending").map((p) => p.text)).toEqual(["hello bob"]);
  expect(view.of("stored")[0]!.seq).toBe(1);
  await waitFor(() => bob.received.some((m) => m.text === "hello bob"), "bob to receive it");
  view.actions.quit();
  await done;
});

test("older history comes from the device, then the server, oldest first", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = await person(uniqueName("bob"));
  for (let i = 1; i <= 12; i++) await bob.session.sendText(alice, `m${i}`);
  const view = new RecordingView(true);
  const { done } = await start(alice, view);
  await waitFor(() => view.of("message").length === 12, "the replay");
  const older = await view.actions.older({ kind: "dm", name: bob.name }, 11, 5);
  expect(older.map((m) => m.text)).toEqual(["m6", "m7", "m8", "m9", "m10"]);
  const found = view.actions.search("m7");
  expect(found.map((m) => m.text)).toEqual(["m7"]);
  const convs = await view.actions.conversations();
  expect(convs.map((c) => c.target)).toContainEqual({ kind: "dm", name: bob.name });
  view.actions.quit();
  await done;
});
