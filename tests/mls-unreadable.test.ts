/**
 * Why a device cannot read an MLS message, from where it stands in the
 * conversation's group: its join point is the position of the group row's
 * first save (the welcome it took in, or the commit that made the group),
 * kept in the device's store (a real SQLite one here) past every later save;
 * before it is E_MLS_BEFORE_JOIN, after it a warning.
 */
import { expect, test } from "bun:test";
import { MlsLocal } from "../client/mls/local";
import { unreadable } from "../client/mls/unreadable";
import { LocalStore } from "../client/store";

const code = (seq: number, at: Parameters<typeof unreadable>[1]) => unreadable(seq, at).code;

test("before the join point is E_MLS_BEFORE_JOIN; after it, a device in the group that kept no copy is E_MLS_EPOCH, one after a refused welcome E_MLS_NO_GROUP", () => {
  // joined at 10, holding the group
  expect(code(9, { joined: 10, held: true })).toBe("E_MLS_BEFORE_JOIN");
  expect(code(10, { joined: 10, held: true })).toBe("E_MLS_EPOCH");
  expect(code(11, { joined: 10, held: true })).toBe("E_MLS_EPOCH");
  // never in the group, no welcome refused: everything so far came before it joined
  expect(code(1, { held: false })).toBe("E_MLS_BEFORE_JOIN");
  expect(code(500, { held: false })).toBe("E_MLS_BEFORE_JOIN");
  // a welcome refused at 20: what came after it is a warning (it should have been read), what came before is not
  expect(code(19, { refused: 20, held: false })).toBe("E_MLS_BEFORE_JOIN");
  expect(code(21, { refused: 20, held: false })).toBe("E_MLS_NO_GROUP");
  // a group held with no join point (joined before it was kept): today's code, the side of the join being unknown
  expect(code(1, { held: true })).toBe("E_MLS_EPOCH");
  // joined, and no group held any more: a warning
  expect(code(11, { joined: 10, held: false })).toBe("E_MLS_NO_GROUP");
  expect(unreadable(9, { joined: 10, held: true }).reason).toContain("sent before this device joined");
});

test("the join point is the group row's first save, and stays as the row moves on; a refusal is kept once", () => {
  const store = new LocalStore("unreadable-test", false);
  try {
    const local = new MlsLocal(store.db, store);
    const counters = { sent: 0, updatedAt: 0 };
    expect(local.joinPoint("group:g")).toEqual({ held: false });
    expect(local.saveGroup("group:g", new Uint8Array([1]), undefined, 42, counters)).toBe(true);
    expect(local.joinPoint("group:g")).toEqual({ joined: 42, held: true });
    // later messages move the row's position, not the join point
    expect(local.saveGroup("group:g", new Uint8Array([2]), local.version("group:g"), 90, counters)).toBe(true);
    expect(local.group("group:g")!.seq).toBe(90);
    expect(local.joinPoint("group:g")).toEqual({ joined: 42, held: true });
    // a second first save (another process lost the race to make the row) changes nothing
    expect(local.saveGroup("group:g", new Uint8Array([3]), undefined, 95, counters)).toBe(false);
    expect(local.joinPoint("group:g").joined).toBe(42);

    local.refusedAt("group:h", 7);
    local.refusedAt("group:h", 9);
    expect(local.joinPoint("group:h")).toEqual({ refused: 7, held: false });
  } finally {
    store.close();
  }
});
