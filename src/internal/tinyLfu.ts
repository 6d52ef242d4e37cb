/**
 * `TinyLfu`: a bounded map with the surface of `LruMap` and Caffeine's W-TinyLFU eviction policy instead of LRU.
 *
 * Why: an exact LRU keeps whatever was used last, so a scan or a loop a little longer than the cache flushes
 * everything useful (a loop of 1,011 keys through an LRU of 512 hits 0 %). W-TinyLFU keeps a small LRU
 * *window* for new arrivals and admits an arrival into the *main* region only if a frequency sketch says it
 * has been asked for more often than the entry it would push out; the window lets bursts hit, the filter
 * keeps the popular entries through scans.
 *
 * Taken from Caffeine (ben-manes/caffeine, `BoundedLocalCache` and `FrequencySketch` as of v3.2.0):
 * - the sketch: a count-min sketch of 4-bit counters, four counters per key, laid out as Caffeine's: a table
 *   of `ceilingPowerOfTwo(max(capacity, 256))` 64-bit cells (here pairs of 32-bit words in an `Int32Array`),
 *   a key's four counters confined to one 64-byte block, each in a distinct 16-byte quarter of it; the same
 *   `spread` and `rehash` functions; aging (every counter halved) once `10 × max(capacity, 256)` increments
 *   changed a counter, the count after aging reduced by the odd counters' halves exactly as Caffeine does;
 * - the regions: a window LRU of `capacity − ⌊0.99 × capacity⌋` entries (1 % of the capacity, at least 1)
 *   and a main segmented LRU, probation and protected, protected bounded by 80 % of the main region. A hit
 *   in probation promotes the entry to protected (unless protected's bound is 0), and protected's least
 *   recent entry is demoted to probation's most recent end when protected outgrows its bound;
 * - when the window overflows, its least recent entry (the candidate) moves to probation; if the map is over
 *   capacity, the candidate and probation's least recent entry (the victim) compete: the candidate is admitted
 *   (the victim evicted) when its estimated frequency is higher; on a tie or below it is evicted, except that
 *   a warm candidate (frequency ≥ 6) is admitted with probability 1/128 (`random`, injectable) so that an
 *   adversary who inflates the victim's counters by hash collisions cannot freeze the cache;
 * - what counts as a use: the sketch is incremented on a hit (`get`, `touch`), on an update of a held key
 *   and on the insertion of a new key, not on a miss (a miss is followed by the insertion of what was loaded),
 *   nor on `peek`, `has` or `slotOf`;
 * - the adaptive window: Caffeine's hill climber of v3.2 (`climb`, `determineAdjustment`, `increaseWindow`,
 *   `decreaseWindow`): the hit rate is sampled every `10 × max(capacity, 256)` requests (hits, updates and
 *   insertions); the window moves by the step in the direction that improved the hit
 *   rate (reversing when it got worse); the step starts at −6.25 % of the capacity, decays by 0.98 per sample,
 *   and restarts at ±6.25 % when the hit rate moved by 5 points or more. Growing the window takes the room
 *   from protected (moving main's least recent entries, probation first, into the window); shrinking it
 *   moves the window's least recent entries into probation and gives the room to protected. At most 1,000
 *   entries move per step, and what could not move (too few entries, or past 1,000) is retried on the next
 *   insertions, as Caffeine retries it on the next maintenance cycles.
 *
 * Changed: Caffeine allocates its sketch, full size, once the cache first holds half its capacity, and counts
 * nothing before (its `ensureCapacity` also forgets every count when it resizes). Here the sketch exists from
 * the first insertion, sized for the entries held (a 64-bit cell per entry, at least 256), and doubles as the
 * map fills without forgetting anything (see `FrequencySketch.ensureCapacity`): memory still follows the
 * entries, as in `LruMap`, and the early history counts, as in Caffeine's simulator, whose W-TinyLFU counts
 * from the first request. Measured: on gli at 1,000 entries (6,015 requests, so the first 500 insertions
 * matter) counting from the start hits 50.6 % where the lazy sketch hits 42.1 %; on P3 at 100,000 the lazy one
 * does better (39.9 % against 38.0 %, both above the 37 % target and LRU's 29.3 %).
 *
 * Simplified or left out:
 * - everything concurrent: no write buffer, no maintenance cycles. Hits go through a read buffer of 64 slots
 *   (`record`, `drain`), but one that never drops a hit, as Caffeine's may when contended: it is drained, in
 *   order, when it fills and before anything that reads or changes the regions (an insertion, `delete`,
 *   `deleteWhere`, `clear`, `entries`, `policy`), so every result is the one of applying each hit at once. Its
 *   purpose here is speed alone: a batch of hits fetches its sketch blocks together. Every other operation
 *   applies its policy effects at once, so a protected overflow is demoted on the promotion that caused it
 *   (Caffeine defers that to the end of the cycle) and a climb happens on the request that completes a sample;
 * - weights, expiry and the timer wheel: every entry weighs 1 (the owner keeps expiry in its numbers);
 * - Caffeine's newest climber (its main branch after v3.2.4, commit ccef955: hit densities per region, audited
 *   probes) is not followed: this is the hill climber of the released v3.2 line;
 * - `clear` empties the map but keeps the sketch, the regions' bounds and the climber, as Caffeine's
 *   `invalidateAll` does;
 * - no doorkeeper (Caffeine has none either);
 * - the hash fed to the sketch is ours, not Java's `hashCode`: a 32-bit integer key is its own hash, a string
 *   hashes with `hashString` (computed once per operation and kept per slot, so that counting a hit and an
 *   admission contest hash nothing again), an object gets an id from a `WeakMap`, anything else hashes `String(key)`.
 *
 * Layout: as `LruMap` (slots, `keys`, `values`, a typed array of links, the `IntIndex` and `StringIndex`, the
 * owner's numbers, arrays that grow with the entries and are dropped by `clear`), except that the slots hold
 * three circular doubly linked lists, one per region, each closed by a sentinel slot (slots 0, 1 and 2), so
 * linking and unlinking need no head or tail special cases; and that a slot's links share four words of one
 * `Int32Array` with its key hash and its region, so that a hit reads one cache line for all of them. The slot
 * and key-index methods (`slotOf`, `valueAt`, `numberAt`, `setNumber`, …) repeat `LruMap`'s rather than share a
 * base class with it: each class's hot methods then see one object shape. Whether a shared base would cost
 * anything on `LruMap`'s hits has not been measured yet.
 *
 * @internal
 */
import { hashString, IntIndex, StringIndex } from "./intIndex.js"
import { maxCapacity } from "./lruMap.js"

/** The regions, which are also the sentinel slots of their lists. */
const WINDOW = 0
const PROBATION = 1
const PROTECTED = 2
/** Slots below this are the sentinels; entries live from here on. */
const firstSlot = 3

/** Entry slots the arrays start with; they double from there as slots are handed out, up to the capacity. */
const initialSlots = 16

/** Caffeine's `PERCENT_MAIN`: the main region's initial share of the capacity (the window has the rest). */
const percentMain = 0.99
/** Caffeine's `PERCENT_MAIN_PROTECTED`: protected's share of the main region. */
const percentMainProtected = 0.8
/** Caffeine's `ADMIT_HASHDOS_THRESHOLD`: the lowest frequency for which a losing candidate may still be admitted. */
const admitHashDosThreshold = 6
/** The chance of that admission: Caffeine's `(random & 127) == 0`. */
const admitHashDosChance = 1 / 128
/** Caffeine's `HILL_CLIMBER_RESTART_THRESHOLD`: a hit-rate change that restarts the climber's step. */
const climberRestartThreshold = 0.05
/** Caffeine's `HILL_CLIMBER_STEP_PERCENT`: the initial step, as a share of the capacity. */
const climberStepPercent = 0.0625
/** Caffeine's `HILL_CLIMBER_STEP_DECAY_RATE`: how the step shrinks from one sample to the next. */
const climberStepDecayRate = 0.98
/** Caffeine's `QUEUE_TRANSFER_THRESHOLD`: the most entries moved between regions by one operation. */
const queueTransferThreshold = 1_000
/** Caffeine's `MIN_SKETCH_SIZE`: the smallest sketch, in 64-bit cells. */
const minSketchSize = 256
/** Hits recorded before they are applied (see `TinyLfu.drain`). */
const readBufferSize = 64

/** Caffeine's `FrequencySketch.spread`: a supplemental hash, so that weak hashes (sequential ids) spread. */
export const spread = (x: number): number => {
  x ^= x >>> 17
  x = Math.imul(x, 0xed5ad4bb)
  x ^= x >>> 11
  x = Math.imul(x, 0xac4c1b51)
  x ^= x >>> 15
  return x
}

/** Caffeine's `FrequencySketch.rehash`: a second round, whose four bytes pick the four counters. */
export const rehash = (x: number): number => {
  x = Math.imul(x, 0x31848bab)
  x ^= x >>> 14
  return x
}

/** Ids for object keys, which have no value to hash: assigned on first sight, forgotten with the object. */
const objectIds = new WeakMap<object, number>()
let nextObjectId = 0

/**
 * The 32-bit hash the sketch counts `key` under (before `spread`): a 32-bit integer is its own hash (so `-0`
 * and `0` agree), a string its `hashString`, an object or a function an id of its own, anything else the
 * `hashString` of `String(key)` (`NaN`, `1.5`, big integers, symbols, booleans, `null`, `undefined`).
 */
export const keyHash = (key: unknown): number => {
  if (typeof key === "number" && (key | 0) === key) return key | 0
  if (typeof key === "string") return hashString(key)
  if ((typeof key === "object" && key !== null) || typeof key === "function") {
    let id = objectIds.get(key)
    if (id === undefined) objectIds.set(key, id = nextObjectId++ | 0)
    return id
  }
  return hashString(String(key))
}

/** Raises the 4-bit counter at bit `shift` of `table[word]` unless it is 15; 1 if it did, else 0. */
const raise = (table: Int32Array, word: number, shift: number): number => {
  const cell = table[word]!
  if (((~cell >>> shift) & 15) === 0) return 0
  // `| 0`: a wrapping add (the top counter's carry goes into the sign bit), never a checked one.
  table[word] = (cell + (1 << shift)) | 0
  return 1
}

/** The smallest power of two at least `n` (`n` ≥ 1). */
const ceilingPowerOfTwo = (n: number): number => 2 ** Math.ceil(Math.log2(n))

/**
 * Caffeine's `FrequencySketch`: a count-min sketch of 4-bit counters with periodic aging, estimating how often
 * each key was used lately (at most 15). Counters sit 8 to a 32-bit word; a 64-bit cell of Caffeine is the
 * pair of words `2i, 2i + 1`, and a block of 8 cells is 16 words (64 bytes).
 *
 * The words are signed (`Int32Array`) and every index is built with bitwise operations: a word read from a
 * `Uint32Array` can exceed a small integer, and `+` must be checked for overflow, both of which V8 pays for in
 * instructions on every counter (measured: 224 instructions per `increment` before, 172 after).
 *
 * @internal
 */
export class FrequencySketch {
  /** The counters; a key's four sit in one block of 16 words. */
  table: Int32Array
  /** How many changing increments trigger an aging: `10 × max(capacity, 256)`, as Caffeine's `sampleSize`. */
  readonly sampleSize: number
  /** The most 64-bit cells the table grows to: Caffeine's size, `ceilingPowerOfTwo(max(capacity, 256))`. */
  readonly maximumCells: number
  private blockMask: number
  /** Increments that changed a counter since the last aging (reduced by aging, as Caffeine's `size`). */
  private additions = 0
  /** What `locate` found: each key's block and rehash. */
  private located = new Int32Array(0)
  /** What `locate` read, kept so that the compiler cannot drop the reads (see there). */
  touched = 0

  /**
   * @param capacity the cache's capacity (at least 1)
   * @param entries the entries the table is sized for at first (it grows with `ensureCapacity`)
   */
  constructor(capacity: number, entries = capacity) {
    const maximum = Math.max(Math.min(capacity, 2 ** 30 - 1), minSketchSize)
    this.maximumCells = ceilingPowerOfTwo(maximum)
    const cells = Math.min(ceilingPowerOfTwo(Math.max(entries, minSketchSize)), this.maximumCells)
    this.table = new Int32Array(2 * cells)
    this.blockMask = (cells >>> 3) - 1
    this.sampleSize = Math.min(10 * maximum, 2 ** 31 - 1)
  }

  /** How many 64-bit cells the table has now: it is sized for that many entries. */
  get cells(): number {
    return this.table.length >>> 1
  }

  /**
   * Grows the table (doubling, up to `maximumCells`) until it has a cell per entry of `entries`. Unlike
   * Caffeine's `ensureCapacity`, which starts the counts over, nothing is forgotten: a key's block is its
   * hash masked by the block count, so doubling maps old block `b` to new blocks `b` and `b + n`, and copying
   * the old table into both halves gives every key exactly the counters it had.
   */
  ensureCapacity(entries: number): void {
    while (this.cells < entries && this.cells < this.maximumCells) {
      const old = this.table
      const table = new Int32Array(2 * old.length)
      table.set(old)
      table.set(old, old.length)
      this.table = table
      this.blockMask = (table.length >>> 4) - 1
    }
  }

  /** The estimated number of uses of the key whose `keyHash` is `hash`: the least of its four counters. */
  frequency(hash: number): number {
    const table = this.table
    const blockHash = spread(hash)
    const h = rehash(blockHash)
    const base = (blockHash & this.blockMask) << 4
    let frequency = 15
    for (let i = 0; i < 32; i += 8) {
      // As in `increment`, with the byte of counter `i / 8` moved down to the low bits first.
      const b = (h >>> i) << 1
      const count = (table[base | (i >>> 1) | (b & 2) | ((b >>> 5) & 1)]! >>> (b & 28)) & 15
      if (count < frequency) frequency = count
    }
    return frequency
  }

  /**
   * Counts a use of the key whose `keyHash` is `hash`: each of its counters below 15 goes up by one. Ages the
   * sketch when this completes a sample.
   */
  increment(hash: number): void {
    const blockHash = spread(hash)
    this.add((blockHash & this.blockMask) << 4, rehash(blockHash))
  }

  /**
   * Finds the counters of `n` keys, the keys whose `keyHash`es are `hashes[4 × slots[i] + 2]` (where `TinyLfu`
   * keeps them), `i` from 0 to `n − 1`, for `incrementLocated` to count a use of each. In between, the caller
   * can do other work while the counters' blocks are fetched: this reads one word of every key's block, and
   * each is a cache miss (the table is a megabyte at 100,000 entries), as is the word that holds the key's
   * hash; this loop's iterations are short and independent, so their misses overlap, where `increment` after
   * `increment` waits for each block in turn behind the whole of the previous one.
   */
  locate(hashes: Int32Array, slots: Int32Array, n: number): void {
    const table = this.table
    const blockMask = this.blockMask
    let located = this.located
    if (located.length < 2 * n) located = this.located = new Int32Array(2 * n)
    let touched = 0
    for (let i = 0; i < n; i++) {
      const blockHash = spread(hashes[(slots[i]! << 2) | 2]!)
      const base = (blockHash & blockMask) << 4
      located[i << 1] = base
      located[(i << 1) | 1] = rehash(blockHash)
    }
    // A second pass: each block's address waited on a cache miss above (the key's hash), so touching it there
    // chained two misses per key; here every load is independent of the others.
    for (let i = 0; i < n; i++) {
      const base = located[i << 1]!
      // Both ends: the table's buffer comes from `calloc`, 16 bytes past a page boundary when it is large, so
      // a block is usually split over two cache lines (its last quarter in the second).
      touched |= table[base]! | table[base | 15]!
    }
    this.touched = touched
  }

  /**
   * Counts a use of each of the first `n` keys of the last `locate`, in order: the same counts, and the same
   * agings at the same points, as `increment` on each in turn. The table must not have grown since.
   */
  incrementLocated(n: number): void {
    const located = this.located
    for (let i = 0; i < n; i++) this.add(located[i << 1]!, located[(i << 1) | 1]!)
  }

  /**
   * Raises the four counters of the key whose block starts at word `base` and whose rehash is `h`, and ages
   * the sketch when this completes a sample.
   *
   * Counter `i` is picked by byte `i` of the rehash, `h_i = h >>> 8i`, as Caffeine picks it: its cell is
   * `2i + (h_i & 1)` of the block, its nibble `index = (h_i >>> 1) & 15` of that 64-bit cell. In words: the
   * block's word `4i + 2 (h_i & 1) + (index >>> 3)`, at bit `4 (index & 7)`; each term below is one of those
   * bits taken straight out of `h`. Unrolled, as Caffeine's.
   */
  private add(base: number, h: number): void {
    const table = this.table
    let added = raise(table, base | ((h << 1) & 2) | ((h >>> 4) & 1), (h << 1) & 28)
    added |= raise(table, base | 4 | ((h >>> 7) & 2) | ((h >>> 12) & 1), (h >>> 7) & 28)
    added |= raise(table, base | 8 | ((h >>> 15) & 2) | ((h >>> 20) & 1), (h >>> 15) & 28)
    added |= raise(table, base | 12 | ((h >>> 23) & 2) | ((h >>> 28) & 1), (h >>> 23) & 28)
    if (added !== 0 && ++this.additions === this.sampleSize) this.reset()
  }

  /**
   * Ages the sketch: halves every counter, and the count of additions with it, less the halves that the odd
   * counters lost (Caffeine's `reset`).
   */
  private reset(): void {
    const table = this.table
    let odd = 0
    for (let i = 0; i < table.length; i++) {
      const cell = table[i]!
      // The low bits of the eight counters, summed into the top nibble by one multiplication.
      odd += Math.imul(cell & 0x11111111, 0x11111111) >>> 28
      table[i] = (cell >>> 1) & 0x77777777
    }
    this.additions = Math.max(0, (this.additions - (odd >>> 2)) >> 1)
  }
}

/**
 * Caffeine's hill climber (v3.2 `determineAdjustment`): given each completed sample's hit rate, how many
 * entries the window should grow by (negative: shrink by).
 *
 * @internal
 */
export class HillClimber {
  /** The next move, in entries; its sign is the direction the climber is walking. */
  stepSize: number
  /** The hit rate of the previous sample. */
  previousHitRate = 0

  constructor(readonly capacity: number) {
    // Caffeine starts by shrinking the window: most workloads favour frequency over recency.
    this.stepSize = -climberStepPercent * capacity
  }

  /**
   * The window adjustment after a sample of hit rate `hitRate`: the step, reversed if the hit rate fell.
   * The next step decays, or restarts at full size if the hit rate moved by 5 points or more (the workload
   * changed). Truncated toward zero, as Caffeine's `(long)` cast.
   */
  adjust(hitRate: number): number {
    const change = hitRate - this.previousHitRate
    const amount = change >= 0 ? this.stepSize : -this.stepSize
    this.stepSize = Math.abs(change) >= climberRestartThreshold
      ? climberStepPercent * this.capacity * (amount >= 0 ? 1 : -1)
      : climberStepDecayRate * amount
    this.previousHitRate = hitRate
    // `+ 0` turns a truncated -0 into 0.
    return Math.trunc(amount) + 0
  }
}

/** Options of a `TinyLfu`. */
export interface TinyLfuOptions {
  /** Whether the hill climber resizes the window (default `true`); without it, the window stays at 1 %. */
  readonly adaptive?: boolean
  /**
   * Random numbers in [0, 1) for the hash-flooding defence (a warm losing candidate is admitted when one is
   * below 1/128). Default `Math.random`; inject a seeded source for reproducible runs.
   */
  readonly random?: () => number
}

/** A snapshot of the policy's state, for tests and diagnostics. */
export interface TinyLfuPolicy {
  readonly windowSize: number
  readonly probationSize: number
  readonly protectedSize: number
  readonly windowMaximum: number
  readonly protectedMaximum: number
  /** Whether the sketch exists yet (it does from the first insertion on). */
  readonly sketched: boolean
}

/**
 * A bounded map with O(1) `get`, `set` and `delete` whose evictions follow W-TinyLFU (see the module comment):
 * the same surface as `LruMap`, so that an in-memory tier can hold either.
 *
 * Differences from `LruMap` a caller sees: a `set` of a new key when full evicts either the window's candidate
 * or main's victim (whichever the sketch says is used less), never the key being set; `entries` lists the
 * window, then probation, then protected, each from the most to the least recent.
 *
 * @internal
 */
export class TinyLfu<K, V> {
  /** The most entries the map holds. */
  readonly capacity: number
  /** How many numbers the owner keeps per entry (see `numberAt`). */
  readonly numbersPerEntry: number

  private index = new Map<K, number>()
  private ints = new IntIndex()
  private strings: StringIndex | undefined = undefined
  private keys: Array<K | undefined> = []
  private values: Array<V | undefined> = []
  /**
   * Four words per slot, so that a hit reads one cache line for all of them: `links[4 * slot]` is the next
   * newer slot and `links[4 * slot + 1]` the next older (each list is a circle through its sentinel: the
   * sentinel's older is the most recent entry, its newer the least recent); `links[4 * slot + 2]` is the
   * entry's `keyHash` (what the sketch counts it under, and a string's bucket in `strings`), and
   * `links[4 * slot + 3]` its region (`WINDOW`, `PROBATION` or `PROTECTED`: its list's sentinel).
   */
  private links: Int32Array
  private numbers: Float64Array | undefined = undefined
  /** Slots freed by `delete`, reused before fresh ones: a stack chained through `links[4 * slot]`. */
  private freeHead = 0
  private freeCount = 0
  /** Slots handed out so far, sentinels included. */
  private allocated = firstSlot
  private count = 0
  private windowSize = 0
  private protectedSize = 0

  private windowMaximum: number
  private protectedMaximum: number
  private sketch: FrequencySketch | undefined = undefined
  private readonly random: () => number

  private readonly climber: HillClimber
  /** Requests per sample: the sketch's sample size, or `Infinity` when the window is fixed. */
  private samplePeriod = Infinity
  private readonly adaptive: boolean
  private requestsInSample = 0
  private hitsInSample = 0
  /** Entries the window still has to grow by (negative: shrink by), left over from the last climb. */
  private adjustment = 0
  /** The last string key found absent, and its `hashString`. */
  private missedString: string | undefined = undefined
  private missedHash = 0
  /** The slots of the hits not applied yet, oldest first (see `drain`). */
  private readonly reads = new Int32Array(readBufferSize)
  private pending = 0

  /**
   * @param capacity a positive integer, at most `maxCapacity`
   * @param onEvict called with an entry a `set` pushes out (not on `delete`), once the new entry holds its slot;
   *   the owner's numbers in `slot` are still the evicted entry's
   * @param numbersPerEntry how many numbers the owner keeps per entry (see `numberAt`)
   */
  constructor(
    capacity: number,
    private readonly onEvict?: (key: K, value: V, slot: number) => void,
    numbersPerEntry = 0,
    options: TinyLfuOptions = {}
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > maxCapacity) {
      throw new RangeError(`TinyLfu capacity must be an integer from 1 to 2^30, got ${capacity}`)
    }
    this.capacity = capacity
    this.numbersPerEntry = numbersPerEntry
    this.random = options.random ?? Math.random
    this.adaptive = options.adaptive ?? true
    this.climber = new HillClimber(capacity)
    // Caffeine's split, in the same floating-point arithmetic: the window is at least 1.
    this.windowMaximum = capacity - Math.floor(percentMain * capacity)
    this.protectedMaximum = Math.floor(percentMainProtected * (capacity - this.windowMaximum))
    const slots = firstSlot + Math.min(capacity, initialSlots)
    this.links = new Int32Array(4 * slots)
    this.resetSentinels()
  }

  /** The number of entries held. */
  get size(): number {
    return this.count
  }

  /** The value under `key`, counted as a use; `undefined` when absent. */
  get(key: K): V | undefined {
    const slot = this.slotOf(key)
    if (slot < 0) return undefined
    this.record(slot)
    return this.values[slot]
  }

  /** The value under `key` without counting a use. */
  peek(key: K): V | undefined {
    const slot = this.slotOf(key)
    return slot < 0 ? undefined : this.values[slot]
  }

  /** Whether `key` is held, without counting a use. */
  has(key: K): boolean {
    return this.slotOf(key) >= 0
  }

  /** The slot holding `key`, counted as a use; -1 when absent. */
  touch(key: K): number {
    const slot = this.slotOf(key)
    if (slot >= 0) this.record(slot)
    return slot
  }

  /** The slot holding `key`, without counting a use; -1 when absent. */
  slotOf(key: K): number {
    if (typeof key === "number" && (key | 0) === key) return this.ints.get(key)
    if (typeof key === "string") return this.stringSlot(key, hashString(key))
    const slot = this.index.get(key)
    return slot === undefined ? -1 : slot
  }

  /** The value in `slot`, which must hold an entry. */
  valueAt(slot: number): V {
    return this.values[slot] as V
  }

  /** The key in `slot`, which must hold an entry. */
  keyAt(slot: number): K {
    return this.keys[slot] as K
  }

  /**
   * The owner's `i`-th number (below `numbersPerEntry`) of the entry in `slot`: what `setNumber` last wrote
   * there, `Infinity` if nothing was. `set` leaves a slot's numbers alone, even when it hands the slot to
   * another key: the owner writes them after every `set`.
   */
  numberAt(slot: number, i: number): number {
    const numbers = this.numbers
    return numbers === undefined ? Infinity : numbers[slot * this.numbersPerEntry + i]!
  }

  /** Sets the owner's `i`-th number of the entry in `slot`. */
  setNumber(slot: number, i: number, value: number): void {
    let numbers = this.numbers
    if (numbers === undefined) {
      if (value === Infinity) return
      numbers = this.numbers = new Float64Array((this.links.length >>> 2) * this.numbersPerEntry).fill(Infinity)
    }
    numbers[slot * this.numbersPerEntry + i] = value
  }

  /**
   * Stores `value` under `key`. A held key is updated and counted as a use. A new key enters the window; if
   * that overflows the window, the window's least recent entry moves to probation, and if the map is then over
   * capacity, that candidate and probation's least recent entry compete (see the module comment) and the loser
   * is evicted. Returns the entry's slot: the new key is never the one evicted.
   */
  set(key: K, value: V): number {
    // A miss is usually followed by the `set` of what was loaded: its hash is not computed twice.
    const hash = typeof key !== "string" ? 0 : key === this.missedString ? this.missedHash : hashString(key)
    let slot = typeof key === "string" ? this.stringSlot(key, hash) : this.slotOf(key)
    if (slot >= 0) {
      this.values[slot] = value
      this.record(slot)
      return slot
    }
    // Every hit counts before the admission contest, and no recorded slot may be evicted.
    this.drain()
    // Like Map, keep -0 as +0.
    if (key === 0) key = 0 as K
    const keyHashed = typeof key === "string" ? hash : keyHash(key)
    // The insertion counts as a use and, for the climber, a miss. The sketch keeps a cell per entry held.
    let sketch = this.sketch
    if (sketch === undefined) {
      sketch = this.sketch = new FrequencySketch(this.capacity, this.count + 1)
      if (this.adaptive) this.samplePeriod = sketch.sampleSize
    } else if (this.count >= sketch.cells) {
      sketch.ensureCapacity(this.count + 1)
    }
    sketch.increment(keyHashed)
    this.requestsInSample++
    // The window's overflow goes to probation's most recent end: the first one moved is the candidate.
    let candidate = -1
    const links = this.links
    while (this.windowSize >= this.windowMaximum) {
      const oldest = links[4 * WINDOW]!
      if (oldest === WINDOW) break
      this.unlinkSlot(oldest)
      this.pushMostRecent(PROBATION, oldest)
      links[4 * oldest + 3] = PROBATION
      this.windowSize--
      if (candidate < 0) candidate = oldest
    }
    let evicted = -1
    let evictedKey: K | undefined
    let evictedValue: V | undefined
    if (this.count === this.capacity) {
      evicted = this.selectEviction(candidate)
      evictedKey = this.keys[evicted] as K
      evictedValue = this.values[evicted] as V
      this.unlinkSlot(evicted)
      if (links[4 * evicted + 3] === WINDOW) this.windowSize--
      else if (links[4 * evicted + 3] === PROTECTED) this.protectedSize--
      this.unindex(evictedKey, evicted)
      slot = evicted
    } else {
      slot = this.freshSlot()
      this.count++
    }
    this.keys[slot] = key
    this.values[slot] = value
    this.indexKey(key, slot, keyHashed)
    this.pushMostRecent(WINDOW, slot)
    // `this.links`, not `links`: `freshSlot` may have grown the array.
    this.links[4 * slot + 2] = keyHashed
    this.links[4 * slot + 3] = WINDOW
    this.windowSize++
    if (this.requestsInSample >= this.samplePeriod) this.climb()
    else if (this.adjustment !== 0) this.adapt()
    // Called last, so a throwing callback cannot leave the map half-updated.
    if (evicted >= 0 && this.onEvict !== undefined) this.onEvict(evictedKey as K, evictedValue as V, evicted)
    return slot
  }

  /** Removes `key`; returns whether it was held. */
  delete(key: K): boolean {
    const slot = this.slotOf(key)
    if (slot < 0) return false
    // A recorded hit must not outlive its entry: the slot may be handed to another key.
    this.drain()
    this.deleteSlot(slot)
    return true
  }

  /**
   * Removes every entry whose slot passes `test`, region by region from the least recent on; returns how many.
   * `test` must not change the map.
   */
  deleteWhere(test: (slot: number) => boolean): number {
    this.drain()
    let removed = 0
    const links = this.links
    for (let list = WINDOW; list <= PROTECTED; list++) {
      let slot = links[4 * list]!
      while (slot !== list) {
        // Read before a removal reuses the link for the free list.
        const newer = links[4 * slot]!
        if (test(slot)) {
          this.deleteSlot(slot)
          removed++
        }
        slot = newer
      }
    }
    return removed
  }

  /**
   * Removes every entry in O(1), dropping the arrays as `LruMap.clear` does. The sketch, the regions' bounds
   * and the climber stay: an invalidation says the values are stale, not that the keys stopped being popular
   * (Caffeine's `invalidateAll` keeps them too).
   */
  clear(): void {
    // The hits before the clear still count, in the sketch and the climber's sample.
    this.drain()
    this.index = new Map()
    this.ints = new IntIndex()
    this.strings = undefined
    this.keys = []
    this.values = []
    const slots = firstSlot + Math.min(this.capacity, initialSlots)
    this.links = new Int32Array(4 * slots)
    this.resetSentinels()
    this.numbers = undefined
    this.freeHead = this.freeCount = 0
    this.allocated = firstSlot
    this.count = this.windowSize = this.protectedSize = 0
  }

  /** The entries of the window, then probation, then protected, each from most to least recent; no use counted. */
  *entries(): IterableIterator<[K, V]> {
    this.drain()
    for (let list = WINDOW; list <= PROTECTED; list++) {
      for (let slot = this.links[4 * list + 1]!; slot !== list; slot = this.links[4 * slot + 1]!) {
        yield [this.keys[slot] as K, this.values[slot] as V]
      }
    }
  }

  /** The regions' sizes and bounds now. */
  policy(): TinyLfuPolicy {
    this.drain()
    return {
      windowSize: this.windowSize,
      probationSize: this.count - this.windowSize - this.protectedSize,
      protectedSize: this.protectedSize,
      windowMaximum: this.windowMaximum,
      protectedMaximum: this.protectedMaximum,
      sketched: this.sketch !== undefined
    }
  }

  /** Records a use of the entry in `slot`, applied by the next `drain`. */
  private record(slot: number): void {
    this.reads[this.pending] = slot
    if (++this.pending === readBufferSize) this.drain()
  }

  /**
   * Applies the recorded hits, oldest first, as each would have been applied at once: the sketch counts them,
   * the climber's sample counts them (a climb happening on the hit that completes a sample), and each entry
   * moves to the most recent end of its region or, from probation, of protected (unless protected's bound is
   * 0), protected's least recent entry falling back to probation if that overflows it.
   *
   * The batch's counter blocks are located first, the entries move, and then the sketch counts the batch:
   * nothing that moves entries reads the sketch (only an admission contest does, after a drain), so the order
   * does not change the result, and the batch's key hashes and counter blocks, each a cache miss, are read in
   * short independent passes whose misses overlap (see `FrequencySketch.locate`), while the moves run.
   *
   * The moves are written out here rather than calling `unlinkSlot` and `pushMostRecent`, with bitwise
   * indexes (an `Int32Array` index built with `+` or `*` is checked for overflow): this runs once per hit. It
   * also keeps this method too large for V8 to inline into `get` (460 bytes of bytecode), where it would spend
   * the caller's inlining budget on a path taken once per batch.
   */
  private drain(): void {
    const n = this.pending
    if (n === 0) return
    this.pending = 0
    const reads = this.reads
    const links = this.links
    const sketch = this.sketch!
    sketch.locate(links, reads, n)
    // The climber's counts and protected's size and bound live in locals, written back around the one call
    // that reads or changes them (a climb, at most once a sample).
    const period = this.samplePeriod
    let hits = this.hitsInSample
    let requests = this.requestsInSample
    let protectedSize = this.protectedSize
    let protectedMaximum = this.protectedMaximum
    for (let i = 0; i < n; i++) {
      hits++
      if (++requests >= period) {
        this.hitsInSample = hits
        this.requestsInSample = requests
        this.protectedSize = protectedSize
        this.climb()
        hits = this.hitsInSample
        requests = this.requestsInSample
        protectedSize = this.protectedSize
        protectedMaximum = this.protectedMaximum
      }
      const slot = reads[i]!
      const at = slot << 2
      let list = links[at | 3]!
      const promoted = list === PROBATION && protectedMaximum !== 0
      if (promoted) {
        list = PROTECTED
        links[at | 3] = PROTECTED
      } else if (links[(list << 2) | 1] === slot) {
        // Already the most recent of its region.
        continue
      }
      const newer = links[at]!
      const older = links[at | 1]!
      links[older << 2] = newer
      links[(newer << 2) | 1] = older
      const newest = links[(list << 2) | 1]!
      links[at] = list
      links[at | 1] = newest
      links[newest << 2] = slot
      links[(list << 2) | 1] = slot
      if (!promoted) continue
      // Protected's least recent entries fall back to probation's most recent end while it is over its bound
      // (one at most: it was within its bound before this promotion).
      for (++protectedSize; protectedSize > protectedMaximum; protectedSize--) {
        const demoted = links[PROTECTED << 2]!
        const d = demoted << 2
        const next = links[d]!
        links[PROTECTED << 2] = next
        links[(next << 2) | 1] = PROTECTED
        const newestOnProbation = links[(PROBATION << 2) | 1]!
        links[d] = PROBATION
        links[d | 1] = newestOnProbation
        links[d | 3] = PROBATION
        links[newestOnProbation << 2] = demoted
        links[(PROBATION << 2) | 1] = demoted
      }
    }
    this.hitsInSample = hits
    this.requestsInSample = requests
    this.protectedSize = protectedSize
    sketch.incrementLocated(n)
  }

  /**
   * The entry to evict so that a new one fits, given the window's `candidate` just moved to probation (-1 if
   * none did): Caffeine's `evictFromMain` for one eviction. The new entry is not linked yet, so it is never
   * chosen.
   *
   * The map is full only with a window at its bound (main never outgrows `capacity − windowMaximum`: entries
   * enter it by window overflow, and the climber moves entries and bounds by the same amounts), so a full map
   * always has a candidate, and probation holds at least that candidate. The other cases follow Caffeine's
   * fallbacks (victim from protected, then the window; candidate from the window) and are defensive only.
   */
  private selectEviction(candidate: number): number {
    const links = this.links
    let victim = links[4 * PROBATION]!
    if (victim === PROBATION) victim = links[4 * PROTECTED]!
    if (victim === PROTECTED) victim = links[4 * WINDOW]!
    if (candidate < 0) {
      candidate = links[4 * WINDOW]!
      if (candidate === WINDOW) return victim
    }
    // Probation held nothing but the candidate: nothing to compete with, as in Caffeine.
    if (candidate === victim) return victim
    return this.admit(links[4 * candidate + 2]!, links[4 * victim + 2]!) ? victim : candidate
  }

  /**
   * Whether the candidate (key hash `candidateHash`) should replace the victim: its estimated frequency is
   * higher, or it is warm and wins the 1/128 draw that defends against hash flooding.
   */
  private admit(candidateHash: number, victimHash: number): boolean {
    const sketch = this.sketch
    if (sketch === undefined) return false
    const candidateFrequency = sketch.frequency(candidateHash)
    const victimFrequency = sketch.frequency(victimHash)
    if (candidateFrequency > victimFrequency) return true
    return candidateFrequency >= admitHashDosThreshold && this.random() < admitHashDosChance
  }

  /** Ends a sample: the climber decides how far to move the window, and the move starts. */
  private climb(): void {
    const hitRate = this.hitsInSample / this.requestsInSample
    this.hitsInSample = this.requestsInSample = 0
    this.adjustment = this.climber.adjust(hitRate)
    this.adapt()
  }

  /** Moves the window's bound (and entries with it) by the pending adjustment, at most 1,000 entries at a time. */
  private adapt(): void {
    if (this.adjustment > 0) this.increaseWindow()
    else if (this.adjustment < 0) this.decreaseWindow()
  }

  /**
   * Caffeine's `increaseWindow`: the window takes room from protected, and main's least recent entries
   * (probation's first) move into the window's most recent end. What cannot move now stays pending.
   */
  private increaseWindow(): void {
    if (this.protectedMaximum === 0) {
      this.adjustment = 0
      return
    }
    const wanted = Math.min(this.adjustment, this.protectedMaximum)
    let quota = Math.min(wanted, queueTransferThreshold)
    this.protectedMaximum -= quota
    this.windowMaximum += quota
    this.demoteProtected()
    const links = this.links
    let moved = 0
    while (moved < quota) {
      let slot = links[4 * PROBATION]!
      if (slot === PROBATION) {
        slot = links[4 * PROTECTED]!
        if (slot === PROTECTED) break
        this.protectedSize--
      }
      this.unlinkSlot(slot)
      this.pushMostRecent(WINDOW, slot)
      this.links[4 * slot + 3] = WINDOW
      this.windowSize++
      moved++
    }
    // Room that found no entry to move goes back, as in Caffeine.
    quota -= moved
    this.protectedMaximum += quota
    this.windowMaximum -= quota
    this.adjustment = wanted - moved
  }

  /**
   * Caffeine's `decreaseWindow`: the window (never below 1) gives room to protected, and its least recent
   * entries move to probation's most recent end. What cannot move now stays pending.
   */
  private decreaseWindow(): void {
    if (this.windowMaximum <= 1) {
      this.adjustment = 0
      return
    }
    const wanted = Math.min(-this.adjustment, this.windowMaximum - 1)
    let quota = Math.min(wanted, queueTransferThreshold)
    this.protectedMaximum += quota
    this.windowMaximum -= quota
    const links = this.links
    let moved = 0
    while (moved < quota) {
      const slot = links[4 * WINDOW]!
      if (slot === WINDOW) break
      this.unlinkSlot(slot)
      this.pushMostRecent(PROBATION, slot)
      this.links[4 * slot + 3] = PROBATION
      this.windowSize--
      moved++
    }
    quota -= moved
    this.protectedMaximum -= quota
    this.windowMaximum += quota
    this.adjustment = moved - wanted
  }

  /** Moves protected's least recent entries to probation's most recent end while protected is over its bound. */
  private demoteProtected(): void {
    const links = this.links
    while (this.protectedSize > this.protectedMaximum) {
      const slot = links[4 * PROTECTED]!
      this.unlinkSlot(slot)
      this.pushMostRecent(PROBATION, slot)
      this.links[4 * slot + 3] = PROBATION
      this.protectedSize--
    }
  }

  /** Links `slot` as the most recent entry of `list`. */
  private pushMostRecent(list: number, slot: number): void {
    const links = this.links
    const newest = links[4 * list + 1]!
    links[4 * slot] = list
    links[4 * slot + 1] = newest
    links[4 * newest] = slot
    links[4 * list + 1] = slot
  }

  /** Takes `slot` out of its list. */
  private unlinkSlot(slot: number): void {
    const links = this.links
    const newer = links[4 * slot]!
    const older = links[4 * slot + 1]!
    links[4 * older] = newer
    links[4 * newer + 1] = older
  }

  /** Empty circles: each sentinel is its own newer and older. */
  private resetSentinels(): void {
    for (let list = WINDOW; list <= PROTECTED; list++) this.links[4 * list] = this.links[4 * list + 1] = list
  }

  /** A slot for a new entry while the map is not full: a freed one, else the next never used, growing if need be. */
  private freshSlot(): number {
    if (this.freeCount > 0) {
      const slot = this.freeHead
      this.freeHead = this.links[4 * slot]!
      this.freeCount--
      return slot
    }
    if (4 * this.allocated === this.links.length) this.grow()
    return this.allocated++
  }

  /** Doubles the typed arrays, up to the capacity; `keys` and `values` grow on their own. */
  private grow(): void {
    const slots = Math.min(firstSlot + 2 * ((this.links.length >>> 2) - firstSlot), firstSlot + this.capacity)
    const links = new Int32Array(4 * slots)
    links.set(this.links)
    this.links = links
    if (this.numbers !== undefined) {
      const numbers = new Float64Array(slots * this.numbersPerEntry).fill(Infinity)
      numbers.set(this.numbers)
      this.numbers = numbers
    }
  }

  private deleteSlot(slot: number): void {
    this.unlinkSlot(slot)
    const region = this.links[4 * slot + 3]
    if (region === WINDOW) this.windowSize--
    else if (region === PROTECTED) this.protectedSize--
    this.unindex(this.keys[slot] as K, slot)
    // Drop the references so the garbage collector can reclaim them.
    this.keys[slot] = undefined
    this.values[slot] = undefined
    this.links[4 * slot] = this.freeHead
    this.freeHead = slot
    this.freeCount++
    this.count--
  }

  /** The slot of the string `key`, whose `hashString` is `hash`; -1 when absent. */
  private stringSlot(key: string, hash: number): number {
    const strings = this.strings
    const slot = strings === undefined ? -1 : strings.get(key, hash, this.keys)
    if (slot < 0) {
      this.missedString = key
      this.missedHash = hash
    }
    return slot
  }

  /** Indexes `key`, absent until now, at `slot`; `hash` is its `keyHash`. */
  private indexKey(key: K, slot: number, hash: number): void {
    if (typeof key === "number" && (key | 0) === key) this.ints.set(key, slot)
    else if (typeof key === "string") (this.strings ??= new StringIndex()).insert(hash, slot)
    else this.index.set(key, slot)
  }

  /** Removes `key`, held at `slot`, from its index. */
  private unindex(key: K, slot: number): void {
    if (typeof key === "number" && (key | 0) === key) this.ints.delete(key)
    else if (typeof key === "string") this.strings!.delete(this.links[4 * slot + 2]!, slot)
    else this.index.delete(key)
  }
}
