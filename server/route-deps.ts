/**
 * What the request table (server/requests.ts) uses of the server: its own
 * handlers' needs, and those of the tables it includes (accounts, user-level
 * state, files, MLS), each declared next to its handlers.
 */
import type { Log } from "../roles/logger";
import type { AuthDeps } from "./auth";
import type { Committer } from "./committer";
import type { ServerConfig } from "./context";
import type { CursorStore } from "./cursor-store";
import type { Delivery } from "./delivery";
import type { FileRouteDeps } from "./files";
import type { GroupStore } from "./group-store";
import type { Limits } from "./limits";
import type { MlsDeps } from "./mls-routes";
import type { Peers } from "./peers";
import type { Reads } from "./reads";
import type { Store } from "./store";
import type { UserRouteDeps } from "./user-routes";

export type RouteDeps = AuthDeps &
  UserRouteDeps &
  FileRouteDeps & {
    config: Pick<ServerConfig, "maxGroupMembers" | "maxFrame" | "maxBody">;
    store: Pick<Store, "settingsOf" | "publicKeys">;
    cursors: Pick<CursorStore, "deviceCursors" | "readMarkers">;
    groups: Pick<GroupStore, "create" | "change" | "members" | "of">;
    limits: Pick<Limits, "send" | "read" | "session" | "committed">;
    committer: Pick<Committer, "append">;
    delivery: Pick<Delivery, "deliver" | "flow">;
    /** History and fetch: from the read replica when it is caught up (server/reads.ts). */
    reads: Pick<Reads, "after" | "history">;
    /** Receipts keep each conversation's members for a moment: a membership change made here forgets them. */
    receipts: { forget(convId: number): void };
    peers: Pick<Peers, "broadcast">;
    keyPackages: MlsDeps["keyPackages"];
    mls: MlsDeps["mls"];
    log: Log;
  };
