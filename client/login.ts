/**
 * Logging a device in on a fresh link: with its saved token where it has one
 * (and its keys), else with the password, which on a new device also restores
 * the identity keys from the server's backup. A resumed session does not have
 * the password checked by the server, so the device checks a given one itself.
 */
import type { IdentityKeys } from "../crypto/keys";
import type { Link } from "../net/link";
import { ChatError } from "../protocol/errors";
import { loginKeys, passwordCheck, passwordMatches, restoreIdentity } from "./account";
import type { ConnectionOptions } from "./options";
import type { LocalStore } from "./store";

/** What the login keeps on the device: its token, its password check, its device id and its keys. */
export type LoginStore = Pick<LocalStore, "get" | "set" | "device" | "identity" | "saveIdentity">;

/** What the login needs around it. */
export interface LoginParts {
  /** The user, the password (asked only when needed), whether it was given, the device's name, and where news goes. */
  options: Pick<ConnectionOptions, "user" | "password" | "passwordGiven" | "deviceName" | "onStatus">;
  store: LoginStore;
  /** A password login gives the wrapping key (pins are kept under a key derived from it). */
  passwordLogin(wrapKey: Uint8Array): void;
}

export class DeviceLogin {
  private identity?: IdentityKeys;
  private saidResumed = false;

  constructor(private readonly parts: LoginParts) {
    this.identity = parts.store.identity();
  }

  /** This device's identity keys (restored from the server's backup at a password login on a new device). */
  keys(): IdentityKeys {
    if (!this.identity) throw new ChatError("E_NO_KEYS");
    return this.identity;
  }

  /** Logs in on `link`; the server's reply (its id, a new token, cursors, settings, pins). */
  async login(link: Link): Promise<Record<string, unknown>> {
    const { options, store } = this.parts;
    const user = options.user;
    const token = store.get("token");
    if (token && this.identity) {
      try {
        const reply = await link.request("resume", { user, token });
        if (options.passwordGiven && !this.saidResumed) await this.checkGivenPassword();
        return reply;
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
        store.set("token", undefined);
      }
    }
    const { authKey, wrapKey, salt, kdf } = await loginKeys(link, user, await options.password());
    const reply = await link.request("login", { user, auth: authKey, device: store.device(options.deviceName) });
    store.set("password.check", passwordCheck(authKey, salt, kdf));
    if (!this.identity) {
      this.identity = restoreIdentity(reply.backup as Uint8Array, wrapKey, user);
      store.saveIdentity(this.identity);
    }
    this.parts.passwordLogin(wrapKey);
    return reply;
  }

  /**
   * A saved session was resumed although a password was given: the server did
   * not check it, so the device does, against what it kept at its last
   * password login, and says so (once) when it is wrong.
   */
  private async checkGivenPassword(): Promise<void> {
    this.saidResumed = true;
    const { options, store } = this.parts;
    const check = store.get("password.check");
    if (!check) return void options.onStatus?.("resumed this device's saved session: the password given was not checked");
    if (!passwordMatches(check, await options.password())) {
      options.onStatus?.("WARNING: the password given is not this account's; this device's saved session was used instead (change it with chatterbox passwd if it was forgotten)");
    }
  }
}
