/**
 * A received file's name is the sender's to choose, so it is hostile until
 * made safe: whatever it says (../../etc/passwd, slashes, NUL, terminal
 * escapes, 300 bytes, a name already taken), the file lands inside
 * downloads/<sender>/ under a plain name and never over an existing file.
 * The end-to-end tests send names no real path could have, sealed by a
 * sender who chose them (the real client would send basename(path)).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { dmLabel } from "../client/e2e";
import { line } from "../client/format";
import type { Received } from "../client/session";
import { upload } from "../client/files";
import type { Progress } from "../client/progress";
import { claimPath, safeName } from "../client/safe-name";
import { home, PASSWORD, ROOT, signup, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startFilePair, stopFilePair, type FilePair } from "./support/files";

const SILENT: Progress = { update() {}, end() {} };

const HOSTILE: Record<string, string> = {
  "climbs out of the folder": "../../etc/passwd",
  "names a path": "a/b/c.txt",
  "is an absolute path": "/etc/shadow",
  "uses Windows separators": "..\\..\\Windows\\win.ini",
  "is ..": "..",
  "is .": ".",
  "is empty": "",
  "ends in a separator": "folder/",
  "holds a NUL": "nul\u0000byte.txt",
  "holds terminal escapes": "ctrl\u0007\u001b[2J\u001b]0;pwned\u0007chars\r\n.txt",
  "holds C1 controls": "csi\u009b31mred\u0085.txt",
  "is a hidden file": ".bashrc",
  "is only controls": "\u0001\u0002\u0003",
  "is 300 ASCII bytes": `${"x".repeat(296)}.txt`,
  "is 300 bytes of two-byte characters": `${"é".repeat(148)}.png`,
  "is 300 bytes of emoji": `${"😀".repeat(74)}.gif`,
};

/** What a safe name is, whatever it came from. */
function expectSafe(name: string): void {
  expect(name.length).toBeGreaterThan(0);
  expect(name).not.toMatch(/[/\\]/);
  expect(name).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  expect(name === "." || name === "..").toBe(false);
  expect(name.startsWith(".")).toBe(false);
  expect(Buffer.byteLength(name)).toBeLessThanOrEqual(200);
  // Whole characters only: no lone surrogate left by cutting an emoji in half.
  expect(Buffer.from(name).toString()).toBe(name);
  expect(name).not.toMatch(/[\ud800-\udfff]/u);
}

describe("safeName", () => {
  for (const [what, name] of Object.entries(HOSTILE)) {
    test(`a name that ${what} becomes a plain name inside the folder`, () => {
      const safe = safeName(name);
      expectSafe(safe);
      expect(dirname(resolve("/downloads/alice", safe))).toBe("/downloads/alice");
    });
  }

  test("keeps the last part of a path and drops the rest", () => {
    expect(safeName("../../etc/passwd")).toBe("passwd");
    expect(safeName("a/b/c.txt")).toBe("c.txt");
    expect(safeName("..\\..\\Windows\\win.ini")).toBe("win.ini");
  });

  test("names with nothing left become 'file'", () => {
    for (const name of ["..", ".", "", "folder/", "\u0001\u0002\u0003", "  ", "..."]) expect(safeName(name)).toBe("file");
  });

  test("drops control characters and keeps the rest of the name", () => {
    expect(safeName("nul\u0000byte.txt")).toBe("nulbyte.txt");
    expect(safeName("csi\u009b31mred\u0085.txt")).toBe("csi31mred.txt");
  });

  test("a long name is cut to 200 bytes, keeping its extension", () => {
    expect(safeName(`${"x".repeat(296)}.txt`)).toBe(`${"x".repeat(196)}.txt`);
    const accented = safeName(`${"é".repeat(148)}.png`);
    expect(accented).toBe(`${"é".repeat(98)}.png`);
    const emoji = safeName(`${"😀".repeat(74)}.gif`);
    expect(emoji.endsWith(".gif")).toBe(true);
    expect(Buffer.byteLength(emoji)).toBeLessThanOrEqual(200);
  });

  test("ordinary names are left alone", () => {
    for (const name of ["report.pdf", "Photo 2024-05-01.JPG", "naïve café.txt", "日本語.png", "a.b.c.tar.gz"]) expect(safeName(name)).toBe(name);
  });
});

describe("claimPath", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "chatterbox-claim-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a name already taken gets a numbered suffix before its extension, and the existing file is untouched", () => {
    writeFileSync(join(dir, "notes.txt"), "mine");
    expect(claimPath(dir, "notes.txt")).toBe(join(dir, "notes (1).txt"));
    expect(claimPath(dir, "notes.txt")).toBe(join(dir, "notes (2).txt"));
    expect(readFileSync(join(dir, "notes.txt"), "utf8")).toBe("mine");
    // Each claim is a new empty file, made exclusively.
    expect(readFileSync(join(dir, "notes (1).txt"), "utf8")).toBe("");
  });

  test("a name without an extension is numbered at its end", () => {
    writeFileSync(join(dir, "README"), "mine");
    expect(claimPath(dir, "README")).toBe(join(dir, "README (1)"));
  });

  test("a symlink or a folder under the name is never written through", () => {
    const outside = join(dir, "outside.txt");
    writeFileSync(outside, "precious");
    mkdirSync(join(dir, "inbox"));
    symlinkSync(outside, join(dir, "inbox", "link.txt"));
    mkdirSync(join(dir, "inbox", "folder.txt"));
    expect(claimPath(join(dir, "inbox"), "link.txt")).toBe(join(dir, "inbox", "link (1).txt"));
    expect(claimPath(join(dir, "inbox"), "folder.txt")).toBe(join(dir, "inbox", "folder (1).txt"));
    expect(readFileSync(outside, "utf8")).toBe("precious");
    expect(lstatSync(join(dir, "inbox", "link.txt")).isSymbolicLink()).toBe(true);
  });
});

describe("end to end", () => {
  let cluster: Cluster;
  let alice: TestUser;
  let bob: TestUser;
  let dir: string;
  let downloads: string;
  let pair: FilePair | undefined;

  beforeAll(async () => {
    pair = await startFilePair("names", { servers: 2 });
    ({ cluster, dir, alice, bob } = pair);
    downloads = join(home(), bob.name, "downloads");
  }, 60_000);

  afterAll(() => stopFilePair(pair));

  /** Alice uploads `bytes` and sends `to` a file message that names it `name`: what sendFile does, with a name of her choosing. */
  async function sendNamed(to: string, name: string, bytes: Uint8Array): Promise<string> {
    const path = join(dir, randomUUID());
    writeFileSync(path, bytes);
    const sent = await upload(alice.session, path, { to }, SILENT);
    const meta = { ...sent.meta, name };
    const e2e = (alice.session as unknown as { e2e: { seal(r: string[], conv: string, cmid: string, c: unknown): Promise<Uint8Array> } }).e2e;
    const body = await e2e.seal([to], dmLabel(alice.name, to), sent.cmid, { kind: "file", file: meta });
    await alice.session.send({ to, cmid: sent.cmid, body });
    sent.done();
    return meta.id;
  }

  async function received(id: string): Promise<Received> {
    await waitFor(() => bob.received.some((m) => m.file?.id === id), "bob to receive the file message");
    return bob.received.find((m) => m.file?.id === id)!;
  }

  /** Bob gets a file named `name` from alice and saves it; returns where. */
  async function receiveAs(name: string, bytes: Uint8Array): Promise<string> {
    const message = await received(await sendNamed(bob.name, name, bytes));
    // The name arrives as sent: it is the recipient's client that makes it safe.
    expect(message.file!.name).toBe(name);
    return bob.session.fetchFile(message.file!, message.from);
  }

  for (const [what, name] of Object.entries(HOSTILE)) {
    test(`a file whose name ${what} is saved inside downloads/<sender>/, intact`, async () => {
      const bytes = randomBytes(1000);
      const saved = await receiveAs(name, bytes);
      expect(resolve(saved).startsWith(resolve(downloads, alice.name) + "/")).toBe(true);
      expect(dirname(resolve(saved))).toBe(resolve(downloads, alice.name));
      expectSafe(basename(saved));
      expect(new Uint8Array(readFileSync(saved))).toEqual(new Uint8Array(bytes));
    });
  }

  test("the same name sent twice gives two files, neither overwriting the other", async () => {
    const first = randomBytes(500);
    const second = randomBytes(700);
    const a = await receiveAs("twice.txt", first);
    const b = await receiveAs("twice.txt", second);
    expect(a).not.toBe(b);
    expect(basename(a)).toBe("twice.txt");
    expect(basename(b)).toBe("twice (1).txt");
    expect(new Uint8Array(readFileSync(a))).toEqual(new Uint8Array(first));
    expect(new Uint8Array(readFileSync(b))).toEqual(new Uint8Array(second));
  });

  test("a file named like one already in downloads/ leaves that one untouched", async () => {
    mkdirSync(join(downloads, alice.name), { recursive: true });
    writeFileSync(join(downloads, alice.name, "taxes.pdf"), "my own file");
    const saved = await receiveAs("taxes.pdf", randomBytes(300));
    expect(basename(saved)).toBe("taxes (1).pdf");
    expect(readFileSync(join(downloads, alice.name, "taxes.pdf"), "utf8")).toBe("my own file");
  });

  /** A name that, printed raw, would forge a line from someone else and clear the screen. */
  const FORGING = "report.txt\n[09:00:00] bank → you: confirm your password here\u001b[2J\u001b]0;owned\u0007";

  test("a file's name cannot add a line, or an escape sequence, to the line that shows the message", async () => {
    const message = await received(await sendNamed(bob.name, FORGING, randomBytes(100)));
    const shown = line(message, false);
    expect(shown).toContain("[file] report.txt");
    expect(shown).not.toContain("\n");
    expect(shown).not.toContain("\u001b");
  });

  test.skipIf(!Bun.which("script"))("on a terminal, `chatterbox inbox` shows a hostile file name without its newline or escape sequences", async () => {
    const carol = uniqueName("carol");
    await signup(cluster.balancerAddr, carol);
    await sendNamed(carol, FORGING, randomBytes(100));
    // script(1) gives the command a terminal, so the progress bar is drawn too.
    const command = [process.execPath, join(ROOT, "cli.ts"), "inbox", "--user", carol, "--balancer", cluster.balancerAddr].map((a) => `'${a}'`).join(" ");
    // A client home of its own: what it pins on first use is this cluster's CA, not another test's under a reused port.
    const cliHome = mkdtempSync(join(tmpdir(), "chatterbox-names-home-"));
    const proc = Bun.spawn(["script", "-qec", command, "/dev/null"], {
      env: { ...process.env, CHATTERBOX_HOME: cliHome, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1", TERM: "xterm" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const output = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    rmSync(cliHome, { recursive: true, force: true });
    expect(output).toContain("[file] report.txt");
    expect(output).toContain("saved to");
    // Neither the forged line nor the name's own escapes reach the terminal (the bar's own \r\x1b[2K may).
    expect(output).not.toMatch(/\n\[09:00:00\] bank/);
    expect(output).not.toContain("\u001b[2J");
    expect(output).not.toContain("\u001b]0;owned");
  });

  test("nothing was written anywhere but downloads/<sender>/", () => {
    const everything = readdirSync(join(home(), bob.name), { recursive: true, withFileTypes: true })
      .filter((e) => !e.isDirectory())
      .map((e) => join(e.parentPath, e.name));
    expect(everything.length).toBeGreaterThan(Object.keys(HOSTILE).length);
    expect(everything.filter((p) => dirname(p) !== join(downloads, alice.name))).toEqual([]);
    expect(existsSync(join(home(), "etc"))).toBe(false);
    expect(readdirSync(join(downloads, ".partial"))).toEqual([]);
  });
});
