/**
 * Groups as the session keeps them (client/groups.ts): the membership is
 * asked once and remembered for sealing, asked again once it may have
 * changed, and members MLS has not confirmed are marked. The server and the
 * MLS client are functions here; tests/groups*.test.ts run real servers.
 */
import { expect, test } from "bun:test";
import { Groups } from "../client/groups";

function groups(unconfirmed: string[] = [], cannotAdd: string[] = []) {
  const requests: [string, Record<string, unknown>][] = [];
  let epoch = 0;
  const statuses: string[] = [];
  const part = new Groups({
    async request(op, args = {}) {
      requests.push([op, args]);
      if (op === "group.members") return { epoch: ++epoch, members: [{ name: "ann", role: "admin", since: 1 }, { name: "ben", role: "member", since: 2 }] };
      if (op === "groups") return args.after === undefined ? { groups: [{ name: "a" }], next: "a" } : args.after === "a" ? { groups: [{ name: "b" }], next: "b" } : { groups: [] };
      return {};
    },
    mls: {
      groupCreated: async () => {},
      groupAdded: async () => cannotAdd,
      unconfirmed: async (_g, names) => names.filter((n) => unconfirmed.includes(n)),
      groupRolesChanged: async () => true,
      unconfirmedAdmins: async () => [],
    },
    onStatus: (line) => statuses.push(line),
  });
  return { part, requests, statuses, ops: () => requests.map(([op]) => op) };
}

test("the membership is asked once, remembered for sealing, and asked again once forgotten or after an add", async () => {
  const { part, ops } = groups();
  expect((await part.current("team")).epoch).toBe(1);
  expect((await part.current("team")).epoch).toBe(1);
  part.forget("team");
  expect((await part.current("team")).epoch).toBe(2);
  await part.change("add", "team", ["cat"]);
  expect((await part.current("team")).epoch).toBe(3);
  expect(ops()).toEqual(["group.members", "group.members", "group.add", "group.members"]);
});

test("a member the server lists but no MLS commit added is marked unconfirmed; one MLS could not add is reported", async () => {
  const { part, statuses } = groups(["ben"], ["cat"]);
  const { members } = await part.members("team");
  expect(members.map((m) => [m.name, m.unconfirmed])).toEqual([
    ["ann", undefined],
    ["ben", true],
  ]);
  await part.change("add", "team", ["cat"]);
  expect(statuses).toEqual(["cat could not be added to #team's MLS group (a device of theirs has no MLS keys yet): they cannot read it"]);
});

test("admin calls go out as the protocol names them, and a paged list is read to its end", async () => {
  const { part, requests } = groups();
  await part.change("promote", "team", ["ben"]);
  await part.change("remove", "team", ["ben"]);
  await part.change("leave", "team");
  expect(requests).toEqual([
    ["group.promote", { group: "team", user: "ben" }],
    ["group.remove", { group: "team", users: ["ben"] }],
    ["group.leave", { group: "team" }],
  ]);
  expect((await part.list()).map((g) => g.name)).toEqual(["a", "b"]);
});
