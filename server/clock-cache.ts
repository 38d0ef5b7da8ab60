/**
 * A bounded cache that evicts gradually: CLOCK (second chance), the LRU
 * approximation of operating systems' page caches. Past `max` entries, a
 * hand sweeps the slots and evicts the first entry not used since it last
 * passed, one at a time; a hit only sets that entry's bit.
 *
 * Hand-written rather than lru-cache: that allocates its arrays for `max`
 * entries up front (~5 MB for each of a server's 200,000-entry caches, at
 * start), and its get, which moves the entry in a list, cost ~3 times a Map
 * lookup on the send path (a profile of `chatterbox bench`). Here the arrays
 * grow with the entries, and a hit is one Map lookup and one array write.
 */
export class ClockCache<K, V> {
  private readonly index = new Map<K, number>();
  private readonly keys: K[] = [];
  private readonly values: V[] = [];
  /** Whether each slot was used since the hand last passed it. */
  private readonly used: boolean[] = [];
  private hand = 0;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`A cache holds at least 1 entry, not ${max}`);
  }

  get size(): number {
    return this.index.size;
  }

  get(key: K): V | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    this.used[slot] = true;
    return this.values[slot];
  }

  /** The value without marking it used. */
  peek(key: K): V | undefined {
    const slot = this.index.get(key);
    return slot === undefined ? undefined : this.values[slot];
  }

  set(key: K, value: V): void {
    const known = this.index.get(key);
    if (known !== undefined) {
      this.values[known] = value;
      this.used[known] = true;
      return;
    }
    let slot: number;
    if (this.keys.length < this.max) {
      slot = this.keys.length;
      this.keys.push(key);
      this.values.push(value);
      this.used.push(false);
    } else {
      slot = this.victim();
      this.index.delete(this.keys[slot]!);
      this.keys[slot] = key;
      this.values[slot] = value;
      this.used[slot] = false;
    }
    this.index.set(key, slot);
  }

  delete(key: K): boolean {
    const slot = this.index.get(key);
    if (slot === undefined) return false;
    this.index.delete(key);
    // The last slot moves into the hole, so that the arrays stay dense.
    const last = this.keys.length - 1;
    if (slot !== last) {
      this.keys[slot] = this.keys[last]!;
      this.values[slot] = this.values[last]!;
      this.used[slot] = this.used[last]!;
      this.index.set(this.keys[slot]!, slot);
    }
    this.keys.pop();
    this.values.pop();
    this.used.pop();
    if (this.hand >= this.keys.length) this.hand = 0;
    return true;
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [key, slot] of this.index) yield [key, this.values[slot]!];
  }

  /** The next slot the hand finds unused since its last pass (clearing the bits it passes). */
  private victim(): number {
    for (;;) {
      const slot = this.hand;
      this.hand = (this.hand + 1) % this.keys.length;
      if (!this.used[slot]) return slot;
      this.used[slot] = false;
    }
  }
}
