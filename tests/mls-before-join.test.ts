/**
 * A new device of a member, through real servers: what the conversation's MLS
 * group carried before the device joined it is E_MLS_BEFORE_JOIN (forward
 * secrecy, told as one quiet line), whether it comes live before the device's
 * welcome or later from history; what comes after its welcome reads; and a
 * message after the join that the device cannot read is still a warning.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Database } from "../db/connect";
import { lines } from "../client/format";
import { ChatModel } from "../client/tui/model";
import { paneRows } from "../client/tui/render";
import { mlsWorld } from "./support/mls-world";
import { connectPersistent, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(90_000);

let db: Database;
let cluster: Cluster;
const { home, open, people } = mlsWorld("mls-before-join", 2, (c, d) => {
  cluster = c;
  db = d;
});

test("a member's new device: the group's messages from before its welcome are E_MLS_BEFORE_JOIN, live or from history; those after it read", async () => {
  const [alice, bob, carol] = await people("bja", "bjb", "bjc");
  const group = uniqueName("bj");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "one");
  await carol!.session.sendGroupText(group, "two");
  await waitFor(() => bob!.texts().includes("one") && bob!.texts().includes("two"), "bob to read both");

  // bob's laptop: another home, its own device and MLS key; in no MLS group yet
  const laptopHome = mkdtempSync(join(tmpdir(), "chatterbox-before-join-"));
  let closing: TestUser | undefined;
  try {
    const laptop = (closing = await connectPersistent(cluster.balancerAddr, laptopHome, bob!.name));
    process.env.CHATTERBOX_HOME = home;
    await until(async () => {
      const [row] = await db.sql`select count(*)::int as n from devices d join users u on u.id = d.user_id join key_packages k on k.device_id = d.id
                                 where u.name = ${bob!.name} and k.last_resort`;
      return row!.n === 2;
    }, "the laptop to publish");

    // carol is no admin and may add only her own account's devices: her message reaches the laptop, in order, before any welcome
    const three = await carol!.session.sendGroupText(group, "three, before the laptop joins");
    await waitFor(() => laptop.received.some((m) => m.seq === three.seq), "the laptop to be sent carol's message");
    expect(laptop.received.filter((m) => m.group === group && m.kind === "chat").map((m) => [m.text, m.verified, m.code])).toEqual([["", false, "E_MLS_BEFORE_JOIN"]]);

    // alice's device adds the laptop at her next message (a restarted client asks for device lists at once)
    await alice!.session.close();
    const alice2 = await connectPersistent(cluster.balancerAddr, home, alice!.name);
    open.push(alice2);
    await alice2.session.sendGroupText(group, "four, after it joined");
    await carol!.session.sendGroupText(group, "five");
    await waitFor(() => laptop.texts().includes("four, after it joined") && laptop.texts().includes("five"), "the laptop to read what came after its welcome");
    expect(laptop.received.filter((m) => m.text !== "").every((m) => m.verified)).toBe(true);

    // history: before the welcome's position (from the server, or the laptop's copy of what it could not read), and after
    const history = (await laptop.session.groupHistory(group)).filter((m) => m.kind === "chat");
    expect(history.map((m) => [m.text, m.code])).toEqual([
      ["", "E_MLS_BEFORE_JOIN"],
      ["", "E_MLS_BEFORE_JOIN"],
      ["", "E_MLS_BEFORE_JOIN"],
      ["four, after it joined", undefined],
      ["five", undefined],
    ]);
    // a person sees one quiet line for the three, in line mode and full screen; a script one object each, with its code
    const printed = lines(history, false, bob!.name);
    expect(printed).toHaveLength(3);
    expect(printed[0]).toContain(`#${group}: 3 earlier messages were sent before this device joined`);
    expect(printed.join("\n")).not.toContain("NOT SHOWN");
    expect(lines(history, true, bob!.name).map((l) => (JSON.parse(l) as { code?: string }).code)).toEqual(["E_MLS_BEFORE_JOIN", "E_MLS_BEFORE_JOIN", "E_MLS_BEFORE_JOIN", undefined, undefined]);
    const model = new ChatModel(bob!.name);
    const c = model.open({ kind: "group", name: group }, history[0]!.conv);
    for (const m of history) model.add(m);
    const rows = paneRows(model, c, 80).map((r) => r.map((s) => s.text).join(""));
    expect(rows.filter((r) => r.includes("earlier messages"))).toHaveLength(1);
    expect(rows.some((r) => r.includes("⚠"))).toBe(false);

    // a message after the join that the laptop kept no copy of (its copy gone) is a warning, not history from before it
    const five = history[4]!;
    const file = new Sqlite(join(laptopHome, bob!.name, "store.db"));
    file.query("delete from messages where conv = ? and seq = ?").run(five.conv, five.seq);
    file.close();
    const again = (await laptop.session.groupHistory(group)).filter((m) => m.kind === "chat");
    expect(again.map((m) => m.code)).toEqual(["E_MLS_BEFORE_JOIN", "E_MLS_BEFORE_JOIN", "E_MLS_BEFORE_JOIN", undefined, "E_MLS_EPOCH"]);
    expect(lines(again, false, bob!.name).at(-1)).toContain("NOT SHOWN");
  } finally {
    process.env.CHATTERBOX_HOME = home;
    await closing?.session.close().catch(() => {});
    rmSync(laptopHome, { recursive: true, force: true });
  }
});
