/**
 * Tells the person when a device they had not seen signs in as them, as
 * Signal and Matrix clients do: whoever has the password can make a device,
 * and it then receives every message sent from then on. At each login, and
 * when the server says the account had a password login (an event), this
 * device compares the account's devices with the ones it last saw, and names
 * each new one. A revoked device drops out of the list, so one that signs in
 * again is new again. The first look on a device only records what is there:
 * those devices were the person's before this one.
 *
 * The list is the server's (ChatDB's devices table): this guards against a
 * stolen password, not against the server itself, which could leave a device
 * out (SECURITY.md).
 */
import type { LocalStore } from "./store";

export interface OwnDevice {
  id: string;
  name: string;
  /** When the server first saw it (ms). */
  created: number;
  /** This device. */
  current: boolean;
}

export interface OwnDevicesParts {
  /** The account's devices now, as the server lists them. */
  list(): Promise<OwnDevice[]>;
  store: Pick<LocalStore, "get" | "set">;
  /** A device this one had not seen signed in as the user. */
  onNew(device: OwnDevice): void;
}

const SEEN = "devices.seen";

export class OwnDevices {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly parts: OwnDevicesParts) {}

  /** Looks again; a look asked for while one runs is made once after it. */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.look();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async look(): Promise<void> {
    const devices = await this.parts.list();
    const kept = this.parts.store.get(SEEN);
    const seen = new Set<string>(kept === undefined ? devices.map((d) => d.id) : (JSON.parse(kept) as string[]));
    for (const device of devices) if (!device.current && !seen.has(device.id)) this.parts.onNew(device);
    this.parts.store.set(SEEN, JSON.stringify(devices.map((d) => d.id)));
  }
}

/** What the views say about one. */
export function newDeviceLine(d: OwnDevice): string {
  const at = new Date(d.created).toLocaleString();
  return (
    `WARNING: a device you had not seen signed in as you: "${d.name}" (id ${d.id}, first seen ${at}). ` +
    `It receives your messages from now on. If it was not you: chatterbox devices revoke ${d.id}, then chatterbox passwd`
  );
}
