/**
 * Groups as the session sees them: the admin calls (create, add, remove,
 * promote, leave), the lists, and each group's membership as last asked, so
 * that a group message is sealed for its members without a round trip per
 * message. The cache is dropped whenever the membership may have changed (a
 * membership line arrives, an add, the server's E_STALE_MEMBERS).
 */
import type { MlsClient } from "./mls/client";
import { allPages, type Request } from "./pages";

export interface GroupInfo {
  name: string;
  conv: number;
  role: string;
  members: number;
  unread: number;
}

export interface MemberInfo {
  name: string;
  role: "admin" | "member";
  since: number;
  /** Listed by the server, but no admin's MLS commit added them: they cannot read the group. */
  unconfirmed?: true;
  /** Listed by the server as an admin, but the group's own MLS admin list does not name them: their adds and removals are refused. */
  adminUnconfirmed?: true;
}

export interface Membership {
  epoch: number;
  members: MemberInfo[];
}

/** What the groups need around them. */
export interface GroupParts {
  /** A request on the current link (admin calls are not retried: they are not idempotent). */
  request: Request;
  /** The device's MLS client: it commits the group's changes and says who it could not add. */
  mls: Pick<MlsClient, "groupCreated" | "groupAdded" | "unconfirmed" | "groupRolesChanged" | "unconfirmedAdmins">;
  onStatus?(line: string): void;
}

export class Groups {
  private readonly membership = new Map<string, Membership>();

  constructor(private readonly parts: GroupParts) {}

  async create(name: string, members: string[]): Promise<void> {
    await this.parts.request("group.create", { group: name, members: members.length > 0 ? members : undefined });
    await this.parts.mls.groupCreated(name);
  }

  async change(op: "add" | "remove" | "promote" | "leave", group: string, users: string[] = []): Promise<void> {
    if (op === "promote") await this.parts.request("group.promote", { group, user: users[0] });
    else if (op === "leave") await this.parts.request("group.leave", { group });
    else await this.parts.request(`group.${op}`, { group, users });
    this.membership.delete(group);
    if (op === "promote" || op === "remove") {
      // the group's own admin list (and leaves) follow, by this admin's device's commit
      if (!(await this.parts.mls.groupRolesChanged(group, op === "promote" ? { promote: users[0] } : { remove: users })))
        this.parts.onStatus?.(`#${group}'s own MLS admin list does not name you: the other members will not take this ${op} from your device`);
    }
    if (op !== "add") return;
    const left = await this.parts.mls.groupAdded(group, users);
    if (left.length > 0) this.parts.onStatus?.(`${left.join(", ")} could not be added to #${group}'s MLS group (a device of theirs has no MLS keys yet): they cannot read it`);
  }

  /** The membership as the server says now (and who of it MLS has not confirmed); remembered for sealing. */
  async members(group: string): Promise<Membership> {
    const reply = await this.parts.request("group.members", { group });
    const members = reply.members as MemberInfo[];
    const unconfirmed = new Set(await this.parts.mls.unconfirmed(group, members.map((m) => m.name)));
    for (const m of members) if (unconfirmed.has(m.name)) m.unconfirmed = true;
    const notAdmins = new Set(await this.parts.mls.unconfirmedAdmins(group, members.filter((m) => m.role === "admin").map((m) => m.name)));
    for (const m of members) if (notAdmins.has(m.name)) m.adminUnconfirmed = true;
    const membership = { epoch: reply.epoch as number, members };
    this.membership.set(group, membership);
    return membership;
  }

  /** The membership as last seen (asked only when not known): what a message is sealed for. */
  async current(group: string): Promise<Membership> {
    return this.membership.get(group) ?? (await this.members(group));
  }

  /** The membership may have changed: asked again before the next message is sealed. */
  forget(group: string): void {
    this.membership.delete(group);
  }

  async list(): Promise<GroupInfo[]> {
    return allPages(this.parts.request, "groups", "groups") as Promise<GroupInfo[]>;
  }
}
