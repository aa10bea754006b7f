// Coding 1 of the .kmq format: coded labels (spec/kmq.md §11), decoder only.
//
// Written from the spec alone, in the order of §11.9:
//   1. the fixed fields (§11.1), the frequency tables (§11.6), the lengths and
//      the lane states (§11.8);
//   2. the first label;
//   3. the passes, coarse to fine (§11.2): candidates from the 4 neighbours
//      (§11.3); an escape count, gaps, choices and escape ranks (§11.4, §11.5),
//      integers as tokens plus extra bits (§11.7), every symbol rANS-decoded by
//      lane i mod L (§11.8);
//   4. the end checks: no word, extra byte or lane state left over.
// Method 2 (§11.13) is method 0 with packed tables (PackedTables) and escape
// ranks counted from the entry nearest the neighbours' mean colour (nearestToMean).
// A stream whose method byte is 1 is one Zstandard frame instead (§11.11):
// decodeZstdLabels walks its headers (steps 1–3), then fzstd decompresses it,
// patched to reject what RFC 8878 calls corrupt (vendor/README.md); any exception it throws is rule 10.
// A stream whose method byte is 3 (§11.15, K ≤ 256) is decoded by decodeRasterLabels: every pixel in
// raster order, its candidates from 4 neighbours and two hashed history tables, its context from 6
// neighbours and where the predictions went, a choice or an escape rank from adaptive tables, every
// symbol from one range decoder; escape ranks count from the entry nearest the neighbours' mean colour.
// A rejection throws a KmqStreamError carrying the rule number of §7 (10–13)
// and the class name the spec gives it.
//
// Nothing is allocated from a count read from the stream before that count has
// been checked against the header or the stream's length; the label map is
// allocated after the tables and lengths pass.

import { Decompress as ZstdDecompress } from "./vendor/fzstd.js";

/** The spec's rejection of a coding-1 label stream: `rule` is §7's number, `name` its class. */
export class KmqStreamError extends Error {
  constructor(rule, name, message) {
    super(message);
    this.rule = rule;
    this.name = name;
  }
}

// §7, rules 10–13: the class each rule raises.
export const RULE_NAMES = Object.freeze({
  10: "StreamStructureError",
  11: "StreamLengthError",
  12: "StreamEndError",
  13: "SymbolRangeError",
});

function fail(rule, message) {
  throw new KmqStreamError(rule, RULE_NAMES[rule], message);
}

// §11.1: the fixed fields.
const METHOD = 0;
const ZSTD_METHOD = 1; // §11.11
const PACKED_METHOD = 2; // §11.13
const RASTER_METHOD = 3; // §11.15
const PRESENCE_BYTES = 13;
const TABLES_AT = 22;
// §11.6: contexts, alphabets and the frequency scale.
const CONTEXTS = 97;
const TOKENS = 72;
const SCALE_BITS = 12;
const SCALE = 1 << SCALE_BITS;
const MAX_FREQ_BYTES = 2;
// §11.13: a packed table's precision field, and the longest run of zeros an Exp-Golomb code may start with.
const PRECISION_BITS = 4;
const MAX_ZEROS = SCALE_BITS;
// §11.8: every lane state starts and ends here.
const LANE_FLOOR = 65536;
// §11.7: tokens below this are the integer itself.
const DIRECT_TOKENS = 16;
// §11.3: m for each pattern; §11.4: each choosing pattern's place c in (1, 2, 3, 4, 6, 7, 9).
const PATTERN_M = Uint8Array.of(1, 2, 2, 3, 4, 1, 2, 3, 1, 2, 1);
const PATTERN_CHOICE = Int8Array.of(-1, 0, 1, 2, 3, -1, 4, 5, -1, 6, -1);
// §11.3: how many present neighbours hold each candidate, 4 per pattern in candidate order (for §11.13's mean).
const PATTERN_COUNTS = Uint8Array.of(4, 0, 0, 0, 3, 1, 0, 0, 2, 2, 0, 0, 2, 1, 1, 0, 1, 1, 1, 1, 3, 0, 0, 0, 2, 1, 0, 0, 1, 1, 1, 0, 2, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0);
const PATTERN_PRESENT = Uint8Array.of(4, 4, 4, 4, 4, 3, 3, 3, 2, 2, 1);
// §11.6: the choice contexts' alphabets, m + 1 for c = 0 … 6.
const CHOICE_ALPHABET = Uint8Array.of(3, 3, 4, 5, 3, 4, 3);
// §11.5: escape ranks walk a distance order up to this K, and step ± above it.
const NEAREST_MAX_K = 256;

/**
 * Decode the W·H labels of a coding-1 label stream (spec §11), row-major.
 *
 * `bytes` is the whole file (a Uint8Array); the stream is `streamLength` bytes
 * from `streamOffset` (24 + C·K, up to the check). `palette` holds K·C bytes.
 * Returns a Uint8Array when K ≤ 256, else a Uint16Array. Throws KmqStreamError.
 */
export function decodeCodedLabels(bytes, streamOffset, streamLength, { width, height, k, channels, palette }) {
  const stream = { bytes, base: streamOffset, end: streamOffset + streamLength };
  if (streamLength > 0 && bytes[streamOffset] === ZSTD_METHOD) return decodeZstdLabels(stream, width, height, k);
  if (streamLength > 0 && bytes[streamOffset] === RASTER_METHOD) return decodeRasterLabels(stream, { width, height, k, channels, palette });
  const head = readHead(stream); // §11.9 step 1
  const tables = readTables(stream, head.presence, head.method);
  const parts = splitParts(stream, head, tables.end);
  const rans = new RansDecoder(bytes, parts, tables, stream.base);
  const extra = new ExtraBits(bytes, parts.extraAt, head.extraBytes, stream.base);
  if (head.firstLabel >= k) {
    // §11.9 step 2
    fail(13, `label stream byte 3 (file offset ${stream.base + 3}): first label ${head.firstLabel} is not below K = ${k}`);
  }
  const labels = k <= NEAREST_MAX_K ? new Uint8Array(width * height) : new Uint16Array(width * height);
  labels[0] = head.firstLabel;
  const ctx = new PassContext(labels, width, height, k, channels, palette, rans, extra, head.method === PACKED_METHOD);
  for (const pass of passes(width, height)) decodePass(ctx, pass); // §11.9 step 3
  rans.finish(); // §11.9 step 4
  extra.finish();
  return labels;
}

// ---------------------------------------------------------------- §11.1 fixed fields

function where(stream, pos) {
  return `label stream byte ${pos - stream.base} (file offset ${pos})`;
}

function need(stream, pos, size, what) {
  if (pos + size > stream.end) {
    fail(12, `${where(stream, pos)}: reading ${what} needs ${size} byte(s), but the stream ends at byte ${stream.end - stream.base}`);
  }
}

/** §11.1: method (0 or 2 here; 1 and 3 went to decodeZstdLabels and decodeRasterLabels), lanes, first label, extra bytes and presence bits, checked as rule 10 says. */
function readHead(stream) {
  const { bytes, base } = stream;
  need(stream, base, TABLES_AT, "the fixed fields");
  const method = bytes[base];
  if (method !== METHOD && method !== PACKED_METHOD) {
    fail(10, `${where(stream, base)}: method is ${method}, only ${METHOD}, ${ZSTD_METHOD}, ${PACKED_METHOD} and ${RASTER_METHOD} are defined`);
  }
  const lanes = bytes[base + 1] | (bytes[base + 2] << 8);
  if (lanes === 0) fail(10, `${where(stream, base + 1)}: lanes is 0, must be 1 … 65535`);
  const firstLabel = bytes[base + 3] | (bytes[base + 4] << 8);
  const extraBytes = readU32(bytes, base + 5);
  const presence = bytes.subarray(base + 9, base + 9 + PRESENCE_BYTES);
  for (let t = CONTEXTS; t < PRESENCE_BYTES * 8; t++) {
    if (presence[t >> 3] & (1 << (t & 7))) {
      fail(10, `${where(stream, base + 9 + (t >> 3))}: presence bit ${t} is set, but there are only ${CONTEXTS} contexts (0 … 96)`);
    }
  }
  return { method, lanes, firstLabel, extraBytes, presence };
}

function readU32(bytes, pos) {
  return (bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16)) + bytes[pos + 3] * 0x1000000;
}

// ---------------------------------------------------------------- §11.6 frequency tables

/** §11.6: a context's alphabet size. */
function alphabetSize(t) {
  return t <= 40 ? TOKENS : CHOICE_ALPHABET[(t - 41) % 7];
}

/**
 * §11.6: the tables of the contexts whose presence bit is set, in increasing t,
 * as bytes (method 0) or as one packed bit string (method 2, §11.13).
 * Each becomes a slot lookup (§11.8): for every slot 0 … 4095 one u32 holding the
 * symbol s (7 bits), slot − start(s) (12 bits) and freq(s) (13 bits).
 */
function readTables(stream, presence, method) {
  const reader = method === PACKED_METHOD ? new PackedTables(stream) : new ByteTables(stream);
  const tableAt = new Int32Array(CONTEXTS).fill(-1); // where context t's slots start, or −1: no table
  const freqs = [];
  for (let t = 0; t < CONTEXTS; t++) {
    if (!(presence[t >> 3] & (1 << (t & 7)))) continue;
    tableAt[t] = freqs.length * SCALE;
    freqs.push(reader.table(t, alphabetSize(t)));
  }
  const end = reader.end();
  const slots = new Uint32Array(freqs.length * SCALE);
  freqs.forEach((freq, table) => {
    let start = 0;
    for (let s = 0; s < freq.length; s++) {
      for (let slot = start; slot < start + freq[s]; slot++) slots[table * SCALE + slot] = s | ((slot - start) << 7) | (freq[s] << 19);
      start += freq[s];
    }
  });
  return { tableAt, slots, end };
}

/** §11.6, method 0: each table is n (u8), then the varint frequencies of symbols 0 … n − 2. */
class ByteTables {
  constructor(stream) {
    this.stream = stream;
    this.pos = stream.base + TABLES_AT;
  }

  /** Context t's frequencies, summing to 4096 (n of them; symbols n and above have none). */
  table(t, alphabet) {
    const { stream } = this;
    need(stream, this.pos, 1, `the size n of the table of context ${t}`);
    const n = stream.bytes[this.pos];
    if (n === 0 || n > alphabet) {
      fail(10, `${where(stream, this.pos)}: table of context ${t} has n = ${n}, must be 1 … ${alphabet}`);
    }
    this.pos += 1;
    const freq = new Uint16Array(n);
    const at = this.pos;
    let sum = 0;
    for (let s = 0; s < n - 1; s++) {
      const [f, size] = readFrequency(stream, this.pos, t, s);
      sum += f;
      freq[s] = f;
      this.pos += size;
    }
    // Checked once the table is read: a table cut short by the stream's end is rule 12 first.
    if (sum > SCALE - 1) {
      fail(10, `${where(stream, at)}: table of context ${t}: frequencies of symbols 0 … ${n - 2} sum to ${sum}, more than ${SCALE - 1}`);
    }
    freq[n - 1] = SCALE - sum;
    return freq;
  }

  /** Where the lane states start. */
  end() {
    return this.pos;
  }
}

/** §11.6: one frequency, a varint of at most 2 bytes (7 bits each, least significant group first). */
function readFrequency(stream, pos, t, s) {
  const { bytes } = stream;
  let value = 0;
  for (let i = 0; i < MAX_FREQ_BYTES; i++) {
    need(stream, pos + i, 1, `frequency ${s} of the table of context ${t}`);
    const byte = bytes[pos + i];
    value |= (byte & 0x7f) << (7 * i);
    if (!(byte & 0x80)) return [value, i + 1];
  }
  fail(10, `${where(stream, pos)}: frequency ${s} of the table of context ${t} is longer than ${MAX_FREQ_BYTES} bytes`);
}

/**
 * §11.13, method 2: the tables as one bit string from stream byte 22, most significant bit first.
 * Each is p (4 bits), n − 1 (w bits), then f(0) … f(n − 2) as Exp-Golomb codes, scaled by 2^(12 − p).
 */
class PackedTables {
  constructor(stream) {
    this.stream = stream;
    this.at = stream.base + TABLES_AT;
    this.bit = 0; // bits read from `at`
    this.bits = (stream.end - this.at) * 8; // the label stream's end is the bit string's end (rule 12)
  }

  /** The next `n` bits (n ≤ 12) as an unsigned integer; past the stream's end is rule 12. */
  read(n, what) {
    if (this.bit + n > this.bits) {
      fail(12, `${this.place()}: reading ${what} needs ${n} bit(s), but the stream ends at byte ${this.stream.end - this.stream.base}`);
    }
    const { bytes } = this.stream;
    let value = 0;
    for (let i = 0; i < n; i++, this.bit++) value = (value << 1) | ((bytes[this.at + (this.bit >> 3)] >> (7 - (this.bit & 7))) & 1);
    return value;
  }

  place() {
    return `${where(this.stream, this.at + (this.bit >> 3))} bit ${this.bit & 7}`;
  }

  /** Context t's frequencies, scaled to sum to 4096 (n of them; symbols n and above have none). */
  table(t, alphabet) {
    const at = this.place();
    const p = this.read(PRECISION_BITS, `the precision p of the table of context ${t}`);
    if (p > SCALE_BITS) fail(10, `${at}: table of context ${t} has precision p = ${p}, at most ${SCALE_BITS}`);
    // w is the bit length of alphabet − 1: 7 for the 72 tokens, 2 or 3 for choices.
    const n = this.read(32 - Math.clz32(alphabet - 1), `the size n − 1 of the table of context ${t}`) + 1;
    if (n > alphabet) fail(10, `${at}: table of context ${t} has n = ${n}, must be 1 … ${alphabet}`);
    const freq = new Uint16Array(n); // f ≤ 2^13 − 2 until the sum is checked
    let sum = 0;
    for (let s = 0; s < n - 1; s++) {
      freq[s] = this.expGolomb(t, s);
      sum += freq[s];
    }
    // Checked once the table is read: a table cut short by the stream's end is rule 12 first.
    if (sum > 2 ** p - 1) {
      fail(10, `${at}: table of context ${t}: frequencies of symbols 0 … ${n - 2} sum to ${sum}, more than 2^${p} − 1 = ${2 ** p - 1}`);
    }
    freq[n - 1] = 2 ** p - sum;
    const scale = SCALE_BITS - p;
    for (let s = 0; s < n; s++) freq[s] <<= scale;
    return freq;
  }

  /** One Exp-Golomb code: z zero bits (at most 12: a 13th is rule 10), a one bit, z bits x; f = 2^z − 1 + x. */
  expGolomb(t, s) {
    const what = `frequency ${s} of the table of context ${t}`;
    const at = this.place();
    let z = 0;
    while (this.read(1, what) === 0) {
      if (++z > MAX_ZEROS) fail(10, `${at}: ${what} starts with more than ${MAX_ZEROS} zero bits`);
    }
    return 2 ** z - 1 + this.read(z, what);
  }

  /** After the last table the rest of its byte must be zero bits (rule 10); returns where the lane states start. */
  end() {
    const used = Math.ceil(this.bit / 8);
    const rest = (8 - (this.bit & 7)) & 7;
    if (rest > 0 && (this.stream.bytes[this.at + used - 1] & ((1 << rest) - 1)) !== 0) {
      fail(10, `${this.place()}: the padding after the last table is not zero bits`);
    }
    return this.at + used;
  }
}

// ---------------------------------------------------------------- §11.9 step 1: lengths and lane states

/** §11.9 step 1: 4·L + E bytes must follow the tables (rule 11), an even rest (rule 10), lane states ≥ 2^16 (rule 10). */
function splitParts(stream, head, tablesEnd) {
  const left = stream.end - tablesEnd;
  const fixed = 4 * head.lanes + head.extraBytes;
  if (fixed > left) {
    fail(11, `${where(stream, tablesEnd)}: ${head.lanes} lane state(s) and ${head.extraBytes} extra byte(s) need ${fixed} bytes, only ${left} follow the tables`);
  }
  const wordBytes = left - fixed;
  if (wordBytes % 2 !== 0) {
    fail(10, `${where(stream, tablesEnd + fixed)}: ${wordBytes} word bytes follow the extra bits, must be an even number`);
  }
  const states = new Uint32Array(head.lanes); // lanes ≤ left / 4, checked above
  for (let lane = 0; lane < head.lanes; lane++) {
    const pos = tablesEnd + 4 * lane;
    states[lane] = readU32(stream.bytes, pos);
    if (states[lane] < LANE_FLOOR) {
      fail(10, `${where(stream, pos)}: lane ${lane} starts in state ${states[lane]}, must be at least ${LANE_FLOOR}`);
    }
  }
  const extraAt = tablesEnd + 4 * head.lanes;
  return { states, extraAt, wordsAt: extraAt + head.extraBytes, wordsEnd: stream.end };
}

// ---------------------------------------------------------------- §11.8 rANS

/** §11.8: L lanes over one shared sequence of u16 words; symbol i goes to lane i mod L. */
class RansDecoder {
  constructor(bytes, parts, tables, base) {
    this.bytes = bytes;
    this.states = parts.states;
    this.lanes = parts.states.length;
    this.lane = 0;
    this.pos = parts.wordsAt;
    this.end = parts.wordsEnd;
    this.base = base;
    this.tableAt = tables.tableAt;
    this.slots = tables.slots;
    this.count = 0; // symbols decoded so far, for messages
  }

  /** One symbol of context t; a context without a table is rule 13, a missing word rule 12. */
  symbol(t) {
    const table = this.tableAt[t];
    if (table < 0) {
      fail(13, `symbol ${this.count}: context ${t} is needed but has no table`);
    }
    const lane = this.lane;
    let x = this.states[lane];
    const info = this.slots[table + (x & (SCALE - 1))];
    x = (info >>> 19) * (x >>> SCALE_BITS) + ((info >>> 7) & (SCALE - 1));
    if (x < LANE_FLOOR) {
      if (this.pos + 2 > this.end) {
        fail(12, `symbol ${this.count} (context ${t}, lane ${lane}) needs a word past the last one, at file offset ${this.pos}`);
      }
      x = x * 65536 + (this.bytes[this.pos] | (this.bytes[this.pos + 1] << 8));
      this.pos += 2;
    }
    this.states[lane] = x;
    this.lane = lane + 1 === this.lanes ? 0 : lane + 1;
    this.count++;
    return info & 127;
  }

  /** §11.9 step 4: every word read, every lane back at 2^16. */
  finish() {
    if (this.pos !== this.end) {
      fail(12, `${(this.end - this.pos) / 2} word(s) left unread after the last symbol, from file offset ${this.pos}`);
    }
    for (let lane = 0; lane < this.lanes; lane++) {
      if (this.states[lane] !== LANE_FLOOR) {
        fail(12, `lane ${lane} ends in state ${this.states[lane]}, must end in ${LANE_FLOOR}`);
      }
    }
  }
}

// ---------------------------------------------------------------- §11.7 integers: tokens and extra bits

/** §11.7: the extra-bit part, one bit string read most significant bit first. */
class ExtraBits {
  constructor(bytes, at, length, base) {
    this.bytes = bytes;
    this.at = at;
    this.length = length;
    this.byte = 0; // bytes fully or partly read
    this.bit = 0; // bits read of the current byte, 0 … 7
    this.base = base;
  }

  /** The next `n` bits (n ≤ 30) as an unsigned integer. */
  read(n) {
    const bitsLeft = (this.length - this.byte) * 8 - this.bit;
    if (n > bitsLeft) {
      fail(12, `extra bits: ${n} bit(s) needed at extra byte ${this.byte} bit ${this.bit} (file offset ${this.at + this.byte}), only ${bitsLeft} left of ${this.length} byte(s)`);
    }
    let value = 0;
    while (n > 0) {
      const avail = 8 - this.bit;
      const take = n < avail ? n : avail;
      const bits = (this.bytes[this.at + this.byte] >> (avail - take)) & ((1 << take) - 1);
      value = value * (1 << take) + bits;
      n -= take;
      this.bit += take;
      if (this.bit === 8) {
        this.bit = 0;
        this.byte++;
      }
    }
    return value;
  }

  /** §11.7: the integer of a token, reading its extra bits. */
  integer(token) {
    if (token < DIRECT_TOKENS) return token;
    const e = 4 + ((token - DIRECT_TOKENS) >> 1);
    const h = (token - DIRECT_TOKENS) & 1;
    return 2 ** e + h * 2 ** (e - 1) + this.read(e - 1);
  }

  /** §11.7, §11.9 step 4: no whole byte left, and the last byte's rest is zero bits. */
  finish() {
    const used = this.byte + (this.bit > 0 ? 1 : 0);
    if (used < this.length) {
      fail(12, `extra bits: ${this.length - used} whole byte(s) left unread, from file offset ${this.at + used}`);
    }
    if (this.bit > 0 && (this.bytes[this.at + this.byte] & ((1 << (8 - this.bit)) - 1)) !== 0) {
      fail(12, `extra bits: the padding after the last extra bit, in file offset ${this.at + this.byte}, is not zero`);
    }
  }
}

// ---------------------------------------------------------------- §11.2 passes

/** §11.2: S, the smallest integer with 2^S ≥ max(W, H). */
function levels(width, height) {
  let s = 0;
  while (2 ** s < Math.max(width, height)) s++;
  return s;
}

/** §11.2: the group's level for step d. */
function level(d) {
  return d === 1 ? 0 : d === 2 ? 1 : d <= 8 ? 2 : 3;
}

/** §11.2: every non-empty pass, coarsest step first, A then B then C, with its first pixel, step and group. */
function* passes(width, height) {
  for (let d = 2 ** (levels(width, height) - 1); d >= 1; d /= 2) {
    const lv = level(d);
    for (const [name, kind, x0, y0, diagonal] of [["A", 0, d, d, true], ["B", 1, d, 0, false], ["C", 1, 0, d, false]]) {
      if (x0 < width && y0 < height) yield { name, d, x0, y0, diagonal, group: 4 * kind + lv };
    }
  }
}

// ---------------------------------------------------------------- §11.3 candidates

const CAND = new Int32Array(6); // the candidates of the last pixel asked, most held first (§11.15 appends 2)
export const CANDIDATES = CAND; // read-only outside, for the spec's examples

/** §11.3: fill CAND with the candidates of pixel (x, y) of a pass with step d, and return its pattern (0 … 10). */
function candidates(labels, width, height, x, y, d, diagonal) {
  // An absent neighbour gets a negative value of its own, equal to no other.
  let n0 = -1;
  let n1 = -2;
  let n2 = -3;
  let n3 = -4;
  if (diagonal) {
    // Pass A: (x−d, y−d), (x+d, y−d), (x−d, y+d), (x+d, y+d); x ≥ d and y ≥ d always.
    const up = (y - d) * width;
    const right = x + d < width;
    n0 = labels[up + x - d];
    if (right) n1 = labels[up + x + d];
    if (y + d < height) {
      const down = (y + d) * width;
      n2 = labels[down + x - d];
      if (right) n3 = labels[down + x + d];
    }
  } else {
    // Passes B and C: (x, y−d), (x−d, y), (x+d, y), (x, y+d).
    const row = y * width;
    if (y >= d) n0 = labels[row - d * width + x];
    if (x >= d) n1 = labels[row + x - d];
    if (x + d < width) n2 = labels[row + x + d];
    if (y + d < height) n3 = labels[row + d * width + x];
  }
  return rankCandidates(n0, n1, n2, n3);
}

/** §11.3 on the 4 neighbours' labels in neighbour order, an absent one negative and unlike any other. */
function rankCandidates(n0, n1, n2, n3) {
  const p0 = n0 >= 0;
  const p1 = n1 >= 0;
  const p2 = n2 >= 0;
  const p3 = n3 >= 0;
  const present = +p0 + +p1 + +p2 + +p3;
  const e01 = n0 === n1;
  const e02 = n0 === n2;
  const e03 = n0 === n3;
  const e12 = n1 === n2;
  const e13 = n1 === n3;
  const e23 = n2 === n3;
  // Each present neighbour's label: how many present neighbours hold it, and whether it is the first to.
  const first1 = p1 && !e01;
  const first2 = p2 && !e02 && !e12;
  const first3 = p3 && !e03 && !e13 && !e23;
  const m = +p0 + +first1 + +first2 + +first3;
  // The most held label, the earliest in neighbour order among ties, goes first; the rest keep neighbour order.
  let best = p0 ? 0 : 1;
  let held = p0 ? 1 + +e01 + +e02 + +e03 : 1 + +e12 + +e13;
  if (first1 && 1 + +e12 + +e13 > held) {
    best = 1;
    held = 1 + +e12 + +e13;
  }
  if (first2 && 1 + +e23 > held) {
    best = 2;
    held = 1 + +e23;
  }
  CAND[0] = best === 0 ? n0 : best === 1 ? n1 : n2;
  let i = 1;
  if (p0 && best !== 0) CAND[i++] = n0;
  if (first1 && best !== 1) CAND[i++] = n1;
  if (first2 && best !== 2) CAND[i++] = n2;
  if (first3) CAND[i++] = n3;
  if (m === 1) return present === 4 ? 0 : present === 3 ? 5 : present === 2 ? 8 : 10;
  if (present === 4) return m === 2 ? (held === 3 ? 1 : 2) : m === 3 ? 3 : 4;
  if (present === 3) return m === 2 ? 6 : 7;
  return 9;
}

// ---------------------------------------------------------------- §11.4 what a pass codes

/** A growable typed array, for lists bounded by a pass's pixel count but usually far shorter. */
function grown(array, n) {
  if (n <= array.length) return array;
  let size = array.length;
  while (size < n) size *= 2;
  const next = new array.constructor(size);
  next.set(array);
  return next;
}

/** The decoder state shared by the passes, and scratch lists reused from pass to pass. */
class PassContext {
  constructor(labels, width, height, k, channels, palette, rans, extra, fromMean) {
    Object.assign(this, { labels, width, height, k, channels, palette, rans, extra });
    // §11.13: method 2 counts K ≤ 256 escape ranks from the entry nearest the neighbours' mean colour.
    this.fromMean = fromMean && k <= NEAREST_MAX_K;
    Object.assign(this, paletteOrders(k, channels, palette));
    // The pass's choosing pixels: pixel index, unanimous pixels before it, pattern | first candidate << 4.
    this.choosingAt = new Uint32Array(1024);
    this.choosingAfter = new Uint32Array(1024);
    this.choosingInfo = new Uint32Array(1024);
    this.places = new Float64Array(1024); // the escapes' numbers among the unanimous pixels (§11.4 item 2)
    this.escapes = new Uint32Array(1024); // pixel index of each escaping pixel, raster order
    this.tokens = new Uint8Array(1024);
    this.values = new Float64Array(1024);
  }
}

/** §11.4: one pass: escape count, gaps, choices, escape ranks; sets the pass's labels. */
function decodePass(ctx, pass) {
  const { unanimous, choosing } = predictPass(ctx, pass);
  const escapeCount = unanimous > 0 ? decodeEscapeCount(ctx, unanimous) : 0;
  decodeGaps(ctx, pass, escapeCount, unanimous);
  const escapes = decodeChoices(ctx, pass, escapeCount, choosing);
  decodeEscapeRanks(ctx, pass, escapes);
}

/** §11.3, §11.4: give every unanimous pixel its candidate and list the choosing ones; returns u and the choosing count. */
function predictPass(ctx, { d, x0, y0, diagonal }) {
  const { labels, width, height } = ctx;
  const up = d * width; // index distance to the neighbour d rows away
  let { choosingAt: at, choosingAfter: after, choosingInfo: info } = ctx;
  let choosing = 0;
  let number = 0;
  for (let y = y0; y < height; y += 2 * d) {
    // Inside rows and columns all 4 neighbours are present: test the common case, one label for all, inline.
    const rowInside = y + d < height && (diagonal || y >= d);
    const row = y * width;
    for (let x = x0; x < width; x += 2 * d) {
      const i = row + x;
      let pattern;
      if (rowInside && x + d < width && x >= d) {
        // All 4 neighbours present: one label for all is the common case, tested inline.
        const n0 = diagonal ? labels[i - up - d] : labels[i - up];
        const n1 = diagonal ? labels[i - up + d] : labels[i - d];
        const n2 = diagonal ? labels[i + up - d] : labels[i + d];
        const n3 = diagonal ? labels[i + up + d] : labels[i + up];
        if (n1 === n0 && n2 === n0 && n3 === n0) {
          labels[i] = n0;
          number++;
          continue;
        }
        pattern = rankCandidates(n0, n1, n2, n3);
      } else {
        pattern = candidates(labels, width, height, x, y, d, diagonal);
      }
      if (PATTERN_M[pattern] === 1) {
        labels[i] = CAND[0];
      } else {
        if (choosing === at.length) {
          at = ctx.choosingAt = grown(at, choosing + 1);
          after = ctx.choosingAfter = grown(after, choosing + 1);
          info = ctx.choosingInfo = grown(info, choosing + 1);
        }
        at[choosing] = i;
        after[choosing] = number - choosing;
        info[choosing] = pattern | (CAND[0] << 4);
        choosing++;
      }
      number++;
    }
  }
  return { unanimous: number - choosing, choosing };
}

function passName({ name, d }) {
  return `pass ${name} of step ${d}`;
}

/** §11.4 item 1: the escape count e (context 0), then its extra bits; e ≤ u (rule 11). */
function decodeEscapeCount(ctx, unanimous) {
  const e = ctx.extra.integer(ctx.rans.symbol(0));
  if (e > unanimous) fail(11, `escape count ${e} is more than the ${unanimous} unanimous pixel(s) of the pass`);
  return e;
}

/** §11.4 item 2: e gap tokens (context 1 + group), then their extra bits; the escapes' numbers among the unanimous pixels go to ctx.places. */
function decodeGaps(ctx, pass, e, unanimous) {
  if (e === 0) return;
  ctx.tokens = grown(ctx.tokens, e); // e ≤ u, checked
  ctx.places = grown(ctx.places, e);
  const { rans, extra, tokens, places } = ctx;
  for (let i = 0; i < e; i++) tokens[i] = rans.symbol(1 + pass.group);
  let place = -1;
  for (let i = 0; i < e; i++) {
    place += 1 + extra.integer(tokens[i]);
    places[i] = place;
  }
  if (place >= unanimous) {
    fail(13, `${passName(pass)}: escape gaps reach unanimous pixel ${place}, but the pass has ${unanimous} (0 … ${unanimous - 1})`);
  }
}

/**
 * §11.4 item 3: a choice for each choosing pixel (context 41 + 7·group + c), in raster order.
 * Lists every escaping pixel of the pass in ctx.escapes, in raster order, and returns how many.
 */
function decodeChoices(ctx, { d, x0, y0, diagonal, group }, e, choosing) {
  const { labels, width, height, rans, places } = ctx;
  ctx.escapes = grown(ctx.escapes, e + choosing); // bounded by the pass's pixels
  const { escapes, choosingAt, choosingAfter, choosingInfo } = ctx;
  const columns = Math.ceil((width - x0) / (2 * d));
  const pixel = (number) => (y0 + 2 * d * Math.floor(number / columns)) * width + x0 + 2 * d * (number % columns);
  const contexts = 41 + 7 * group;
  let count = 0;
  let next = 0; // the next unanimous escape
  for (let j = 0; j < choosing; j++) {
    // Unanimous escapes before this choosing pixel go first: their number in the pass is their place + j.
    while (next < e && places[next] < choosingAfter[j]) escapes[count++] = pixel(places[next++] + j);
    const at = choosingAt[j];
    const info = choosingInfo[j];
    const pattern = info & 15;
    const s = rans.symbol(contexts + PATTERN_CHOICE[pattern]);
    if (s === 0) {
      labels[at] = info >>> 4;
    } else if (s === PATTERN_M[pattern]) {
      escapes[count++] = at;
    } else {
      candidates(labels, width, height, at % width, Math.floor(at / width), d, diagonal);
      labels[at] = CAND[s];
    }
  }
  while (next < e) escapes[count++] = pixel(places[next++] + choosing);
  return count;
}

/** §11.4 item 4: an escape rank token for each escaping pixel (context 9 + 4·group + m − 1), then their extra bits; §11.5 gives the labels. */
function decodeEscapeRanks(ctx, pass, count) {
  if (count === 0) return;
  ctx.tokens = grown(ctx.tokens, count);
  ctx.values = grown(ctx.values, count);
  const { labels, width, height, rans, extra, escapes, tokens, values } = ctx;
  const { d, diagonal, group } = pass;
  for (let i = 0; i < count; i++) {
    const at = escapes[i];
    const m = PATTERN_M[candidates(labels, width, height, at % width, Math.floor(at / width), d, diagonal)];
    tokens[i] = rans.symbol(9 + 4 * group + m - 1);
  }
  for (let i = 0; i < count; i++) values[i] = extra.integer(tokens[i]);
  for (let i = 0; i < count; i++) {
    const at = escapes[i];
    const x = at % width;
    const y = Math.floor(at / width);
    const pattern = candidates(labels, width, height, x, y, d, diagonal);
    labels[at] = escapeLabel(ctx, values[i], pattern, pass, x, y);
  }
}

// ---------------------------------------------------------------- §11.5 escape ranks

/** §11.5: the label an escape rank r names, given the pixel's pattern and its m candidates in CAND. */
function escapeLabel(ctx, r, pattern, pass, x, y) {
  const { k } = ctx;
  const m = PATTERN_M[pattern];
  const pixel = () => `${passName(pass)}, pixel (${x}, ${y})`;
  if (k > NEAREST_MAX_K) {
    const ref = CAND[0]; // §11.13: unchanged by method 2
    const label = r % 2 === 0 ? ref + r / 2 : ref - (r + 1) / 2;
    if (label < 0 || label >= k) fail(13, `${pixel()}: escape rank ${r} from label ${ref} gives label ${label}, outside 0 … ${k - 1}`);
    return label;
  }
  if (r >= k - m) fail(13, `${pixel()}: escape rank ${r} is not below K − m = ${k - m}`);
  // §11.13: a unanimous pixel's mean is its candidate's colour, whose order is its candidate's (ties by index alike).
  const ref = ctx.fromMean && m > 1 ? nearestToMean(ctx, pattern) : CAND[0];
  return remainingEntry(ctx, ref, m, r);
}

const CAND_POSITIONS = new Int32Array(6); // where the candidates stand in a distance order, ascending

/** §11.5: the entry at position r of ref's distance order once the m candidates in CAND are removed (r < K − m, checked). */
function remainingEntry(ctx, ref, m, r) {
  const order = nearestOrder(ctx, ref);
  const position = ctx.positions[ref];
  for (let j = 0; j < m; j++) {
    let i = j;
    for (const at = position[CAND[j]]; i > 0 && CAND_POSITIONS[i - 1] > at; i--) CAND_POSITIONS[i] = CAND_POSITIONS[i - 1];
    CAND_POSITIONS[i] = position[CAND[j]];
  }
  // Position r among the rest is position r plus the candidates at or before it in the whole order.
  let at = r;
  for (let j = 0; j < m; j++) if (CAND_POSITIONS[j] <= at) at++;
  return order[at];
}

/**
 * The caches escape ranks need (K ≤ 256): each ref's distance order (§11.5), each entry's place in
 * it and its distance from ref, not squared, made at a ref's first use; the entry nearest each mean
 * colour (§11.13), a direct-mapped cache made at the first use.
 */
function paletteOrders(k, channels, palette) {
  const n = k <= NEAREST_MAX_K ? k : 0;
  // The typed arrays start empty rather than null, so the object keeps one shape for the JIT.
  return { k, channels, palette, nearest: new Array(n).fill(null), positions: new Array(n).fill(null), roots: new Array(n).fill(null), refKeys: new Float64Array(0), refs: new Int16Array(0) };
}

/** §11.5: all K palette entries by squared distance to entry ref, ties by index (once per ref, with ctx.positions[ref] and ctx.roots[ref]). */
function nearestOrder(ctx, ref) {
  if (ctx.nearest[ref] !== null) return ctx.nearest[ref];
  const { k, channels, palette } = ctx;
  const keys = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let distance = 0;
    for (let c = 0; c < channels; c++) {
      const diff = palette[i * channels + c] - palette[ref * channels + c];
      distance += diff * diff;
    }
    keys[i] = distance * NEAREST_MAX_K + i;
  }
  keys.sort();
  const order = new Uint8Array(k);
  const position = new Uint8Array(k);
  const roots = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    order[i] = keys[i] % NEAREST_MAX_K;
    position[order[i]] = i;
    roots[i] = Math.sqrt(Math.floor(keys[i] / NEAREST_MAX_K));
  }
  ctx.nearest[ref] = order;
  ctx.positions[ref] = position;
  ctx.roots[ref] = roots;
  return order;
}

const REF_CACHE_BITS = 16;
const MEAN = new Int32Array(4); // the mean colour of the last pixel asked

/**
 * §11.13: the palette entry nearest the rounded mean colour of the pixel's present
 * neighbours (every one counts, so a candidate held by 3 counts 3 times); ties to
 * the lower index.
 */
function nearestToMean(ctx, pattern) {
  const { channels, palette } = ctx;
  const present = PATTERN_PRESENT[pattern];
  const counts = pattern * 4;
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (let j = 0; j < 4 && PATTERN_COUNTS[counts + j] > 0; j++) sum += PATTERN_COUNTS[counts + j] * palette[CAND[j] * channels + c];
    MEAN[c] = Math.floor((2 * sum + present) / (2 * present)); // 0 … 255
  }
  return entryNearestMean(ctx, CAND[0]);
}

/**
 * §11.13: the palette entry nearest the colour in MEAN, ties to the lower index, searched from
 * entry `anchor` outwards (any entry gives the right answer; one near the mean gives it soonest).
 * Memoised per mean colour in a direct-mapped cache of 2^16 slots: bounded, where a Map of
 * every RGBA mean met could outgrow memory (and V8's 2^24 entries).
 */
function entryNearestMean(ctx, anchor) {
  const { channels, palette, k } = ctx;
  let key = 0;
  for (let c = 0; c < channels; c++) key = key * 256 + MEAN[c];
  if (ctx.refs.length === 0) {
    ctx.refKeys = new Float64Array(1 << REF_CACHE_BITS); // a mean colour, one byte a channel
    ctx.refs = new Int16Array(1 << REF_CACHE_BITS).fill(-1);
  }
  const slot = Math.imul(key | 0, 0x9e3779b1) >>> (32 - REF_CACHE_BITS);
  if (ctx.refs[slot] >= 0 && ctx.refKeys[slot] === key) return ctx.refs[slot];
  // Walk the entries nearest the anchor first: by the triangle inequality an entry e is at least
  // |e − anchor| − |mean − anchor| from the mean, so once that passes the best distance
  // found (with a margin for rounding) no later entry can reach or tie it. The mean usually lies
  // near its candidates, so only a few entries are measured.
  const order = nearestOrder(ctx, anchor);
  const roots = ctx.roots[anchor];
  let reach = 0;
  for (let c = 0; c < channels; c++) reach += (palette[anchor * channels + c] - MEAN[c]) ** 2;
  reach = Math.sqrt(reach);
  let ref = k;
  let best = Infinity;
  for (let j = 0; j < k && roots[j] - reach <= Math.sqrt(best) + 1e-6; j++) {
    const i = order[j];
    let distance = 0;
    for (let c = 0; c < channels; c++) {
      const diff = palette[i * channels + c] - MEAN[c];
      distance += diff * diff;
    }
    if (distance < best || (distance === best && i < ref)) {
      best = distance;
      ref = i;
    }
  }
  ctx.refKeys[slot] = key;
  ctx.refs[slot] = ref;
  return ref;
}

// ---------------------------------------------------------------- §11.11 method 1: one Zstandard frame

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const ZSTD_MAX_BLOCK = 131072;

/** §11.11: the labels from a method-1 stream, checking steps 1–5 in order. */
function decodeZstdLabels(stream, width, height, k) {
  const { bytes, base, end } = stream;
  const wide = k > 256; // B = 2 bytes a label
  const size = width * height * (wide ? 2 : 1);
  // Step 1: magic and frame header descriptor.
  for (let i = 0; i < 4; i++) {
    if (base + 1 + i >= end || bytes[base + 1 + i] !== ZSTD_MAGIC[i]) fail(10, `${where(stream, base + 1)}: not the Zstandard magic 28 b5 2f fd`);
  }
  if (base + 5 >= end) fail(10, `${where(stream, base + 5)}: the stream ends before the frame header descriptor`);
  const fhd = bytes[base + 5];
  if (!(fhd & 0x20)) fail(10, `${where(stream, base + 5)}: frame header descriptor ${fhd}: the single-segment bit (0x20) must be set`);
  if (fhd & 0x08) fail(10, `${where(stream, base + 5)}: frame header descriptor ${fhd}: the reserved bit (0x08) must be 0`);
  if (fhd & 0x04) fail(10, `${where(stream, base + 5)}: frame header descriptor ${fhd}: a content checksum (0x04) is not allowed`);
  if (fhd & 0x03) fail(10, `${where(stream, base + 5)}: frame header descriptor ${fhd}: a dictionary id (0x03) is not allowed`);
  // Step 2: the content size, F = 1, 2, 4 or 8 bytes.
  const fieldBytes = [1, 2, 4, 8][fhd >> 6];
  let pos = base + 6;
  if (pos + fieldBytes > end) fail(12, `${where(stream, pos)}: the stream ends inside the frame's content size`);
  let contentSize = 0;
  for (let i = fieldBytes - 1; i >= 0; i--) contentSize = contentSize * 256 + bytes[pos + i];
  if (fieldBytes === 2) contentSize += 256;
  if (contentSize !== size) fail(11, `${where(stream, pos)}: the frame's content size is ${contentSize} bytes, the header needs ${size}`);
  pos += fieldBytes;
  // Step 3: walk the blocks to the frame's end.
  const blockMax = Math.min(size, ZSTD_MAX_BLOCK);
  for (;;) {
    if (pos + 3 > end) fail(12, `${where(stream, pos)}: the stream ends inside a block header`);
    const head = bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16);
    const last = head & 1, type = (head >> 1) & 3, blockSize = head >>> 3;
    if (type === 3) fail(10, `${where(stream, pos)}: block type 3 is reserved`);
    if (blockSize > blockMax) fail(10, `${where(stream, pos)}: block size ${blockSize}, at most ${blockMax}`);
    const body = type === 1 ? 1 : blockSize;
    if (pos + 3 + body > end) fail(12, `${where(stream, pos)}: the block needs ${body} bytes, but the stream ends at byte ${end - base}`);
    pos += 3 + body;
    if (last) break;
  }
  if (pos !== end) fail(12, `${where(stream, pos)}: ${end - pos} byte(s) left over after the frame`);
  // Step 4: decompress block by block into the N·B bytes, stopping at the first byte beyond them.
  const content = new Uint8Array(size);
  let filled = 0;
  try {
    const inflater = new ZstdDecompress((chunk) => {
      if (filled + chunk.length > size) throw new Error(`the frame holds more than its content size, ${size} bytes`);
      content.set(chunk, filled);
      filled += chunk.length;
    });
    inflater.push(bytes.subarray(base + 1, end), true);
  } catch (error) {
    fail(10, `${where(stream, base + 1)}: bad Zstandard data: ${error.message}`);
  }
  if (filled !== size) fail(10, `${where(stream, base + 1)}: the frame holds ${filled} bytes, its content size says ${size}`);
  // Step 5: every label below K, little-endian when B = 2.
  const labels = wide ? new Uint16Array(width * height) : new Uint8Array(content.buffer, content.byteOffset, size);
  if (wide) for (let i = 0; i < labels.length; i++) labels[i] = content[2 * i] | (content[2 * i + 1] << 8);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= k) fail(13, `${where(stream, base + 1)}: label ${labels[i]} of pixel ${i} is not below K = ${k}`);
  }
  return labels;
}

// ---------------------------------------------------------------- §11.15 method 3: raster order, adaptive counts, a range coder

// §11.15: an adaptive table starts every frequency here, adds a step after each decode, and halves above the limit.
const ADAPT_START = 16;
const ADAPT_STEP = 24;
const ADAPT_LIMIT = 8192;
// §11.15: a context is 21 bits, m in bits 12 … 14, a₁ in 15 … 17, a₂ in 18 … 20; one escape table per m = 0 … 6.
const RASTER_CONTEXT_BITS = 21;
const M_SHIFT = 12;
const A1_SHIFT = 15;
const A2_SHIFT = 18;
const FIELD_MASK = 7; // m, a₁ and a₂ are 3 bits each
const P1_APPENDED = 5; // a₁ when P₁ was appended
const P2_APPENDED = 6; // a₂ when P₂ was appended
const ESCAPE_TABLES = 7;
// A choice table of m + 1 ≤ 7 symbols takes 8 places of the pool, its total in the last.
const CHOICE_STRIDE = 8;
const CHOICE_TOTAL = 7;
// §11.15: ranks below this are their own token.
const DIRECT_RANKS = 8;
// §11.15: the range decoder takes in a byte whenever range falls below this.
const RANGE_FLOOR = 2 ** 24;
// §11.15 "Two predictions": tables of 2^18 slots; a slot is FNV-1a over label + 1 of a list of pixels, folded.
const SLOT_BITS = 18;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const FNV_OFFSET = 2166136261;
const FNV_PRIME = 16777619;
const FOLD_SHIFT = 15;
// The long list as (dx, dy), in the spec's order; the short list is its first SHORT_LIST.
const LONG_DX = Int32Array.of(-1, 0, -1, 1, -2, 0, 1, -1, -3, 2);
const LONG_DY = Int32Array.of(0, -1, -1, -1, 0, -2, -2, -2, 0, -1);
const SHORT_LIST = 3;

/** §11.15: the labels of a method-3 stream, every pixel in raster order, then the end checks. */
function decodeRasterLabels(stream, { width, height, k, channels, palette }) {
  if (k > NEAREST_MAX_K) {
    fail(10, `${where(stream, stream.base)}: method 3 is defined only for K ≤ ${NEAREST_MAX_K}, the header has K = ${k}`);
  }
  const bytes = stream.bytes;
  need(stream, stream.base + 1, 1, "the stripe count");
  const stripes = bytes[stream.base + 1];
  if (stripes === 0 || stripes > height) {
    fail(10, `${where(stream, stream.base + 1)}: ${stripes} stripes, must be 1 … ${Math.min(255, height)} (at most H)`);
  }
  // The S − 1 lengths, then the parts: both must fit before any stripe is decoded (rule 11).
  const lengthsAt = stream.base + 2;
  let start = lengthsAt + 4 * (stripes - 1);
  if (start > stream.end) {
    fail(11, `${where(stream, lengthsAt)}: ${stripes - 1} stripe lengths need ${4 * (stripes - 1)} bytes, the stream has ${stream.end - lengthsAt}`);
  }
  const ends = [];
  let total = 0;
  for (let i = 0; i < stripes - 1; i++) {
    total += readU32(bytes, lengthsAt + 4 * i);
    ends.push(start + total);
  }
  if (start + total > stream.end) {
    fail(11, `${where(stream, lengthsAt)}: the stripe lengths add up to ${total} bytes, ${stream.end - start} follow them`);
  }
  ends.push(stream.end);
  const labels = new Uint8Array(width * height);
  const orders = paletteOrders(k, channels, palette);
  for (let i = 0; i < stripes; i++) {
    const y0 = Math.floor((i * height) / stripes);
    const y1 = Math.floor(((i + 1) * height) / stripes);
    decodeStripe(new RangeDecoder(stream, width, start, ends[i], y0), labels.subarray(y0 * width, y1 * width), width, y1 - y0, k, orders);
    start = ends[i];
  }
  return labels;
}

/** §11.15: one stripe, decoded as a whole image of `rows` rows into `labels` (its rows of the label map). */
function decodeStripe(coder, labels, width, rows, k, orders) {
  const history = new HistoryTables();
  const model = new RasterModel(k);
  for (let y = 0, i = 0; y < rows; y++) {
    for (let x = 0; x < width; x++, i++) {
      coder.pixel = i;
      const t = rasterContext(labels, width, x, y, history);
      const m = (t >>> M_SHIFT) & FIELD_MASK;
      let label = -1;
      if (m > 0) {
        // Step 1: a choice from the context's table, made when the context is first met.
        const at = model.choiceTable(t, m + 1);
        const s = coder.adaptive(model.choices, at, m + 1, model.choices, at + CHOICE_TOTAL);
        if (s < m) label = CAND[s];
      }
      if (label < 0) label = rasterEscape(coder, model, orders, labels, width, x, y, t); // steps 2 and 3
      labels[i] = label;
      history.remember(label); // step 4
    }
  }
  coder.finish();
}

/**
 * §11.15: the context t of pixel (x, y) from the labels decoded before it and the history tables
 * (m in bits 12 … 14), with its m candidates in CAND and its slots found in `history`.
 * Exported for the spec's examples.
 */
export function rasterContext(labels, width, x, y, history) {
  const i = y * width + x;
  // An absent neighbour is −1 here, so two absent neighbours agree and never agree with a present one.
  const w = x > 0 ? labels[i - 1] : -1;
  const n = y > 0 ? labels[i - width] : -1;
  const ne = y > 0 && x + 1 < width ? labels[i - width + 1] : -1;
  const nw = y > 0 && x > 0 ? labels[i - width - 1] : -1;
  const ww = x > 1 ? labels[i - 2] : -1;
  const nn = y > 1 ? labels[i - 2 * width] : -1;
  const t =
    (w === n) | ((w === ne) << 1) | ((w === nw) << 2) | ((n === ne) << 3) | ((n === nw) << 4) | ((ne === nw) << 5) |
    ((w < 0) << 6) | ((n < 0) << 7) | ((ne < 0) << 8) | ((nw < 0) << 9) |
    ((ww === w) << 10) | ((nn === n) << 11);
  // The neighbour candidates: §11.3 ranks with the absent neighbours unlike each other and unlike any label.
  let m = x === 0 && y === 0 ? 0 : PATTERN_M[rankCandidates(w, n < 0 ? -2 : n, ne < 0 ? -3 : ne, nw < 0 ? -4 : nw)];
  history.find(labels, width, x, y);
  const p1 = history.long[history.longSlot] - 1; // −1: missing
  const p2 = history.short[history.shortSlot] - 1;
  let a1 = 0;
  let a2 = 0;
  if (p1 >= 0) {
    a1 = candidateIndex(p1, m) + 1;
    if (a1 === 0) {
      CAND[m++] = p1;
      a1 = P1_APPENDED;
    }
  }
  if (p2 >= 0) {
    a2 = candidateIndex(p2, m) + 1;
    if (a2 === 0) {
      CAND[m++] = p2;
      a2 = P2_APPENDED;
    }
  }
  return t | (m << M_SHIFT) | (a1 << A1_SHIFT) | (a2 << A2_SHIFT);
}

/** Where `label` stands among the first m candidates in CAND, or −1. */
function candidateIndex(label, m) {
  for (let j = 0; j < m; j++) if (CAND[j] === label) return j;
  return -1;
}

/** §11.15 steps 2 and 3: an escaping pixel's token, extra bits and rank r (< K − m, rule 13), and the label r names. */
function rasterEscape(coder, model, orders, labels, width, x, y, t) {
  const m = (t >>> M_SHIFT) & FIELD_MASK;
  const token = coder.adaptive(model.escapes, m * model.symbols, model.symbols, model.escapeTotals, m);
  let r = token;
  if (token >= DIRECT_RANKS) {
    const g = 3 + ((token - DIRECT_RANKS) >> 1);
    r = (1 << g) | (((token - DIRECT_RANKS) & 1) << (g - 1));
    let extra = 0;
    for (let b = 0; b < g - 1; b++) extra = (extra << 1) | coder.bit();
    r += extra;
  }
  const { k } = orders;
  if (r >= k - m) fail(13, `pixel (${x}, ${y}): escape rank ${r} is not below K − m = ${k - m}`);
  // Step 3: ref from the neighbours' mean colour (§11.13); pixel (0, 0) has no neighbour, and ref = 0.
  const ref = x === 0 && y === 0 ? 0 : nearestToNeighbourMean(orders, labels, width, x, y);
  return remainingEntry(orders, ref, m, r);
}

/** §11.13 with §11.15's neighbours: the entry nearest the rounded mean colour of the present W, N, NE and NW. */
function nearestToNeighbourMean(orders, labels, width, x, y) {
  const { channels, palette } = orders;
  const i = y * width + x;
  let q = 0;
  if (x > 0) NEIGHBOURS[q++] = labels[i - 1];
  if (y > 0) {
    NEIGHBOURS[q++] = labels[i - width];
    if (x + 1 < width) NEIGHBOURS[q++] = labels[i - width + 1];
    if (x > 0) NEIGHBOURS[q++] = labels[i - width - 1];
  }
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (let j = 0; j < q; j++) sum += palette[NEIGHBOURS[j] * channels + c];
    MEAN[c] = Math.floor((2 * sum + q) / (2 * q));
  }
  return entryNearestMean(orders, CAND[0]);
}

const NEIGHBOURS = new Int32Array(4); // the present W, N, NE, NW labels of the last escape asked

/** §11.15 "Tokens": the token of rank r. */
function rankToken(r) {
  if (r < DIRECT_RANKS) return r;
  const g = 31 - Math.clz32(r);
  return DIRECT_RANKS + 2 * (g - 3) + ((r >> (g - 1)) & 1);
}

/** §11.15 "Two predictions": the long and the short history table, label + 1 in each slot (0: empty). */
export class HistoryTables {
  constructor() {
    this.long = new Uint16Array(1 << SLOT_BITS); // label + 1 ≤ 256
    this.short = new Uint16Array(1 << SLOT_BITS);
    this.longSlot = 0; // the slots of the last pixel found
    this.shortSlot = 0;
  }

  /** The slots of pixel (x, y): FNV-1a over the long list's values (the short list's is the hash after 3). */
  find(labels, width, x, y) {
    let h = FNV_OFFSET | 0; // 32-bit arithmetic: Math.imul keeps the low 32 bits
    let short = h;
    for (let j = 0; j < LONG_DX.length; j++) {
      const px = x + LONG_DX[j];
      const py = y + LONG_DY[j]; // ≤ y: every listed pixel is above or left of (x, y)
      const c = px >= 0 && px < width && py >= 0 ? labels[py * width + px] + 1 : 0;
      h = Math.imul(h ^ c, FNV_PRIME);
      if (j === SHORT_LIST - 1) short = h;
    }
    this.longSlot = fold(h);
    this.shortSlot = fold(short);
  }

  /** Step 4: the pixel's label into both of the slots found last. */
  remember(label) {
    this.long[this.longSlot] = label + 1;
    this.short[this.shortSlot] = label + 1;
  }
}

/** §11.15: a 32-bit hash folded to a slot, (h XOR (h >> 15)) mod 2^18. */
function fold(h) {
  return (h ^ (h >>> FOLD_SHIFT)) & SLOT_MASK;
}

/**
 * §11.15 "Adaptive tables": the choice tables by context and the escape tables by m, frequencies and totals.
 * The choice tables of the contexts met sit in one growing pool, found through a dense index of all
 * 2^21 contexts (8 MB) rather than 2^21 × 7 frequencies set aside (28 MB); a Map from context to
 * place decoded a 512 × 512 photo no faster.
 */
class RasterModel {
  constructor(k) {
    this.index = new Int32Array(1 << RASTER_CONTEXT_BITS); // a context's table's place in the pool + 1; 0: not met yet
    this.choices = new Uint16Array(CHOICE_STRIDE * 1024); // f ≤ T ≤ 8192 + 24
    this.used = 0;
    this.symbols = 1 + rankToken(k - 1); // Z
    this.escapes = new Uint16Array(ESCAPE_TABLES * this.symbols).fill(ADAPT_START);
    this.escapeTotals = new Uint16Array(ESCAPE_TABLES).fill(ADAPT_START * this.symbols);
  }

  /** Where context t's choice table of n = m + 1 symbols starts in this.choices, set up at its first use. */
  choiceTable(t, n) {
    const known = this.index[t];
    if (known > 0) return known - 1;
    const at = this.used;
    this.used += CHOICE_STRIDE;
    this.choices = grown(this.choices, this.used);
    this.choices.fill(ADAPT_START, at, at + n);
    this.choices[at + CHOICE_TOTAL] = ADAPT_START * n;
    this.index[t] = at + 1;
    return at;
  }
}

/** §11.15 "The range decoder": range and code below 2^32, over the bytes of R from its first. */
class RangeDecoder {
  constructor(stream, width, start, end, y0) {
    this.stream = stream;
    this.bytes = stream.bytes;
    this.end = end; // the stripe's part R is bytes start … end − 1
    this.width = width;
    this.y0 = y0; // the stripe's first row, for messages
    this.pixel = -1; // the pixel of the stripe being decoded, for messages
    this.pos = start;
    const first = this.next();
    if (first !== 0) fail(10, `${where(stream, this.pos - 1)}: byte 0 of the range-coded part is ${first}, must be 0`);
    this.range = 0xffffffff;
    this.code = 0;
    for (let j = 0; j < 4; j++) this.code = this.code * 256 + this.next();
  }

  place() {
    return this.pixel < 0 ? `starting the range decoder of the stripe from row ${this.y0}` : `pixel (${this.pixel % this.width}, ${this.y0 + Math.floor(this.pixel / this.width)})`;
  }

  /** The next byte of R; none left is rule 12. */
  next() {
    if (this.pos >= this.end) {
      fail(12, `${this.place()}: the range decoder needs a byte past the end of the stream (${where(this.stream, this.pos)})`);
    }
    return this.bytes[this.pos++];
  }

  /** A symbol from the adaptive table of n frequencies at freq[at …] with total totals[table]; then the table's update. */
  adaptive(freq, at, n, totals, table) {
    let total = totals[table];
    const q = Math.floor(this.range / total);
    const v = Math.floor(this.code / q);
    if (v >= total) fail(10, `${this.place()}: the range decoder's value ${v} is not below the table's total ${total}`);
    let s = at;
    let start = 0;
    while (start + freq[s] <= v) start += freq[s++];
    this.narrow(q, start, freq[s]);
    freq[s] += ADAPT_STEP;
    total += ADAPT_STEP;
    if (total > ADAPT_LIMIT) {
      total = 0;
      for (let j = at; j < at + n; j++) total += freq[j] = (freq[j] + 1) >> 1;
    }
    totals[table] = total;
    return s - at;
  }

  /** An extra bit: a symbol of the fixed table f(0) = f(1) = 1. */
  bit() {
    const q = Math.floor(this.range / 2);
    const v = Math.floor(this.code / q);
    if (v >= 2) fail(10, `${this.place()}: the range decoder's value ${v} is not below an extra bit's total 2`);
    this.narrow(q, v, 1);
    return v;
  }

  /** Keep the symbol's part of the range, taking in bytes while range < 2^24. */
  narrow(q, start, f) {
    this.code -= q * start;
    this.range = q * f;
    while (this.range < RANGE_FLOOR) {
      this.code = this.code * 256 + this.next();
      this.range *= 256;
    }
  }

  /** §11.15 "End": every byte of R read, and code 0 (both rule 12). */
  finish() {
    if (this.pos < this.end) {
      fail(12, `${where(this.stream, this.pos)}: ${this.end - this.pos} byte(s) of the range-coded part left unread after the last pixel`);
    }
    if (this.code !== 0) fail(12, `after the last pixel the range decoder's code is ${this.code}, must be 0`);
  }
}
