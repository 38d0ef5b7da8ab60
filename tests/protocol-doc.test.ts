/**
 * PROTOCOL.md's version is the code's (issue 15: the document's hello frames
 * said v: 1 while servers accepted only 2): its title and every hello example
 * in it are read here and compared with PROTOCOL_VERSION.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROTOCOL_VERSION } from "../protocol/messages";

const doc = readFileSync(join(import.meta.dir, "..", "PROTOCOL.md"), "utf8");

test("PROTOCOL.md's title names the version the code speaks", () => {
  const title = /^# .*version (\d+)\s*$/m.exec(doc);
  expect(title).not.toBeNull();
  expect(Number(title![1])).toBe(PROTOCOL_VERSION);
});

test("every hello frame in PROTOCOL.md carries the version the code speaks", () => {
  const hellos = [...doc.matchAll(/Hello: `\{\s*v\s*:\s*(\d+)/g)].map((m) => Number(m[1]));
  // The client's and the balancer's hellos at least; a peer's too if it is written out.
  expect(hellos.length).toBeGreaterThanOrEqual(2);
  expect(hellos.every((v) => v === PROTOCOL_VERSION)).toBe(true);
  // Every frame written out in the document (`..., v:3, ...` too) names the same version.
  const anyV = [...doc.matchAll(/(?<![\w.])v\s*:\s*(\d+)/g)].map((m) => Number(m[1]));
  expect(anyV.length).toBeGreaterThanOrEqual(hellos.length + 2);
  expect(anyV.filter((v) => v !== PROTOCOL_VERSION)).toEqual([]);
});
