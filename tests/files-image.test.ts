/**
 * Images are told apart by their first bytes, and their size in pixels read
 * from the header (PNG, JPEG, GIF, WebP in its three forms), with no decoder:
 * the headers here are made by hand, byte by byte, from the formats' specs.
 * End to end, the recipient's message names the type and the dimensions.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dmLabel } from "../client/e2e";
import { upload } from "../client/files";
import { line, shown } from "../client/format";
import { sniff } from "../client/image";
import { waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startFilePair, stopFilePair, type FilePair } from "./support/files";

const be16 = (n: number) => [n >> 8, n & 255];
const le16 = (n: number) => [n & 255, n >> 8];
const be32 = (n: number) => [(n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
const le24 = (n: number) => [n & 255, (n >> 8) & 255, (n >> 16) & 255];
const le32 = (n: number) => [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255];
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
const bytes = (...parts: number[][]) => new Uint8Array(parts.flat());

/** Signature, then the IHDR chunk: width, height, bit depth 8, RGBA, and a CRC (not checked). */
function png(width: number, height: number): Uint8Array {
  return bytes([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], be32(13), ascii("IHDR"), be32(width), be32(height), [8, 6, 0, 0, 0], [0, 0, 0, 0]);
}

/** Logical screen descriptor: little-endian width and height. */
function gif(version: "87a" | "89a", width: number, height: number): Uint8Array {
  return bytes(ascii(`GIF${version}`), le16(width), le16(height), [0xf7, 0, 0]);
}

/** SOI, an APP0 (JFIF) segment, whatever `before` holds, then a start-of-frame with height before width. */
function jpeg(width: number, height: number, { sof = 0xc0, before = [] as number[][] } = {}): Uint8Array {
  const app0 = [0xff, 0xe0, ...be16(16), ...ascii("JFIF"), 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
  const frame = [0xff, sof, ...be16(17), 8, ...be16(height), ...be16(width), 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
  const scan = [0xff, 0xda, ...be16(12), 3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0];
  return bytes([0xff, 0xd8], app0, ...before, frame, scan);
}

/** A segment of some kind and length, as found before the frame: EXIF (APP1), quantisation (DQT), Huffman (DHT). */
function segment(marker: number, length: number): number[] {
  return [0xff, marker, ...be16(length), ...new Array(length - 2).fill(0x11)];
}

function riff(chunk: number[]): Uint8Array {
  return bytes(ascii("RIFF"), le32(chunk.length + 4), ascii("WEBP"), chunk);
}

/** Extended WebP: canvas width and height minus one, 24 bits each. */
function webpVP8X(width: number, height: number): Uint8Array {
  return riff([...ascii("VP8X"), ...le32(10), 0x10, 0, 0, 0, ...le24(width - 1), ...le24(height - 1)]);
}

/** Lossless WebP: signature 0x2f, then 14 bits of width - 1 and 14 of height - 1. */
function webpVP8L(width: number, height: number): Uint8Array {
  const bits = ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14);
  return riff([...ascii("VP8L"), ...le32(5 + 16), 0x2f, ...le32(bits), ...new Array(16).fill(0)]);
}

/** Lossy WebP: a frame tag, the start code 9d 01 2a, then 14-bit width and height. */
function webpVP8(width: number, height: number): Uint8Array {
  return riff([...ascii("VP8 "), ...le32(10 + 16), 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, ...le16(width), ...le16(height), ...new Array(16).fill(0)]);
}

/** A header followed by a body, as a real file would be. */
function withBody(head: Uint8Array, size = 2000): Uint8Array {
  const out = new Uint8Array(head.length + size);
  out.set(head);
  out.set(randomBytes(size), head.length);
  return out;
}

describe("sniff", () => {
  test("PNG: width and height from IHDR", () => {
    expect(sniff(png(1920, 1080))).toEqual({ type: "image/png", width: 1920, height: 1080 });
    expect(sniff(png(1, 65536))).toEqual({ type: "image/png", width: 1, height: 65536 });
  });

  test("GIF, 87a and 89a: little-endian width and height", () => {
    expect(sniff(gif("89a", 320, 240))).toEqual({ type: "image/gif", width: 320, height: 240 });
    expect(sniff(gif("87a", 65535, 1))).toEqual({ type: "image/gif", width: 65535, height: 1 });
  });

  test("JPEG: the size from the first start-of-frame, whatever segments come before it", () => {
    expect(sniff(jpeg(800, 600))).toEqual({ type: "image/jpeg", width: 800, height: 600 });
    // Progressive (SOF2), after an EXIF segment, a quantisation table and a Huffman table (C4 is not a frame).
    const busy = jpeg(4032, 3024, { sof: 0xc2, before: [segment(0xe1, 6000), segment(0xdb, 67), segment(0xc4, 31)] });
    expect(sniff(busy)).toEqual({ type: "image/jpeg", width: 4032, height: 3024 });
  });

  test("WebP: lossy (VP8), lossless (VP8L) and extended (VP8X)", () => {
    expect(sniff(webpVP8(1024, 768))).toEqual({ type: "image/webp", width: 1024, height: 768 });
    expect(sniff(webpVP8L(640, 480))).toEqual({ type: "image/webp", width: 640, height: 480 });
    expect(sniff(webpVP8L(16384, 1))).toEqual({ type: "image/webp", width: 16384, height: 1 });
    expect(sniff(webpVP8X(20000, 3))).toEqual({ type: "image/webp", width: 20000, height: 3 });
  });

  test("the header is read from the start of a longer file", () => {
    expect(sniff(withBody(png(7, 9)))).toEqual({ type: "image/png", width: 7, height: 9 });
    expect(sniff(withBody(jpeg(7, 9)))).toEqual({ type: "image/jpeg", width: 7, height: 9 });
  });

  test("other files have a type and no dimensions", () => {
    expect(sniff(new TextEncoder().encode("Dear bob,\nhere is the report.\n"))).toEqual({ type: "text/plain" });
    expect(sniff(new TextEncoder().encode("%PDF-1.7\n%âãÏÓ\n"))).toEqual({ type: "application/pdf" });
    expect(sniff(bytes([0x50, 0x4b, 0x03, 0x04], new Array(26).fill(0)))).toEqual({ type: "application/zip" });
    expect(sniff(bytes([0, 1, 2, 3, 0xff, 0xfe, 0, 0]))).toEqual({ type: "application/octet-stream" });
    expect(sniff(new Uint8Array(0))).toEqual({ type: "application/octet-stream" });
  });

  test("a header cut short or made of noise never throws: it just gives no dimensions", () => {
    const heads = [png(10, 10), gif("89a", 10, 10), jpeg(10, 10), webpVP8(10, 10), webpVP8L(10, 10), webpVP8X(10, 10)];
    for (const head of heads) {
      for (let cut = 0; cut <= head.length; cut++) expect(() => sniff(head.subarray(0, cut))).not.toThrow();
      for (let i = 0; i < 300; i++) {
        const noisy = withBody(head.subarray(0, 4 + (i % 12)), i);
        const kind = sniff(noisy);
        expect(typeof kind.type).toBe("string");
      }
    }
  });
});

describe("end to end", () => {
  let cluster: Cluster;
  let alice: TestUser;
  let bob: TestUser;
  let dir: string;
  let pair: FilePair | undefined;

  beforeAll(async () => {
    pair = await startFilePair("image", { servers: 2 });
    ({ cluster, dir, alice, bob } = pair);
  }, 60_000);

  afterAll(() => stopFilePair(pair));

  const images: [string, Uint8Array, string, number, number][] = [
    ["holiday.png", png(1920, 1080), "image/png", 1920, 1080],
    ["photo.jpg", jpeg(4032, 3024, { before: [segment(0xe1, 9000)] }), "image/jpeg", 4032, 3024],
    ["cat.gif", gif("89a", 480, 270), "image/gif", 480, 270],
    ["sticker.webp", webpVP8L(512, 512), "image/webp", 512, 512],
  ];
  for (const [name, head, type, width, height] of images) {
    test(`${name} (${type}) sent end to end shows its pixel dimensions at the recipient: ${width}×${height}`, async () => {
      const path = join(dir, name);
      const content = withBody(head, 300_000);
      writeFileSync(path, content);
      const sent = await alice.session.sendFile({ to: bob.name }, path);
      expect(sent.file).toMatchObject({ type, width, height });

      await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the image");
      const message = bob.received.find((m) => m.file?.id === sent.file.id)!;
      expect(message.verified).toBe(true);
      expect(message.file).toMatchObject({ name, type, width, height });
      expect(message.text).toBe(`[file] ${name} (${(content.length / 1024).toFixed(1)} KiB, ${type}, ${width}×${height})`);
      expect(line(message, false)).toEndWith(`${alice.name} → ${bob.name}: ${message.text}`);
      expect(shown(message).file).toEqual({ id: sent.file.id, name, size: content.length, type, width, height });
      const saved = await bob.session.fetchFile(message.file!, message.from);
      expect(Buffer.from(readFileSync(saved)).equals(content)).toBe(true);
    });
  }

  test("a camera JPEG whose frame header follows ~90 KiB of metadata (EXIF with thumbnail, XMP, ICC profile) still shows its dimensions", async () => {
    // Each segment is at most 64 KiB, but a camera writes several before the frame.
    const head = jpeg(4000, 3000, { before: [segment(0xe1, 60_000), segment(0xe1, 30_000), segment(0xe2, 3_000), segment(0xdb, 132)] });
    expect(sniff(head)).toEqual({ type: "image/jpeg", width: 4000, height: 3000 });
    const path = join(dir, "camera.jpg");
    writeFileSync(path, withBody(head, 400_000));
    const sent = await alice.session.sendFile({ to: bob.name }, path);
    await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the image");
    expect(bob.received.find((m) => m.file?.id === sent.file.id)!.file).toMatchObject({ type: "image/jpeg", width: 4000, height: 3000 });
  });

  test("a file that is not an image shows no dimensions", async () => {
    const path = join(dir, "notes.txt");
    writeFileSync(path, "just words\n".repeat(100));
    const sent = await alice.session.sendFile({ to: bob.name }, path);
    await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file");
    const message = bob.received.find((m) => m.file?.id === sent.file.id)!;
    expect(message.file!.width).toBeUndefined();
    expect(message.text).toBe("[file] notes.txt (1.1 KiB, text/plain)");
  });

  test("what a sender claims about a file (its type, its dimensions) cannot add lines or escapes to the recipient's screen", async () => {
    const path = join(dir, randomUUID());
    writeFileSync(path, png(2, 2));
    const sent = await upload(alice.session, path, { to: bob.name }, { update() {}, end() {} });
    // A sender's client could put anything in these fields: only the recipient's can keep them harmless.
    const meta = { ...sent.meta, type: "image/png\n[09:00:00] bank → you: call us", width: "1\u001b[2J" as unknown as number, height: 2 };
    const e2e = (alice.session as unknown as { e2e: { seal(r: string[], conv: string, cmid: string, c: unknown): Promise<Uint8Array> } }).e2e;
    const body = await e2e.seal([bob.name], dmLabel(alice.name, bob.name), sent.cmid, { kind: "file", file: meta });
    await alice.session.send({ to: bob.name, cmid: sent.cmid, body });
    await waitFor(() => bob.received.some((m) => m.cmid === sent.cmid), "bob to receive the message");
    const message = bob.received.find((m) => m.cmid === sent.cmid)!;
    const text = line(message, false);
    expect(text).not.toContain("\n");
    expect(text).not.toContain("\u001b");
  });
});
