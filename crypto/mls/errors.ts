// The MLS failures a client must act on. Callers and tests branch on `reason`; the message is what a user sees.

export const MlsReasons = {
  E_MLS_DEVICE_LIST: "The device list is not signed by the account's identity key, or is older than one already seen",
  E_MLS_UNTRUSTED_MEMBER: "A member's device is not in its account's signed device list",
  E_MLS_REPLAY: "The message was already received, or arrived out of order",
  E_MLS_STALE_COMMIT: "The membership change was made for an epoch that has already moved on",
  E_MLS_NOT_ADMIN: "The membership change was committed by a member the group's own admin list does not name",
  E_MLS_ORIGIN: "The group's first admin list is not signed by its creator's identity key for this group",
  E_MLS_EPOCH: "The message belongs to an epoch whose keys are gone",
  E_MLS_BEFORE_JOIN: "The message was sent before this device joined the conversation's MLS group: MLS keys are not shared back in time",
  E_MLS_NO_GROUP: "This device holds no MLS group for the conversation: its welcome was refused or lost",
  E_MLS_DECRYPT: "The MLS message could not be decrypted or verified",
  E_MLS_FORMAT: "The MLS data is malformed",
  E_MLS_REMOVED: "This device is no longer a member of the conversation",
  E_MLS_OWN: "The message was sent by this device, which cannot decrypt its own messages",
} as const;

export type MlsReason = keyof typeof MlsReasons;

export class MlsError extends Error {
  override readonly name = "MlsError";
  constructor(
    readonly reason: MlsReason,
    message: string = MlsReasons[reason],
  ) {
    super(message);
  }
}
