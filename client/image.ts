/**
 * What kind of file arrived, from its first bytes, and an image's size in
 * pixels (PNG, JPEG, GIF, WebP) read from its header: no decoder needed.
 */
export interface Kind {
  type: string;
  width?: number;
  height?: number;
}

export function sniff(head: Uint8Array): Kind {
  const b = head;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (from: number, length: number) => String.fromCharCode(...b.subarray(from, from + length));
  if (b.length >= 24 && ascii(1, 3) === "PNG" && ascii(12, 4) === "IHDR") {
    return { type: "image/png", width: view.getUint32(16), height: view.getUint32(20) };
  }
  if (b.length >= 10 && (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a")) {
    return { type: "image/gif", width: view.getUint16(6, true), height: view.getUint16(8, true) };
  }
  if (b.length >= 30 && ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return { type: "image/webp", ...webp(b, view, ascii) };
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return { type: "image/jpeg", ...jpeg(b, view) };
  if (ascii(0, 5) === "%PDF-") return { type: "application/pdf" };
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04) return { type: "application/zip" };
  return { type: looksLikeText(b) ? "text/plain" : "application/octet-stream" };
}

function webp(b: Uint8Array, view: DataView, ascii: (f: number, l: number) => string): { width?: number; height?: number } {
  const chunk = ascii(12, 4);
  if (chunk === "VP8X") return { width: 1 + (b[24]! | (b[25]! << 8) | (b[26]! << 16)), height: 1 + (b[27]! | (b[28]! << 8) | (b[29]! << 16)) };
  if (chunk === "VP8L") {
    const bits = view.getUint32(21, true);
    return { width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8 ") return { width: view.getUint16(26, true) & 0x3fff, height: view.getUint16(28, true) & 0x3fff };
  return {};
}

/** Walks the JPEG markers to the first start-of-frame, which holds the size. */
function jpeg(b: Uint8Array, view: DataView): { width?: number; height?: number } {
  let at = 2;
  while (at + 9 < b.length) {
    if (b[at] !== 0xff) return {};
    const marker = b[at + 1]!;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
      continue;
    }
    const length = view.getUint16(at + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) return { height: view.getUint16(at + 5), width: view.getUint16(at + 7) };
    at += 2 + length;
  }
  return {};
}

function looksLikeText(b: Uint8Array): boolean {
  const sample = b.subarray(0, 512);
  if (sample.length === 0) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(sample.subarray(0, Math.max(0, sample.length - 3)));
  } catch {
    return false;
  }
  return !sample.includes(0);
}
