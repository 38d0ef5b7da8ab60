/**
 * A conversation that stays on envelopes is not forward secret: the chat says
 * so, naming whose device has no MLS keys, once per conversation, and again
 * when that changes (here: the conversation moves to MLS). Through the real
 * line and JSON views, driven by runChat against a real cluster.
 */
import { beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { runChat } from "../client/chat";
import type { ChatView, ViewActions } from "../client/view";
import { JsonView } from "../client/views/json";
import { LineView } from "../client/views/line";
import type { Database } from "../db/connect";
import { mlsWorld } from "./support/mls-world";
import { connectPersistent, PASSWORD, signup, uniqueName, until, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(90_000);

let cluster: Cluster;
let db: Database;
const { open, home } = mlsWorld("mls-warning", 1, (c, d) => ((cluster = c), (db = d)));

beforeAll(() => {
  process.env.CHATTERBOX_HOME = home;
});

async function published(name: string): Promise<void> {
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id
                               join device_lists l on l.user_id = u.id where u.name = ${name} and k.last_resort`;
    return row!.n > 0;
  }, `${name} to publish its MLS device`);
}

/** A real view whose input is the test's, not stdin: every other call goes to the view itself. */
function driven(view: ChatView): { view: ChatView; actions: () => ViewActions | undefined } {
  let actions: ViewActions | undefined;
  const proxy = new Proxy(view, {
    get(target, prop) {
      if (prop === "open") return (a: ViewActions) => (actions = a);
      if (prop === "close") return () => {};
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { view: proxy, actions: () => actions };
}

async function chat(name: string, view: ChatView) {
  const d = driven(view);
  const done = runChat({ balancer: cluster.balancerAddr, user: name, password: async () => PASSWORD }, d.view);
  await waitFor(() => d.actions() !== undefined, "the view to open");
  return { actions: d.actions()!, done };
}

test("a conversation on envelopes is said to be not forward secret, with whose device has no MLS keys, once; and again when it moves to MLS", async () => {
  const [alice, erin, carol] = ["wa", "we", "wc"].map(uniqueName) as [string, string, string];
  for (const n of [alice, erin, carol]) await signup(cluster.balancerAddr, n);
  // carol's client runs without MLS: it publishes no device list and no key packages
  process.env.CHATTERBOX_MLS = "off";
  const carolOld = await connectPersistent(cluster.balancerAddr, home, carol).finally(() => delete process.env.CHATTERBOX_MLS);
  open.push(carolOld);

  const lines: string[] = [];
  const line = await chat(alice, new LineView(alice, false, (t) => lines.push(t)));
  const json: string[] = [];
  const jsonChat = await chat(erin, new JsonView((t) => json.push(t)));
  await published(alice);
  await published(erin);

  line.actions.submit(`/dm ${carol}`);
  line.actions.submit("hello carol");
  line.actions.submit("hello again");
  jsonChat.actions.submit(`/dm ${carol}`);
  jsonChat.actions.submit("hello from erin");
  await waitFor(() => carolOld.texts().includes("hello again") && carolOld.texts().includes("hello from erin"), "carol to read");

  const warnings = lines.filter((l) => l.includes("forward secret"));
  expect(warnings).toEqual([
    `* WARNING: messages in ${carol} are not forward secret (sealed to long-term keys, not MLS): ${carol} has published no MLS device list (no device of theirs runs a client with MLS yet)`,
  ]);
  const notices = json.map((t) => JSON.parse(t) as Record<string, unknown>).filter((o) => o.type === "secrecy");
  expect(notices.length).toBe(1);
  expect(notices[0]).toMatchObject({ to: carol, forwardSecret: false });
  expect(String(notices[0]!.reason)).toContain(carol);

  // carol's device now runs with MLS: she publishes, and her next message moves the DM to MLS
  await carolOld.session.close();
  const carolNew = await connectPersistent(cluster.balancerAddr, home, carol);
  open.push(carolNew);
  await published(carol);
  await carolNew.session.sendText(alice, "on mls now");
  await waitFor(() => lines.some((l) => l.includes("on mls now")), "alice to read carol");
  line.actions.submit("and back");
  await waitFor(() => carolNew.texts().includes("and back"), "carol to read alice");
  expect(lines.filter((l) => l.includes("forward secret"))).toEqual([...warnings, `* messages in ${carol} are forward secret again (MLS)`]);

  // a conversation on MLS from the start is not mentioned
  const bob = uniqueName("wb");
  await signup(cluster.balancerAddr, bob);
  const bobUser = await connectPersistent(cluster.balancerAddr, home, bob);
  open.push(bobUser);
  await published(bob);
  line.actions.submit(`/dm ${bob}`);
  line.actions.submit("hi bob");
  await waitFor(() => bobUser.texts().includes("hi bob"), "bob to read");
  expect(lines.filter((l) => l.includes("forward secret")).length).toBe(2);

  line.actions.quit();
  jsonChat.actions.quit();
  await Promise.all([line.done, jsonChat.done]);
});
