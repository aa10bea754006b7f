// kmq.js: a .kmq decoder written from spec/kmq.md alone, a second implementation
// next to kmcodec's Python one. A dependency-free ES module for browsers and node;
// the labels of coding 1 come from coding1.js beside it.
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

import { decodeCodedLabels, KmqStreamError } from "./coding1.js";

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

// §11: coding 1 lives in coding1.js, a decoder written from §11 alone; its
// rejections carry the rule of §7 (10–13) and become KmqErrors here.
export const CODED_MIN_BYTES = 26; // §11.1: the smallest stream

function decodeCoded({ bytes, offset, stream, h, palette }) {
  try {
    return decodeCodedLabels(bytes, offset, stream.length, { width: h.width, height: h.height, k: h.k, channels: h.channels, palette });
  } catch (error) {
    if (error instanceof KmqStreamError) throw new KmqError(error.rule, error.name, error.message);
    throw error;
  }
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
  const labels = CODINGS[h.coding]({ bytes, stream, offset: streamStart, h, count, palette }); // rules 8-9 or 10-13
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
