/**
 * The wire format's promises: a frame arrives whole however TCP cuts it, an
 * oversized frame is refused from its header before any body is buffered, and
 * payloads are MessagePack maps in which bytes stay bytes.
 */
import { describe, expect, test } from "bun:test";
import { decode, encode } from "../protocol/codec";
import { ChatError } from "../protocol/errors";
import { DEFAULT_MAX_FRAME, frame, FrameReader, HEADER_BYTES } from "../protocol/frame";

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

/** A payload whose every byte says where it is, so a misplaced byte shows. */
function patterned(length: number, salt = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + salt) & 0xff);
}

function header(length: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

/** The ChatError a call throws, or a failed expectation if it throws nothing or something else. */
function thrown(run: () => unknown): ChatError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ChatError);
    return error as ChatError;
  }
  throw new Error("expected a ChatError, but nothing was thrown");
}

describe("FrameReader", () => {
  test("a frame split into single bytes comes out whole, once, when its last byte arrives", () => {
    const payload = patterned(300);
    const wire = frame(payload);
    const reader = new FrameReader();
    for (let i = 0; i < wire.length - 1; i++) {
      expect(reader.push(wire.subarray(i, i + 1))).toEqual([]);
    }
    expect(reader.buffered).toBe(wire.length - 1);
    const out = reader.push(wire.subarray(wire.length - 1));
    expect(out).toHaveLength(1);
    expect(out[0]).toEqual(payload);
    expect(reader.buffered).toBe(0);
  });

  test("many frames merged into one chunk come out as many payloads, in order", () => {
    const payloads = Array.from({ length: 50 }, (_, i) => patterned(i * 7, i));
    const chunk = new Uint8Array(payloads.reduce((n, p) => n + HEADER_BYTES + p.length, 0));
    let offset = 0;
    for (const p of payloads) {
      chunk.set(frame(p), offset);
      offset += HEADER_BYTES + p.length;
    }
    const out = new FrameReader().push(chunk);
    expect(out).toEqual(payloads);
  });

  test("frames cut at arbitrary points across chunks all arrive intact", () => {
    const payloads = Array.from({ length: 40 }, (_, i) => patterned((i * 977) % 5000, i));
    const wire = Buffer.concat(payloads.map((p) => frame(p)));
    const reader = new FrameReader();
    const out: Uint8Array[] = [];
    // Deterministic, irregular cuts: some inside headers, some spanning several frames.
    for (let at = 0, step = 1; at < wire.length; at += step, step = (step * 7 + 3) % 1500 || 1) {
      out.push(...reader.push(wire.subarray(at, Math.min(wire.length, at + step))));
    }
    expect(out).toEqual(payloads);
    expect(reader.buffered).toBe(0);
  });

  test("the bytes after a complete frame are kept for the next frame", () => {
    const first = patterned(10, 1);
    const second = patterned(20, 2);
    const wire = Buffer.concat([frame(first), frame(second)]);
    const reader = new FrameReader();
    // The first frame and 3 bytes of the second's header.
    const cut = HEADER_BYTES + first.length + 3;
    expect(reader.push(wire.subarray(0, cut))).toEqual([first]);
    expect(reader.buffered).toBe(3);
    expect(reader.push(wire.subarray(cut, cut + 10))).toEqual([]);
    expect(reader.push(wire.subarray(cut + 10))).toEqual([second]);
    expect(reader.buffered).toBe(0);
  });

  test("a returned payload stays valid after later pushes reuse the buffer", () => {
    const reader = new FrameReader();
    const [first] = reader.push(frame(patterned(64, 1)));
    for (let i = 0; i < 20; i++) reader.push(frame(patterned(64, 100 + i)));
    expect(first).toEqual(patterned(64, 1));
  });

  test("an empty payload is a frame of its own", () => {
    expect(new FrameReader().push(bytes(0, 0, 0, 0))).toEqual([new Uint8Array(0)]);
  });

  test("a frame of exactly maxFrame bytes is accepted", () => {
    const reader = new FrameReader(1000);
    const payload = patterned(1000);
    expect(reader.push(frame(payload))).toEqual([payload]);
  });

  test("a frame of exactly the default maximum is accepted", () => {
    const payload = patterned(DEFAULT_MAX_FRAME);
    const out = new FrameReader().push(frame(payload));
    expect(out).toHaveLength(1);
    expect(out[0]!.length).toBe(DEFAULT_MAX_FRAME);
  });

  test("one byte over maxFrame is refused with E_FRAME_TOO_LARGE from the 4 header bytes alone", () => {
    const reader = new FrameReader(1000);
    const error = thrown(() => reader.push(header(1001)));
    expect(error.code).toBe("E_FRAME_TOO_LARGE");
  });

  test("a header announcing 4 GiB is refused before its body, even split across chunks", () => {
    const reader = new FrameReader();
    expect(reader.push(bytes(0xff, 0xff))).toEqual([]);
    const error = thrown(() => reader.push(bytes(0xff, 0xff)));
    expect(error.code).toBe("E_FRAME_TOO_LARGE");
    // Nothing was set aside for the announced body.
    expect(reader.buffered).toBeLessThanOrEqual(HEADER_BYTES);
  });
});

describe("codec", () => {
  test("encode then decode gives back the map, with binary bytes as bytes", () => {
    const body = Uint8Array.from({ length: 256 }, (_, i) => i);
    const value = { t: "ev", ev: "msg", m: { id: 7, conv: 3, seq: 42, from: "alice", to: "bob", at: 1.7e12, cmid: "c-1", body } };
    const [payload] = new FrameReader().push(encode(value));
    const back = decode(payload!);
    const m = back.m as Record<string, unknown>;
    expect(m.body).toBeInstanceOf(Uint8Array);
    expect(new Uint8Array(m.body as Uint8Array)).toEqual(body);
    expect({ ...back, m: { ...m, body: new Uint8Array(m.body as Uint8Array) } }).toEqual(value);
  });

  test("bytes travel as raw bytes on the wire, not as base64 or a number array", () => {
    const body = patterned(4096, 9);
    const encoded = encode({ body });
    // Header, a one-entry map, the key "body", a bin32 marker and length: a few bytes over the body itself.
    expect(encoded.length).toBeLessThan(body.length + 20);
    expect(Buffer.from(encoded).indexOf(Buffer.from(body))).toBeGreaterThan(0);
  });

  test("the frame header of encode() names the payload's exact length", () => {
    const encoded = encode({ t: "req", id: 1, op: "ping" });
    expect(new DataView(encoded.buffer, encoded.byteOffset).getUint32(0)).toBe(encoded.length - HEADER_BYTES);
  });

  test("garbage that is not MessagePack is refused with E_BAD_FRAME", () => {
    const garbage = [
      bytes(0x85, 0xa1), // a map of 5 entries cut short
      bytes(0xdf, 0xff, 0xff, 0xff, 0xff), // a map announcing 4 billion entries
      bytes(0x80, 0x01), // a map followed by trailing bytes
      bytes(0xd4, 0x01, 0x02), // an unknown extension type
      new TextEncoder().encode("GET / HTTP/1.1\r\n"),
    ];
    for (const g of garbage) expect(thrown(() => decode(g)).code).toBe("E_BAD_FRAME");
  });

  test("the reserved MessagePack byte 0xC1 is refused with E_BAD_FRAME", () => {
    // 0xC1 is "never used" in the MessagePack spec; msgpackr turns it into an object.
    expect(thrown(() => decode(bytes(0xc1))).code).toBe("E_BAD_FRAME");
  });

  test("an empty payload is refused with E_BAD_FRAME", () => {
    expect(thrown(() => decode(new Uint8Array(0))).code).toBe("E_BAD_FRAME");
  });

  test("a MessagePack timestamp is not a map and is refused with E_BAD_FRAME", () => {
    // Timestamp extension -1 (msgpackr decodes it to a Date, which is an object but not a map).
    const timestamp = bytes(0xd6, 0xff, 0x00, 0x00, 0x00, 0x01);
    expect(thrown(() => decode(timestamp)).code).toBe("E_BAD_FRAME");
  });

  test("valid MessagePack that is not a map is refused with E_BAD_FRAME", () => {
    const notMaps = [42, "hello", null, true, [1, 2, 3], new Uint8Array([1, 2, 3])];
    for (const value of notMaps) {
      const [payload] = new FrameReader().push(encode(value));
      expect(thrown(() => decode(payload!)).code).toBe("E_BAD_FRAME");
    }
  });
});
