import { expect, test } from "bun:test";
import {
  deriveKeys,
  generateIdentity,
  randomSalt,
  TEST_KDF,
  unknownUserSalt,
  unwrapIdentity,
  wrapIdentity,
} from "../crypto/index.ts";
import { reasonOf } from "./support/errors";

const salt = new Uint8Array(16).fill(7);

test("the same password and salt always derive the same keys", () => {
  expect(deriveKeys("correct horse", salt, TEST_KDF)).toEqual(deriveKeys("correct horse", salt, TEST_KDF));
});

test("a different salt derives different keys", () => {
  const other = new Uint8Array(16).fill(8);
  expect(deriveKeys("correct horse", other, TEST_KDF).authKey).not.toEqual(deriveKeys("correct horse", salt, TEST_KDF).authKey);
});

test("a different password derives different keys", () => {
  expect(deriveKeys("correct horsf", salt, TEST_KDF).wrapKey).not.toEqual(deriveKeys("correct horse", salt, TEST_KDF).wrapKey);
});

test("the key sent to the server is not the key that wraps the identity", () => {
  const { authKey, wrapKey } = deriveKeys("correct horse", salt, TEST_KDF);
  expect(authKey).not.toEqual(wrapKey);
});

test("a password typed in another Unicode form derives the same keys", () => {
  expect(deriveKeys("caf\u00e9", salt, TEST_KDF)).toEqual(deriveKeys("cafe\u0301", salt, TEST_KDF));
});

test("KDF parameters that would exhaust the client's memory are refused", () => {
  expect(() => deriveKeys("pw", salt, { alg: "scrypt", N: 2 ** 24, r: 8, p: 1 })).toThrow(TypeError);
});

test("the identity backup opens with the right password", () => {
  const keys = generateIdentity();
  const blob = wrapIdentity(keys, deriveKeys("correct horse", salt, TEST_KDF).wrapKey, "alice");
  expect(unwrapIdentity(blob, deriveKeys("correct horse", salt, TEST_KDF).wrapKey, "alice")).toEqual(keys);
});

test("the identity backup refuses the wrong password with E_WRONG_PASSWORD", () => {
  const blob = wrapIdentity(generateIdentity(), deriveKeys("correct horse", salt, TEST_KDF).wrapKey, "alice");
  const wrong = deriveKeys("battery staple", salt, TEST_KDF).wrapKey;
  expect(reasonOf(() => unwrapIdentity(blob, wrong, "alice"))).toBe("E_WRONG_PASSWORD");
});

test("a backup handed to another username does not open", () => {
  const { wrapKey } = deriveKeys("correct horse", salt, TEST_KDF);
  const blob = wrapIdentity(generateIdentity(), wrapKey, "alice");
  expect(reasonOf(() => unwrapIdentity(blob, wrapKey, "mallory"))).toBe("E_WRONG_PASSWORD");
});

test("a backup of the wrong size is malformed, not a wrong password", () => {
  const { wrapKey } = deriveKeys("correct horse", salt, TEST_KDF);
  expect(reasonOf(() => unwrapIdentity(new Uint8Array(50), wrapKey, "alice"))).toBe("E_FORMAT");
});

test("an unknown user's salt is 16 bytes and the same on every request", () => {
  const secret = new Uint8Array(32).fill(1);
  expect(unknownUserSalt(secret, "nobody")).toHaveLength(16);
  expect(unknownUserSalt(secret, "nobody")).toEqual(unknownUserSalt(secret, "nobody"));
});

test("unknown users get different salts from one another", () => {
  const secret = new Uint8Array(32).fill(1);
  expect(unknownUserSalt(secret, "nobody")).not.toEqual(unknownUserSalt(secret, "someone"));
});

test("an unknown user's salt depends on the server secret", () => {
  expect(unknownUserSalt(new Uint8Array(32).fill(1), "nobody")).not.toEqual(unknownUserSalt(new Uint8Array(32).fill(2), "nobody"));
});

test("random salts are 16 bytes and fresh each time", () => {
  expect(randomSalt()).toHaveLength(16);
  expect(randomSalt()).not.toEqual(randomSalt());
});
