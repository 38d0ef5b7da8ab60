/**
 * Which message numbers of one sender were acknowledged, or delivered: a
 * growable bit set. The coordinator ORs the receivers' sets together and counts
 * the acknowledged bits that no receiver set: those messages were lost.
 */
export class Bitmap {
  bytes = new Uint8Array(64);

  /** Sets bit n; returns false if it was already set (a duplicate). */
  set(n: number): boolean {
    const i = n >> 3;
    if (i >= this.bytes.length) {
      const grown = new Uint8Array(Math.max(i + 1, this.bytes.length * 2));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    const bit = 1 << (n & 7);
    if (this.bytes[i]! & bit) return false;
    this.bytes[i]! |= bit;
    return true;
  }

  or(other: Bitmap): void {
    if (other.bytes.length > this.bytes.length) {
      const grown = new Uint8Array(other.bytes.length);
      grown.set(this.bytes);
      this.bytes = grown;
    }
    for (let i = 0; i < other.bytes.length; i++) this.bytes[i]! |= other.bytes[i]!;
  }

  /** How many bits are set here and not in `other`. */
  missingFrom(other: Bitmap | undefined): number {
    let n = 0;
    for (let i = 0; i < this.bytes.length; i++) {
      let b = this.bytes[i]! & ~(other?.bytes[i] ?? 0);
      while (b) {
        b &= b - 1;
        n++;
      }
    }
    return n;
  }

  encode(): string {
    let end = this.bytes.length;
    while (end > 0 && this.bytes[end - 1] === 0) end--;
    return Buffer.from(this.bytes.subarray(0, end)).toString("base64");
  }

  static decode(text: string): Bitmap {
    const b = new Bitmap();
    const bytes = Buffer.from(text, "base64");
    b.bytes = new Uint8Array(Math.max(64, bytes.length));
    b.bytes.set(bytes);
    return b;
  }
}

/** Sets keyed by sender (or "receiver:sender"), shipped as base64. */
export function encodeMap(map: Map<string | number, Bitmap>): Record<string, string> {
  return Object.fromEntries([...map].map(([k, v]) => [String(k), v.encode()]));
}
