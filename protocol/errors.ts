/**
 * The one error type of ChatterBox. Its code is the wire protocol's error code,
 * so a server refusal, a test assertion and the client's message name the same thing.
 */

export const ErrorCodes = {
  E_BAD_FRAME: "The frame could not be decoded",
  E_FRAME_TOO_LARGE: "The frame is larger than the protocol allows",
  E_VERSION: "Unsupported protocol version",
  E_HELLO_FIRST: "The first frame must be hello",
  E_UNKNOWN_OP: "Unknown request",
  E_BAD_REQUEST: "The request is malformed",
  E_NOT_LOGGED_IN: "Log in first",
  E_ALREADY_LOGGED_IN: "This connection is already logged in",
  E_INVALID_NAME: "Names are 1 to 32 characters from a-z, 0-9, '_', '.' and '-', starting with a letter, digit or '_'",
  E_WEAK_PASSWORD: "Passwords have at least 8 characters",
  E_NAME_TAKEN: "That name is taken",
  E_NO_SUCH_USER: "No such user",
  E_AUTH: "Wrong password",
  E_RATE_LIMITED: "Too many attempts; wait and try again",
  E_TOKEN: "The resume token is not valid; log in with the password",
  E_SESSION_REPLACED: "Logged in elsewhere",
  E_LOGIN_TIMEOUT: "No login within the time allowed",
  E_SLOW_CONSUMER: "The connection could not keep up with its messages",
  E_MESSAGE_TOO_LARGE: "The message is too large",
  E_DUPLICATE: "That client message id was used for another conversation",
  E_TOO_MANY_DEVICES: "This account has as many devices as the server allows: revoke one first",
  E_NO_SUCH_DEVICE: "No such device",
  E_DEVICE_REVOKED: "This device was revoked: log in again with the password",
  E_CONFLICT: "Someone else changed it first: read it again and retry",
  E_NO_SERVER: "No chat server is available",
  E_NO_SUCH_GROUP: "No such group",
  E_FILE_TOO_LARGE: "The file is larger than this server accepts",
  E_QUOTA: "Your files would pass your storage quota: wait for old ones to expire",
  E_NO_SUCH_FILE: "No such file, or not one you may read",
  E_FILE_INCOMPLETE: "The file's upload is not complete",
  E_FILE_CORRUPT: "The file failed its integrity check; nothing was saved",
  E_NOT_MEMBER: "Only members of the group can do that",
  E_NOT_ADMIN: "Only the group's admins can do that",
  E_GROUP_FULL: "The group has as many members as this server allows",
  E_STALE_MEMBERS: "The group's membership changed: seal the message again for the current members",
  E_MLS_STALE_COMMIT: "Another membership change of this MLS epoch came first: make the commit again on the new epoch",
  E_MLS_STALE_EPOCH: "The MLS message was encrypted for an epoch the conversation has left: take in its newer commits and send it again",
  E_MLS_DEVICE_LIST: "The device list is not signed by the account's identity key, or is not newer than the one held",
  E_KEY_CHANGED: "The contact's identity key changed: compare safety numbers with /verify, then /trust them",
  E_NO_KEYS: "This device has no identity keys for the account: log in with the password",
  E_UNAVAILABLE: "The service is unavailable; try again",
  E_SHUTDOWN: "The server is shutting down",
  E_INTERNAL: "Internal server error",
  E_TIMEOUT: "No answer in time",
  E_CLOSED: "The connection closed",
  E_TLS: "The other end's certificate is not trusted, or is not for the address called",
  E_CA_CHANGED: "The cluster's certificate authority is not the one this device pinned",
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ErrorCodes, value);
}

export class ChatError extends Error {
  override readonly name = "ChatError";
  constructor(
    readonly code: ErrorCode,
    message: string = ErrorCodes[code],
    /** With E_RATE_LIMITED: how long to wait before trying again (on the wire as `retryAfterMs`). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Whether a client should try again later rather than give up. */
export function isTemporary(code: ErrorCode): boolean {
  return (
    code === "E_UNAVAILABLE" ||
    code === "E_SHUTDOWN" ||
    code === "E_NO_SERVER" ||
    code === "E_TIMEOUT" ||
    code === "E_CLOSED" ||
    code === "E_INTERNAL" ||
    code === "E_SLOW_CONSUMER"
  );
}
