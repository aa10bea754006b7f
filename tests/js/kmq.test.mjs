// node --test for the JavaScript decoder (kmcodec/web/kmq.js).
//
// tests/test_web_decoder.py runs this file with KMQ_CASES naming a JSON manifest
// it wrote: files that must decode (with the RGBA, and optionally the labels,
// they must decode to) and files that must be rejected (with the §7 rule).
// Without KMQ_CASES only the self-contained tests run.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { crc32, decode, DEFAULT_MAX_PIXELS, KmqError, MAX_PIXELS, readHeader } from "../../kmcodec/web/kmq.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const fixture = (folder, name) => readFileSync(resolve(ROOT, "fixtures", folder, name));

function rejects(data, rule, kind, options) {
  assert.throws(() => decode(data, options), (error) => {
    assert.ok(error instanceof KmqError, `not a KmqError: ${error}`);
    assert.equal(error.rule, rule, `rule ${error.rule} instead of ${rule}: ${error.message}`);
    if (kind) assert.equal(error.kind, kind, error.message);
    assert.ok(error.message.length > 0 && !error.message.includes("\n"), "a one-line message");
    return true;
  });
}

test("crc32 is the zlib CRC-32 (spec §5): check value of '123456789'", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

test("spec §8.1 worked example decodes to its labels and colours", () => {
  const img = decode(fixture("valid", "spec_rgb_3x2_k3.kmq"));
  assert.deepEqual([img.width, img.height, img.channels, img.k, img.coding, img.bitsPerPixel], [3, 2, 3, 3, 0, 2]);
  assert.deepEqual(Array.from(img.labels), [0, 1, 2, 2, 1, 0]);
  assert.deepEqual(Array.from(img.palette), [0xff, 0, 0, 0, 0x80, 0, 0, 0, 0xff]);
  assert.ok(img.rgba instanceof Uint8ClampedArray);
  assert.deepEqual(Array.from(img.rgba.subarray(0, 8)), [0xff, 0, 0, 255, 0, 0x80, 0, 255]);
});

test("decode accepts a node Buffer that is a slice of a larger buffer", () => {
  const file = fixture("valid", "spec_grey_3x2_k3.kmq");
  const padded = Buffer.concat([Buffer.from([1, 2, 3]), file]).subarray(3);
  assert.deepEqual(Array.from(decode(padded).labels), [0, 1, 2, 2, 1, 0]);
});

test("rule 5: the pixel limit is the caller's, W·H = limit passes, one more fails", () => {
  const file = fixture("valid", "b03_k5_13x3.kmq"); // 39 pixels
  assert.equal(decode(file, { maxPixels: 39 }).labels.length, 39);
  rejects(file, 5, "PixelLimitError", { maxPixels: 38 });
  assert.equal(DEFAULT_MAX_PIXELS, 89478485);
});

test("rule 5: removing the limit still refuses 2^64 pixels the decoder cannot hold", () => {
  rejects(fixture("malformed", "pixel_bomb_max_dims_k1.kmq"), 5, "PixelLimitError", { maxPixels: null });
  rejects(fixture("malformed", "pixel_bomb_max_dims_k1.kmq"), 5, "PixelLimitError", { maxPixels: Infinity });
  assert.equal(MAX_PIXELS, 2 ** 30);
});

test("rule 6: a header claiming 81 megapixels is refused before anything is allocated", () => {
  const file = fixture("malformed", "truncated_payload_claims_81_megapixels.kmq");
  const before = process.memoryUsage().arrayBuffers;
  rejects(file, 6, "TruncatedError");
  assert.ok(process.memoryUsage().arrayBuffers - before < 1_000_000, "allocated before the length rule");
});

test("readHeader applies rules 1-4 only, so a viewer can show a header whose CRC is bad", () => {
  const h = readHeader(fixture("malformed", "bad_check_zero.kmq"));
  assert.equal(h.version, 1);
  rejects(fixture("malformed", "bad_check_zero.kmq"), 7, "ChecksumError");
});

const manifest = process.env.KMQ_CASES ? JSON.parse(readFileSync(process.env.KMQ_CASES, "utf8")) : { valid: [], malformed: [] };

for (const c of manifest.valid) {
  test(`valid: ${c.name} decodes to the expected pixels`, () => {
    const img = decode(readFileSync(c.kmq), { maxPixels: c.maxPixels });
    assert.deepEqual([img.width, img.height, img.channels, img.k], [c.width, c.height, c.channels, c.k]);
    const expected = readFileSync(c.rgba);
    assert.equal(img.rgba.length, expected.length);
    assert.ok(Buffer.from(img.rgba.buffer, img.rgba.byteOffset, img.rgba.length).equals(expected), "RGBA differs");
    if (c.labels) {
      const want = c.k > 256 ? new Uint16Array(new Uint8Array(readFileSync(c.labels)).buffer) : readFileSync(c.labels);
      assert.equal(img.labels.length, want.length);
      assert.ok(img.labels.every((v, i) => v === want[i]), "labels differ");
    }
  });
}

for (const c of manifest.malformed) {
  test(`malformed: ${c.name} is rejected by rule ${c.rule} (${c.kind})`, () => {
    rejects(readFileSync(c.kmq), c.rule, c.kind);
  });
}
