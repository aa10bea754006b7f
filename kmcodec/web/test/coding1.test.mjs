// node --test kmcodec/web/test/coding1.test.mjs
//
// Checks the coding-1 decoder against the worked examples of spec §11.10–§11.16, and,
// when KMQ_CODING1_MANIFEST names a JSON manifest (written by
// tests/test_web_coding1.py), against every file in it: valid files decode to
// the expected labels, malformed ones are rejected at the expected rule.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CANDIDATES, decodeCodedLabels, HistoryTables, KmqStreamError, rasterContext } from "../coding1.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SPEC = join(HERE, "..", "..", "..", "spec", "kmq.md");

/** The header fields of spec §2 and the label stream's place (§1), enough to call the coding-1 decoder. */
function coded(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const channels = bytes[5];
  const width = view.getUint32(8, true);
  const height = view.getUint32(12, true);
  const k = view.getUint32(16, true);
  const streamOffset = 24 + channels * k;
  const palette = bytes.subarray(24, streamOffset);
  return { coding: bytes[6], streamOffset, streamLength: bytes.length - 4 - streamOffset, width, height, k, channels, palette };
}

function decode(bytes) {
  const f = coded(bytes);
  assert.equal(f.coding, 1, "a coding-1 file");
  return decodeCodedLabels(bytes, f.streamOffset, f.streamLength, f);
}

/** The hex dumps of the spec, in order. */
function specDumps() {
  const text = readFileSync(SPEC, "utf8");
  return [...text.matchAll(/```\n(0{8}[\s\S]*?)```/g)].map(([, dump]) =>
    Uint8Array.from(
      dump.trim().split("\n").flatMap((line) => line.slice(10, 58).trim().split(/\s+/)).filter(Boolean),
      (hex) => parseInt(hex, 16),
    ),
  );
}

/** Every pixel of a width-wide label map against its description `want(x, y)`. */
function assertLabels(labels, width, height, want) {
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) assert.equal(labels[y * width + x], want(x, y), `pixel (${x}, ${y})`);
  }
}

test("spec §11.10 worked example decodes to the image it describes", () => {
  const bytes = specDumps()[3];
  assert.equal(bytes.length, 139);
  assertLabels(decode(bytes), 32, 32, (x, y) => ((x - 8) ** 2 + (y - 22) ** 2 <= 20 ? 3 : x < 16 ? 0 : y < 20 ? 1 : 2));
});

test("spec §11.12 method-1 example decodes to the image it describes", () => {
  const bytes = specDumps()[4];
  assert.equal(bytes.length, 123);
  assertLabels(decode(bytes), 64, 32, (x, y) => (y < 16 ? 0 : y === 16 ? x % 4 : 3));
});

test("spec §11.14 method-2 example decodes to the image of §11.10", () => {
  const bytes = specDumps()[5];
  assert.equal(bytes.length, 111);
  assert.equal(bytes[36], 2);
  assertLabels(decode(bytes), 32, 32, (x, y) => ((x - 8) ** 2 + (y - 22) ** 2 <= 20 ? 3 : x < 16 ? 0 : y < 20 ? 1 : 2));
});

test("spec §11.15 context example: pixel (0, 1) of a 2-wide image after labels 5, 7", () => {
  assert.equal(rasterContext(Uint8Array.of(5, 7, 0, 0), 2, 0, 1, new HistoryTables()), 9796); // both predictions missing
  assert.deepEqual([...CANDIDATES.subarray(0, 2)], [5, 7]);
});

/** Spec §11.16's image: §11.10's, with 3 − label on the dots where x mod 6 = 3 and y mod 5 = 2. */
function method3Example(x, y) {
  const label = (x - 8) ** 2 + (y - 22) ** 2 <= 20 ? 3 : x < 16 ? 0 : y < 20 ? 1 : 2;
  return x % 6 === 3 && y % 5 === 2 ? 3 - label : label;
}

test("spec §11.16 method-3 example decodes to the image it describes", () => {
  const bytes = specDumps()[6];
  assert.equal(bytes.length, 101);
  assert.equal(bytes[36], 3);
  assert.equal(bytes[37], 1); // S = 1 stripe
  assertLabels(decode(bytes), 32, 32, method3Example);
});

test("spec §11.16 contexts: pixel (1, 0) t = 7096, pixel (3, 2) t = 269375, each with the one candidate white", () => {
  const labels = new Uint8Array(32 * 32);
  const history = new HistoryTables();
  const contexts = new Map();
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 32; x++) {
      contexts.set(`${x},${y}`, [rasterContext(labels, 32, x, y, history), CANDIDATES[0]]);
      labels[y * 32 + x] = method3Example(x, y);
      history.remember(labels[y * 32 + x]); // step 4
    }
  }
  assert.deepEqual(contexts.get("1,0"), [7096, 0]);
  assert.deepEqual(contexts.get("3,2"), [269375, 0]);
});

test("a rejection carries the rule number and the spec's class name", () => {
  const bytes = specDumps()[3].slice();
  bytes[36] = 4; // method (§11.1): 0, 1, 2 and 3 are defined
  assert.throws(() => decode(bytes), (e) => e instanceof KmqStreamError && e.rule === 10 && e.name === "StreamStructureError" && /method/.test(e.message));
});

/** A rejection the manifest allows instead: a check libzstd may skip and fzstd makes (kmcodec/web/vendor/README.md). */
function tolerated(item, e) {
  return Boolean(item.tolerate) && e instanceof KmqStreamError && e.rule === 10 && e.message.includes(item.tolerate);
}

/** A manifest item's label map walked in raster order as §11.15 does: each pixel's context t against the one listed. */
function assertContexts(root, item) {
  const raw = readFileSync(join(root, item.labels));
  const want = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const rawContexts = readFileSync(join(root, item.contexts));
  const contexts = new Uint32Array(rawContexts.buffer, rawContexts.byteOffset, rawContexts.byteLength / 4);
  const labels = new Uint8Array(want.length);
  const history = new HistoryTables();
  for (let i = 0; i < want.length; i++) {
    const [x, y] = [i % item.width, Math.floor(i / item.width)];
    const t = rasterContext(labels, item.width, x, y, history);
    if (t !== contexts[i]) assert.fail(`pixel (${x}, ${y}): context ${t}, want ${contexts[i]}`);
    labels[i] = want[i];
    history.remember(labels[i]); // step 4
  }
}

const manifestPath = process.env.KMQ_CODING1_MANIFEST;
if (manifestPath) {
  const root = dirname(manifestPath);
  for (const item of JSON.parse(readFileSync(manifestPath, "utf8"))) {
    test(item.name, () => {
      if (item.contexts) return assertContexts(root, item);
      const bytes = new Uint8Array(readFileSync(join(root, item.file)));
      if (item.rule === null) {
        let labels;
        try {
          labels = decode(bytes);
        } catch (e) {
          if (tolerated(item, e)) return;
          throw e;
        }
        const raw = readFileSync(join(root, item.labels));
        const want = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
        assert.equal(labels.length, want.length);
        for (let i = 0; i < want.length; i++) {
          if (labels[i] !== want[i]) assert.fail(`label ${i} (${i % item.width}, ${Math.floor(i / item.width)}) is ${labels[i]}, want ${want[i]}`);
        }
      } else {
        assert.throws(() => decode(bytes), (e) => {
          if (tolerated(item, e)) return true;
          assert.ok(e instanceof KmqStreamError, `not a KmqStreamError: ${e}`);
          assert.deepEqual([e.rule, e.name], [item.rule, item.error], e.message);
          return true;
        });
      }
    });
  }
}
