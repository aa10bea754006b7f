// kmq.js: a .kmq decoder written from spec/kmq.md alone, a second implementation
// next to kmcodec's Python one. One dependency-free ES module for browsers and node.
//
//   import { decode, KmqError } from "./kmq.js";
//   const img = decode(arrayBuffer, { maxPixels: 89478485 });
//   // img: { width, height, channels, k, coding, bitsPerPixel, palette, labels, rgba }
//   ctx.putImageData(new ImageData(img.rgba, img.width, img.height), 0, 0);
//
// decode() applies the rules of §7 in their order and throws a KmqError carrying
// the rule's number (error.rule), kmcodec's name for it (error.kind) and a
// one-line message saying what is wrong and where. Nothing proportional to W·H
// is allocated before rule 6 (the length) has passed.

// §2: constants of the header, written once.
export const MAGIC = Object.freeze([0x89, 0x4b, 0x4d, 0x51]); // "\x89KMQ"
export const VERSION = 1;
export const HEADER_SIZE = 24;
export const CHECK_SIZE = 4; // §5
export const OVERHEAD = HEADER_SIZE + CHECK_SIZE; // §6: 28 bytes in every file
export const CHANNELS = Object.freeze([1, 3, 4]);
export const MAX_K = 65536;
// §7 rule 5: kmcodec's default limit, Pillow's Image.MAX_IMAGE_PIXELS.
export const DEFAULT_MAX_PIXELS = 89478485;
// The most this decoder can return at all: 2^30 pixels is an RGBA array of 4 GiB,
// about the largest typed array engines allow. Removing the limit (maxPixels null
// or Infinity) falls back to this, so a 31-byte file claiming 2^64 pixels is still
// refused by rule 5 rather than by an engine error.
export const MAX_PIXELS = 2 ** 30;

/** A file that breaks rule `rule` of spec §7; `kind` is the class kmcodec raises for it. */
export class KmqError extends Error {
  constructor(rule, kind, message) {
    super(message);
    this.name = "KmqError";
    this.rule = rule;
    this.kind = kind;
  }
}

const hex = (bytes) => Array.from(bytes, (v) => v.toString(16).padStart(2, "0")).join("");
const hex32 = (v) => (v >>> 0).toString(16).padStart(8, "0");

/** Any ArrayBuffer, typed array (node Buffer included) or DataView as a Uint8Array over the same bytes. */
function asBytes(data) {
  // A plain Uint8Array even for a node Buffer: engines index subclasses more slowly.
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError("decode() needs an ArrayBuffer or a typed array");
}

// §7 rule 1: the magic. Only the bytes present are compared, so an empty file and
// a file of the wrong kind fail here, and a true prefix of the magic fails rule 2.
function checkMagic(bytes) {
  const n = Math.min(bytes.length, MAGIC.length);
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new KmqError(1, "BadMagicError", `not a .kmq file: starts with ${hex(bytes.subarray(0, 4))}, expected ${hex(MAGIC)}`);
    }
  }
  if (bytes.length === 0) throw new KmqError(1, "BadMagicError", `not a .kmq file: it is empty, expected ${hex(MAGIC)}`);
}

// §7 rule 2: a whole header.
function checkHeaderPresent(bytes) {
  if (bytes.length < HEADER_SIZE) {
    throw new KmqError(2, "TruncatedError", `truncated: file has ${bytes.length} bytes, the header alone is ${HEADER_SIZE}`);
  }
}

// §2: the header's fields, little-endian.
function readFields(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  return {
    version: view.getUint8(4),
    channels: view.getUint8(5),
    coding: view.getUint8(6),
    bitsPerPixel: view.getUint8(7),
    width: view.getUint32(8, true),
    height: view.getUint32(12, true),
    k: view.getUint32(16, true),
    reserved: view.getUint32(20, true),
  };
}

// §7 rule 3: the version.
function checkVersion(h) {
  if (h.version !== VERSION) {
    throw new KmqError(3, "UnsupportedVersionError", `unsupported version at byte 4: ${h.version}, this decoder reads version ${VERSION}`);
  }
}

/** §2: b = ceil(log2 K), the number of bits of K − 1. */
export function bitsForK(k) {
  return k <= 1 ? 0 : 32 - Math.clz32(k - 1);
}

// §7 rule 4: the header fields, in the spec's order.
function checkFields(h) {
  const bad = (what, kind = "HeaderFieldError") => { throw new KmqError(4, kind, what); };
  if (!CHANNELS.includes(h.channels)) bad(`bad channels at byte 5: ${h.channels}, allowed ${CHANNELS.join(", ")}`);
  if (!(h.coding in CODINGS)) {
    bad(`unsupported coding at byte 6: ${h.coding}, this decoder reads ${Object.keys(CODINGS).join(", ")}`, "UnsupportedCodingError");
  }
  if (h.width === 0) bad("bad width at byte 8: 0, allowed 1..4294967295");
  if (h.height === 0) bad("bad height at byte 12: 0, allowed 1..4294967295");
  if (h.k === 0 || h.k > MAX_K) bad(`bad k at byte 16: ${h.k}, allowed 1..${MAX_K}`);
  if (h.bitsPerPixel !== bitsForK(h.k)) {
    bad(`bad bits_per_pixel at byte 7: ${h.bitsPerPixel}, k=${h.k} needs ${bitsForK(h.k)}`);
  }
  if (h.reserved !== 0) bad(`bad reserved field at byte 20: 0x${h.reserved.toString(16)}, must be 0`);
}

// §7 rule 5: the pixel limit (BigInt: W·H reaches 2^64, beyond a double's integers).
function checkPixelLimit(h, maxPixels) {
  const limit = maxPixels == null ? MAX_PIXELS : Math.min(maxPixels, MAX_PIXELS);
  const pixels = BigInt(h.width) * BigInt(h.height);
  if (pixels > BigInt(Math.floor(limit))) {
    throw new KmqError(5, "PixelLimitError", `too many pixels: ${h.width}x${h.height} = ${pixels}, limit ${limit}`);
  }
}

/**
 * §1 and §6: the size of each section in bytes, from the header alone (BigInt,
 * since a header may claim 2^64 pixels). For coding 0 `total` is the exact file size.
 */
export function sectionSizes(h) {
  const pixels = BigInt(h.width) * BigInt(h.height);
  const palette = BigInt(h.channels * h.k);
  const contentBits = 8n * palette + pixels * BigInt(h.bitsPerPixel);
  const labels = (pixels * BigInt(h.bitsPerPixel) + 7n) / 8n;
  const total = BigInt(OVERHEAD) + palette + labels;
  return { header: HEADER_SIZE, palette: Number(palette), labels, check: CHECK_SIZE, total, contentBits, pixels };
}

/**
 * Rules 1–4 of §7 on the first bytes: the header's fields, checked, for a viewer
 * that wants to show a header even when a later rule fails.
 */
export function readHeader(data) {
  const bytes = asBytes(data);
  checkMagic(bytes);
  checkHeaderPresent(bytes);
  const h = readFields(bytes);
  checkVersion(h);
  checkFields(h);
  return h;
}

// §7 rule 6: the length of §6, exact for coding 0, between the smallest coding-1
// file and the coding-0 size (the bound) for coding 1.
function checkLength(bytes, h, size) {
  const length = BigInt(bytes.length);
  if (h.coding === 1) {
    const least = BigInt(OVERHEAD + size.palette + CODED_MIN_BYTES);
    if (length < least) {
      throw new KmqError(6, "TruncatedError", `truncated: a coding-1 file with this header has at least ${least} bytes, file has ${bytes.length}`);
    }
    if (length > size.total) {
      throw new KmqError(6, "BoundError", `over the bound: header allows at most ${size.total} bytes (the coding-0 size), file has ${bytes.length}`);
    }
    return;
  }
  if (length < size.total) {
    throw new KmqError(6, "TruncatedError", `truncated: header says ${size.total} bytes, file has ${bytes.length}`);
  }
  if (length > size.total) {
    throw new KmqError(6, "TrailingDataError", `trailing data: header says ${size.total} bytes, file has ${bytes.length}`);
  }
}

// §5: CRC-32 (ISO-HDLC / zlib), reflected polynomial 0xEDB88320, slicing by 4.
const CRC_TABLES = (() => {
  const t = new Uint32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let s = 1; s < 4; s++) t[s * 256 + n] = (t[(s - 1) * 256 + n] >>> 8) ^ t[t[(s - 1) * 256 + n] & 0xff];
  }
  return t;
})();

/** §5: the CRC-32 of `bytes`, as an unsigned 32-bit number (zlib.crc32 in Python). */
export function crc32(data) {
  const bytes = asBytes(data);
  const t = CRC_TABLES;
  let c = 0xffffffff;
  let i = 0;
  const end4 = bytes.length & ~3;
  for (; i < end4; i += 4) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = t[768 + (c & 0xff)] ^ t[512 + ((c >>> 8) & 0xff)] ^ t[256 + ((c >>> 16) & 0xff)] ^ t[c >>> 24];
  }
  for (; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** §5: the stored and the computed check of a file whose length is right. */
export function checkValues(data) {
  const bytes = asBytes(data);
  const end = bytes.length - CHECK_SIZE;
  const stored = new DataView(bytes.buffer, bytes.byteOffset + end, CHECK_SIZE).getUint32(0, true);
  return { stored, computed: crc32(bytes.subarray(0, end)), at: end };
}

// §7 rule 7: the check.
function checkCrc(bytes) {
  const { stored, computed, at } = checkValues(bytes);
  if (stored !== computed) {
    throw new KmqError(7, "ChecksumError", `bad check at byte ${at}: stored CRC-32 ${hex32(stored)}, computed ${hex32(computed)}`);
  }
}

// §3: K entries of C bytes, entry 0 first.
function readPalette(bytes, h) {
  return bytes.slice(HEADER_SIZE, HEADER_SIZE + h.channels * h.k);
}

// §7 rule 8: the 0–7 padding bits after the last label, in the stream's last byte, are 0.
function checkPadding(stream, count, b, offset) {
  const padding = stream.length * 8 - count * b;
  const value = stream[stream.length - 1] & ((1 << padding) - 1);
  if (padding > 0 && value !== 0) {
    const at = offset + stream.length - 1;
    throw new KmqError(8, "PaddingError",
      `non-zero padding at byte ${at}: the last ${padding} bits are ${value.toString(2).padStart(padding, "0")}, must be 0`);
  }
}

// §4: coding 0, raw labels: b-bit unsigned integers, most significant bit first,
// rows not padded. Whole-byte table paths for b in {1, 2, 4}, a copy for b = 8,
// a byte pair for b = 16, and a 3-byte window for every other b.
const LANE_TABLES = new Map(); // b -> Uint8Array(256 * 8/b): the labels in each byte value

function laneTable(b) {
  let table = LANE_TABLES.get(b);
  if (!table) {
    const per = 8 / b;
    const mask = (1 << b) - 1;
    table = new Uint8Array(256 * per);
    for (let v = 0; v < 256; v++) {
      for (let j = 0; j < per; j++) table[v * per + j] = (v >>> (8 - b * (j + 1))) & mask;
    }
    LANE_TABLES.set(b, table);
  }
  return table;
}

function unpackTable(stream, labels, b) {
  const per = 8 / b;
  const whole = Math.floor(labels.length / per); // bytes whose labels are all inside the image
  const table = laneTable(b);
  if (b === 4) {
    // One 2-byte write per input byte; views of the same table keep this endian-neutral.
    const t16 = new Uint16Array(table.buffer);
    const out16 = new Uint16Array(labels.buffer, 0, whole);
    for (let i = 0; i < whole; i++) out16[i] = t16[stream[i]];
  } else if (b === 2) {
    const t32 = new Uint32Array(table.buffer);
    const out32 = new Uint32Array(labels.buffer, 0, whole);
    for (let i = 0; i < whole; i++) out32[i] = t32[stream[i]];
  } else {
    const t32 = new Uint32Array(table.buffer);
    const out32 = new Uint32Array(labels.buffer, 0, whole * 2);
    for (let i = 0, o = 0; i < whole; i++, o += 2) {
      const v = stream[i] << 1;
      out32[o] = t32[v];
      out32[o + 1] = t32[v + 1];
    }
  }
  for (let j = whole * per; j < labels.length; j++) labels[j] = table[stream[whole] * per + (j - whole * per)];
}

function unpackBits(stream, labels, b) {
  // Label i starts `offset` bits into byte p; offset + b <= 7 + 15 bits lie in the
  // 3 bytes from p on. The last labels, whose 3 bytes would pass the end, go one by one.
  const mask = (1 << b) - 1;
  const end = stream.length;
  const n = labels.length;
  let i = 0;
  let p = 0;
  let offset = 0;
  for (; i < n && p + 2 < end; i++) {
    const bits = (stream[p] << 16) | (stream[p + 1] << 8) | stream[p + 2];
    labels[i] = (bits >>> (24 - b - offset)) & mask;
    offset += b;
    p += offset >>> 3;
    offset &= 7;
  }
  unpackLast(stream, labels, b, i, p * 8 + offset);
}

function unpackLast(stream, labels, b, first, bit) {
  // Bit positions pass 2^32 in the largest streams: plain arithmetic, not >>> 3.
  for (let i = first; i < labels.length; i++, bit += b) {
    let value = 0;
    for (let j = bit; j < bit + b; j++) value = (value << 1) | ((stream[Math.floor(j / 8)] >>> (7 - (j % 8))) & 1);
    labels[i] = value;
  }
}

const newLabels = (h, count) => (h.k <= 256 ? new Uint8Array(count) : new Uint16Array(count));

// §4 with rules 8 and 9: coding 0.
function unpackRaw({ stream, offset, h, count }) {
  const b = h.bitsPerPixel;
  const labels = newLabels(h, count);
  if (b === 0) return labels; // K = 1: every pixel is entry 0
  checkPadding(stream, count, b, offset); // rule 8
  if (b === 8) labels.set(stream);
  else if (b === 16) {
    for (let i = 0, p = 0; i < count; i++, p += 2) labels[i] = (stream[p] << 8) | stream[p + 1];
  } else if (b === 1 || b === 2 || b === 4) unpackTable(stream, labels, b);
  else unpackBits(stream, labels, b);
  checkLabels(labels, h); // rule 9
  return labels;
}

// §7 rule 9: every label is below K (only a K that is not a power of two can fail).
function checkLabels(labels, h) {
  if (h.k === 1 << h.bitsPerPixel) return;
  for (let i = 0, n = labels.length; i < n; i++) {
    if (labels[i] >= h.k) {
      const x = i % h.width;
      const y = (i - x) / h.width;
      throw new KmqError(9, "LabelRangeError", `label ${labels[i]} at pixel (${x}, ${y}) is not below k=${h.k}`);
    }
  }
}

// ---------------------------------------------------------------- coding 1 (§11)

export const CODED_MIN_BYTES = 26; // §11.1: the smallest stream
const CONTEXTS = 97; // §11.6
const PRESENCE_BYTES = 13;
const TOKENS = 72; // §11.7: the alphabet of every integer context
const SCALE_BITS = 12; // §11.6: frequencies sum to 4096
const SCALE = 1 << SCALE_BITS;
const LANE_FLOOR = 65536; // §11.8: 2^16
// §11.3: pattern -> m, the number of candidates; §11.4: the patterns of choosing pixels, by c.
const PATTERN_M = [1, 2, 2, 3, 4, 1, 2, 3, 1, 2, 1];
const CHOICE_PATTERNS = [1, 2, 3, 4, 6, 7, 9];
const CHOICE_C = [-1, 0, 1, 2, 3, -1, 4, 5, -1, 6, -1]; // pattern -> c
// §11.3: [present neighbours][counts, most first, as a string] -> pattern
const PATTERNS = { 4: { 4: 0, 31: 1, 22: 2, 211: 3, 1111: 4 }, 3: { 3: 5, 21: 6, 111: 7 }, 2: { 2: 8, 11: 9 }, 1: { 1: 10 } };

const streamError = (rule, kind) => (message) => { throw new KmqError(rule, kind, message); };
const structureError = streamError(10, "StreamStructureError");
const countError = streamError(11, "StreamLengthError");
const endError = streamError(12, "StreamEndError");
const symbolError = streamError(13, "SymbolRangeError");

// §11.6: the alphabet of context t.
function alphabetSize(t) {
  return t < 41 ? TOKENS : PATTERN_M[CHOICE_PATTERNS[(t - 41) % 7]] + 1;
}

// §11.6: one frequency table, read from `at`; returns the slot -> symbol lookup and the bytes it took.
function readTable(stream, at, offset, t) {
  let p = at;
  const byte = (what) => {
    if (p >= stream.length) endError(`table of context ${t} runs past the label stream reading its ${what} (byte ${offset + p})`);
    return stream[p++];
  };
  const n = byte("size");
  if (n === 0 || n > alphabetSize(t)) structureError(`table of context ${t} at byte ${offset + at}: size ${n}, allowed 1..${alphabetSize(t)}`);
  const freq = new Uint16Array(n);
  let sum = 0;
  for (let s = 0; s < n - 1; s++) {
    const low = byte(`frequency ${s}`);
    let f = low & 0x7f;
    if (low & 0x80) {
      const high = byte(`frequency ${s}`);
      if (high & 0x80) structureError(`table of context ${t}: frequency ${s} is longer than 2 bytes (byte ${offset + p - 1})`);
      f |= high << 7;
    }
    freq[s] = f;
    sum += f;
  }
  if (sum > SCALE - 1) structureError(`table of context ${t} at byte ${offset + at}: the first ${n - 1} frequencies sum to ${sum}, at most ${SCALE - 1}`);
  freq[n - 1] = SCALE - sum;
  const symbolAt = new Uint8Array(SCALE);
  const start = new Uint16Array(n);
  for (let s = 0, c = 0; s < n; c += freq[s], s++) {
    start[s] = c;
    symbolAt.fill(s, c, c + freq[s]);
  }
  return { table: { symbolAt, freq, start }, end: p };
}

// §11.1 and §11.9 step 1: the fixed fields, the tables, the lane states; the parts' bounds.
function readCodedFields(stream, offset) {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.length);
  const method = stream[0];
  if (method !== 0) structureError(`method at byte ${offset}: ${method}, only 0 is defined`);
  const lanes = view.getUint16(1, true);
  if (lanes === 0) structureError(`lanes at byte ${offset + 1}: 0, allowed 1..65535`);
  const firstLabel = view.getUint16(3, true);
  const extraBytes = view.getUint32(5, true);
  const presence = stream.subarray(9, 9 + PRESENCE_BYTES);
  if (presence[PRESENCE_BYTES - 1] & 0xfe) {
    structureError(`presence at byte ${offset + 9 + PRESENCE_BYTES - 1}: bits set past context ${CONTEXTS - 1}`);
  }
  const tables = new Array(CONTEXTS).fill(null);
  let p = 9 + PRESENCE_BYTES;
  for (let t = 0; t < CONTEXTS; t++) {
    if (presence[t >> 3] & (1 << (t & 7))) ({ table: tables[t], end: p } = readTable(stream, p, offset, t));
  }
  const left = stream.length - p;
  if (4 * lanes + extraBytes > left) {
    countError(`after the tables (byte ${offset + p}) ${left} bytes are left, but ${lanes} lane states and ${extraBytes} extra bytes need ${4 * lanes + extraBytes}`);
  }
  const wordBytes = left - 4 * lanes - extraBytes;
  if (wordBytes % 2) structureError(`the rANS words take ${wordBytes} bytes (from byte ${offset + p + 4 * lanes + extraBytes}), an odd number`);
  const states = new Float64Array(lanes); // 32-bit unsigned values, beyond int32
  for (let i = 0; i < lanes; i++) {
    states[i] = view.getUint32(p + 4 * i, true);
    if (states[i] < LANE_FLOOR) structureError(`lane ${i} starts at state ${states[i]} (byte ${offset + p + 4 * i}), at least ${LANE_FLOOR}`);
  }
  const extraStart = p + 4 * lanes;
  const wordStart = extraStart + extraBytes;
  return { lanes, firstLabel, tables, states, extraStart, wordStart };
}

// §11.8: the interleaved rANS lanes over one shared run of u16 words.
function symbolReader(stream, offset, fields) {
  const { tables, states, lanes } = fields;
  const view = new DataView(stream.buffer, stream.byteOffset, stream.length);
  let word = fields.wordStart;
  let i = 0; // symbols decoded so far
  return {
    next(t) {
      const table = tables[t];
      if (table === null) symbolError(`symbol ${i} needs context ${t}, which has no table`);
      const lane = i % lanes;
      let x = states[lane];
      const slot = x % SCALE;
      const s = table.symbolAt[slot];
      x = table.freq[s] * Math.floor(x / SCALE) + slot - table.start[s];
      if (x < LANE_FLOOR) {
        if (word + 2 > stream.length) endError(`symbol ${i} reads a rANS word past the last one (byte ${offset + stream.length})`);
        x = x * 65536 + view.getUint16(word, true);
        word += 2;
      }
      states[lane] = x;
      i++;
      return s;
    },
    // §11.8: after the last pass, every word read and every lane back at 2^16.
    finish() {
      if (word !== stream.length) endError(`${(stream.length - word) / 2} rANS words left unread from byte ${offset + word}`);
      const lane = states.findIndex((x) => x !== LANE_FLOOR);
      if (lane >= 0) endError(`lane ${lane} ends in state ${states[lane]}, not ${LANE_FLOOR}`);
    },
  };
}

// §11.7: the extra-bit part, most significant bit first.
function extraBitReader(stream, offset, fields) {
  const start = fields.extraStart;
  const end = fields.wordStart;
  let bit = 0;
  return {
    read(count) {
      let v = 0;
      for (let j = 0; j < count; j++, bit++) {
        const p = start + Math.floor(bit / 8);
        if (p >= end) endError(`extra bits run past their ${end - start} bytes (byte ${offset + end})`);
        v = v * 2 + ((stream[p] >> (7 - (bit % 8))) & 1);
      }
      return v;
    },
    finish() {
      const used = Math.ceil(bit / 8);
      if (start + used !== end) endError(`${end - start - used} whole extra bytes left unread from byte ${offset + start + used}`);
      if (bit % 8 && stream[start + used - 1] & ((1 << (8 - (bit % 8))) - 1)) {
        endError(`the extra bits' padding in byte ${offset + start + used - 1} is not zero`);
      }
    },
  };
}

// §11.7: an integer's token; its value once the extra bits are read.
const extraCount = (token) => (token < 16 ? 0 : 3 + ((token - 16) >> 1));
function tokenValue(token, x) {
  if (token < 16) return token;
  const e = 4 + ((token - 16) >> 1);
  return 2 ** e + ((token - 16) & 1) * 2 ** (e - 1) + x;
}
// Decode `count` tokens in context t, then their extra bits (§11.9 step 3).
function readIntegers(symbols, extra, t, count) {
  const tokens = new Array(count);
  for (let j = 0; j < count; j++) tokens[j] = symbols.next(t);
  return tokens.map((token) => tokenValue(token, extra.read(extraCount(token))));
}

// §11.2: the passes, coarsest first; each with its step d, kind, first pixel and group.
function* passes(width, height) {
  let S = 0;
  while (2 ** S < Math.max(width, height)) S++;
  for (let d = 2 ** (S - 1); d >= 1; d /= 2) {
    const level = d === 1 ? 0 : d === 2 ? 1 : d <= 8 ? 2 : 3;
    for (const [kind, x0, y0] of [[0, d, d], [1, d, 0], [1, 0, d]]) {
      if (x0 < width && y0 < height) yield { d, diagonal: x0 === y0, x0, y0, group: 4 * kind + level };
    }
  }
}

// §11.3: the pattern from the number of present neighbours P and the two largest
// counts: PATTERN_OF[25·P + 5·first + second].
const PATTERN_OF = (() => {
  const table = new Int8Array(125).fill(-1);
  const set = (present, counts, pattern) => { table[25 * present + 5 * counts[0] + (counts[1] ?? 0)] = pattern; };
  [[4, [4]], [4, [3, 1]], [4, [2, 2]], [4, [2, 1]], [4, [1, 1]], [3, [3]], [3, [2, 1]], [3, [1, 1]], [2, [2]], [2, [1, 1]], [1, [1]]]
    .forEach(([present, counts], pattern) => set(present, counts, pattern));
  return table;
})();

// §11.3: a pixel's candidates into cands[at … at + m), most held first, ties by
// neighbour order (the first neighbour holding a label); returns its pattern.
// `held` is scratch for the counts; absent neighbours are -1.
function candidatesOf(n0, n1, n2, n3, cands, at, held) {
  if (n0 === n1 && n1 === n2 && n2 === n3 && n0 >= 0) {
    cands[at] = n0; // four equal neighbours, the common case: pattern 0
    held[0] = 4;
    return 0;
  }
  let m = 0;
  let present = 0;
  for (let j = 0; j < 4; j++) {
    const v = j === 0 ? n0 : j === 1 ? n1 : j === 2 ? n2 : n3;
    if (v < 0) continue;
    present++;
    let c = 0;
    while (c < m && cands[at + c] !== v) c++;
    if (c === m) {
      cands[at + m] = v;
      held[m++] = 0;
    }
    held[c]++;
  }
  // Insertion sort, moving only past strictly smaller counts: stable, so ties keep neighbour order.
  for (let c = 1; c < m; c++) {
    const v = cands[at + c];
    const count = held[c];
    let j = c;
    for (; j > 0 && held[j - 1] < count; j--) {
      cands[at + j] = cands[at + j - 1];
      held[j] = held[j - 1];
    }
    cands[at + j] = v;
    held[j] = count;
  }
  return PATTERN_OF[25 * present + 5 * held[0] + (m > 1 ? held[1] : 0)];
}

// §11.5: the label an escape rank r gives, or a rule-13 error.
function escapeLabel(r, candidates, m, h, palette, order) {
  const ref = candidates[0];
  if (h.k > 256) {
    const label = r % 2 === 0 ? ref + r / 2 : ref - (r + 1) / 2;
    if (label < 0 || label >= h.k) symbolError(`escape rank ${r} from label ${ref} gives ${label}, outside 0..${h.k - 1}`);
    return label;
  }
  if (r >= h.k - m) symbolError(`escape rank ${r} with ${m} candidates, allowed 0..${h.k - m - 1}`);
  const ranked = order(ref);
  for (let i = 0, left = r; ; i++) {
    const entry = ranked[i];
    let candidate = false;
    for (let c = 0; c < m; c++) candidate ||= candidates[c] === entry;
    if (!candidate && left-- === 0) return entry;
  }
}

// §11.5 (K <= 256): every palette entry ordered by squared distance to entry ref, ties by index.
function distanceOrder(palette, h) {
  const cache = new Map();
  return (ref) => {
    if (!cache.has(ref)) {
      const c = h.channels;
      const dist = (e) => {
        let sum = 0;
        for (let j = 0; j < c; j++) sum += (palette[e * c + j] - palette[ref * c + j]) ** 2;
        return sum;
      };
      const entries = Array.from({ length: h.k }, (_, e) => [dist(e), e]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      cache.set(ref, entries.map(([, e]) => e));
    }
    return cache.get(ref);
  };
}

// §11.4: one pass: escape count, gaps, choices, escape ranks; then its labels.
function decodePass(pass, labels, h, palette, symbols, extra, order, scratch) {
  const { d, diagonal, x0, y0, group } = pass;
  const { width, height } = h;
  const n = passSize(pass, width, height);
  const { cands, pattern, held } = scratch;
  let u = 0;
  // One flat loop over the pass's grid (nested loops leave optimised code at every row).
  for (let i = 0, x = x0, y = y0; i < n; i++, x += 2 * d) {
    if (x >= width) {
      x = x0;
      y += 2 * d;
    }
    const row = y * width;
    {
      // Neighbour order of §11.2; -1 for a neighbour outside the image.
      let n0, n1, n2, n3;
      if (diagonal) {
        const up = y - d >= 0;
        const down = y + d < height;
        const left = x - d >= 0;
        const right = x + d < width;
        n0 = up && left ? labels[row - d * width + x - d] : -1;
        n1 = up && right ? labels[row - d * width + x + d] : -1;
        n2 = down && left ? labels[row + d * width + x - d] : -1;
        n3 = down && right ? labels[row + d * width + x + d] : -1;
      } else {
        n0 = y - d >= 0 ? labels[row - d * width + x] : -1;
        n1 = x - d >= 0 ? labels[row + x - d] : -1;
        n2 = x + d < width ? labels[row + x + d] : -1;
        n3 = y + d < height ? labels[row + d * width + x] : -1;
      }
      pattern[i] = candidatesOf(n0, n1, n2, n3, cands, 4 * i, held);
      if (PATTERN_M[pattern[i]] === 1) {
        // No pixel of a pass is another's neighbour (§11.2), so a label can be set
        // at once: the candidate, until an escape overwrites it.
        labels[row + x] = cands[4 * i];
        u++;
      }
    }
  }
  const escapes = scratch.escapes.fill(0, 0, n);
  if (u > 0) {
    const [e] = readIntegers(symbols, extra, 0, 1);
    if (e > u) countError(`a pass (d=${d}, group ${group}) lists ${e} escapes but has ${u} unanimous pixels`);
    // Gaps -> the escapes' places among the unanimous pixels, then those pixels.
    const places = [];
    let p = -1;
    for (const gap of readIntegers(symbols, extra, 1 + group, e)) {
      p += 1 + gap;
      if (p >= u) symbolError(`an escape gap runs to unanimous pixel ${p} of a pass (d=${d}, group ${group}) with ${u}`);
      places.push(p);
    }
    for (let i = 0, seen = 0, g = 0; g < places.length; i++) {
      if (PATTERN_M[pattern[i]] !== 1) continue;
      if (seen++ === places[g]) {
        escapes[i] = 1;
        g++;
      }
    }
  }
  // Choices in raster order, setting the labels they pick; the escaping pixels, in raster order.
  const escaping = [];
  const choiceBase = 41 + 7 * group;
  for (let i = 0, x = x0, y = y0; i < n; i++, x += 2 * d) {
    if (x >= width) {
      x = x0;
      y += 2 * d;
    }
    const m = PATTERN_M[pattern[i]];
    if (m > 1) {
      const choice = symbols.next(choiceBase + CHOICE_C[pattern[i]]);
      if (choice === m) escapes[i] = 1;
      else labels[y * width + x] = cands[4 * i + choice];
    }
    if (escapes[i]) escaping.push(i);
  }
  const tokens = escaping.map((i) => symbols.next(9 + 4 * group + PATTERN_M[pattern[i]] - 1));
  const ranks = tokens.map((token) => tokenValue(token, extra.read(extraCount(token))));
  const columns = Math.ceil((width - x0) / (2 * d));
  escaping.forEach((i, k) => {
    const m = PATTERN_M[pattern[i]];
    const at = (y0 + 2 * d * Math.floor(i / columns)) * width + x0 + 2 * d * (i % columns);
    labels[at] = escapeLabel(ranks[k], cands.subarray(4 * i, 4 * i + m), m, h, palette, order);
  });
}

const passSize = ({ d, x0, y0 }, width, height) => Math.ceil((width - x0) / (2 * d)) * Math.ceil((height - y0) / (2 * d));

// Per-pixel arrays for the largest pass, shared by all passes (one allocation, not one per pass).
function passScratch(passList, h) {
  const most = Math.max(0, ...passList.map((pass) => passSize(pass, h.width, h.height)));
  const cands = h.k <= 256 ? new Uint8Array(4 * most) : new Uint16Array(4 * most);
  return { cands, pattern: new Uint8Array(most), escapes: new Uint8Array(most), held: new Int32Array(4) };
}

// §11.9: coding 1, with rules 10-13 in the order the decoder meets them.
function decodeCoded({ stream, offset, h, count, palette }) {
  const fields = readCodedFields(stream, offset); // step 1
  if (fields.firstLabel >= h.k) symbolError(`first label at byte ${offset + 3}: ${fields.firstLabel}, not below k=${h.k}`); // step 2
  const labels = newLabels(h, count);
  labels[0] = fields.firstLabel;
  const symbols = symbolReader(stream, offset, fields);
  const extra = extraBitReader(stream, offset, fields);
  const order = distanceOrder(palette, h);
  const passList = [...passes(h.width, h.height)];
  const scratch = passScratch(passList, h);
  for (const pass of passList) decodePass(pass, labels, h, palette, symbols, extra, order, scratch); // step 3
  symbols.finish(); // step 4
  extra.finish();
  return labels;
}

// §2 coding field -> the function that turns the label stream into W·H labels.
const CODINGS = { 0: unpackRaw, 1: decodeCoded };

/**
 * §4 "Pixel (x, y) has colour palette[label]": the labels painted as RGBA for
 * ImageData. Grey repeats L into R, G and B; alpha is 255 unless C = 4.
 */
export function paint(palette, channels, labels) {
  const k = palette.length / channels;
  const colours = new Uint8Array(k * 4); // one RGBA word per entry, read through a Uint32 view
  for (let e = 0; e < k; e++) {
    const src = e * channels;
    const dst = e * 4;
    if (channels === 1) colours.fill(palette[src], dst, dst + 3);
    else for (let c = 0; c < 3; c++) colours[dst + c] = palette[src + c];
    colours[dst + 3] = channels === 4 ? palette[src + 3] : 255;
  }
  const words = new Uint32Array(colours.buffer);
  const rgba = new Uint8ClampedArray(labels.length * 4);
  const out = new Uint32Array(rgba.buffer);
  for (let i = 0, n = labels.length; i < n; i++) out[i] = words[labels[i]];
  return rgba;
}

/**
 * Decode a .kmq file (spec §7: rules 1–7, then 8–9 for coding 0 or 10–13 for coding 1).
 *
 * @param {ArrayBuffer|ArrayBufferView} data the whole file
 * @param {{maxPixels?: number|null}} [options] rule 5's limit; null or Infinity removes it
 * @returns {{width, height, channels, k, coding, bitsPerPixel, palette: Uint8Array,
 *            labels: Uint8Array|Uint16Array, rgba: Uint8ClampedArray}}
 * @throws {KmqError} at the first rule the file breaks
 */
export function decode(data, { maxPixels = DEFAULT_MAX_PIXELS } = {}) {
  const bytes = asBytes(data);
  const h = readHeader(bytes); // rules 1–4
  checkPixelLimit(h, maxPixels); // rule 5
  const size = sectionSizes(h);
  checkLength(bytes, h, size); // rule 6
  checkCrc(bytes); // rule 7
  const count = Number(size.pixels); // at most the pixel limit (rule 5) from here on
  const palette = readPalette(bytes, h);
  const streamStart = HEADER_SIZE + size.palette;
  const stream = bytes.subarray(streamStart, bytes.length - CHECK_SIZE);
  const labels = CODINGS[h.coding]({ stream, offset: streamStart, h, count, palette }); // rules 8-9 or 10-13
  return {
    width: h.width,
    height: h.height,
    channels: h.channels,
    k: h.k,
    coding: h.coding,
    bitsPerPixel: h.bitsPerPixel,
    palette,
    labels,
    rgba: paint(palette, h.channels, labels),
  };
}
