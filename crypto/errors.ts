// The failures a client must show to the user: a message or backup that cannot be trusted or read.
// Tests and callers branch on `reason`; the message is the sentence a user sees.

export const CryptoReasons = {
  E_DECRYPT: "The message could not be decrypted",
  E_SIGNATURE: "The message is not signed by the sender it names",
  E_WRONG_RECIPIENT: "The message was not addressed to you in this conversation",
  E_FORMAT: "The encrypted data is malformed",
  E_WRONG_PASSWORD: "Wrong password: the key backup could not be unlocked",
} as const;

export type CryptoReason = keyof typeof CryptoReasons;

export class CryptoError extends Error {
  override readonly name = "CryptoError";
  constructor(
    readonly reason: CryptoReason,
    message: string = CryptoReasons[reason],
  ) {
    super(message);
  }
}
