"""Spec §11, coding 1: coded labels round-trip exactly, stay within the formula bound, and fail safely."""

import re
import struct
import threading
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kmcodec
from coded import method0_file, method2_file, stream_method
from kmcodec import coding1, errors, layout, rans, zstd_labels

SPEC = Path(__file__).resolve().parents[1] / "spec" / "kmq.md"


def bound(width: int, height: int, k: int, channels: int) -> int:
    """The coding-0 size of spec §6, computed here rather than taken from the code under test."""
    return 28 + channels * k + (width * height * (k - 1).bit_length() + 7) // 8


def example_labels() -> np.ndarray:
    """The image of spec §11.10, from its description."""
    y, x = np.mgrid[0:32, 0:32]
    labels = np.where(x < 16, 0, np.where(y < 20, 1, 2))
    labels[(x - 8) ** 2 + (y - 22) ** 2 <= 20] = 3
    return labels


EXAMPLE_PALETTE = np.array([[255, 255, 255], [0, 0, 255], [255, 0, 0], [0, 128, 0]], np.uint8)


def spec_dump(index: int) -> bytes:
    dumps = re.findall(r"```\n(0{8}.*?)```", SPEC.read_text(), re.S)
    return bytes.fromhex("".join(line[10:58] for line in dumps[index].splitlines()))


def spec_coding1_dump() -> bytes:
    """spec §11.10: the worked example of method 0."""
    return spec_dump(3)


def spec_method2_dump() -> bytes:
    """spec §11.14: the same image as method 2, which kmcodec writes."""
    return spec_dump(5)


def test_spec_worked_example_is_the_bytes_we_write():
    data = spec_method2_dump()
    assert coding1.encode_labels(example_labels(), EXAMPLE_PALETTE) == data[36:-4]
    assert len(data) == 111 < bound(32, 32, 4, 3) == 296


def test_spec_method0_example_is_what_method_0_writes():
    data = spec_coding1_dump()
    assert coding1.encode_labels(example_labels(), EXAMPLE_PALETTE, coding1.METHOD) == data[36:-4]
    assert len(data) == 139


def test_spec_method2_example_decodes_like_method_0():
    """§11.14 holds the labels of §11.10; its table row and its escape paragraph hold."""
    assert kmcodec.decode(spec_method2_dump()).labels.tolist() == kmcodec.decode(spec_coding1_dump()).labels.tolist()
    data = spec_method2_dump()
    assert data[36] == 2 and data[58:60] == bytes([0x20, 0x24]) and data[95:99] == bytes.fromhex("1d7d0400")
    escapes = coding1.EscapeOrder(EXAMPLE_PALETTE)
    ref = escapes.mean_refs([np.array([3]), np.array([2]), np.array([0]), np.array([0])], [np.array([True]), np.array([True]), np.array([False]), np.array([False])])
    assert ref.tolist() == [2]
    assert escapes.ranks(np.array([0]), np.array([[3, 2, -1, -1]]), np.array([2]), ref).tolist() == [0]
    assert escapes.ranks(np.array([0]), np.array([[3, 2, -1, -1]]), np.array([2])).tolist() == [1]  # method 0


def test_spec_worked_example_decodes_to_its_description():
    image = kmcodec.decode(spec_coding1_dump())
    assert (image.coding, image.width, image.height, image.k) == (1, 32, 32, 4)
    assert np.array_equal(image.labels, example_labels())
    assert image.labels[16, 16] == 1  # the first escape the spec walks through


# --- round trips --------------------------------------------------------------


@st.composite
def label_maps(draw, max_k=256):
    """Label maps with structure, as images give them: flat blocks, gradients, noise, and mixes."""
    k = draw(st.integers(1, max_k))
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["blocks", "gradient", "noise", "mixed"]))
    y, x = np.mgrid[0:height, 0:width]
    if kind == "blocks":
        cell = draw(st.integers(1, 12))
        labels = rng.integers(0, k, ((height + cell - 1) // cell, (width + cell - 1) // cell))
        labels = np.kron(labels, np.ones((cell, cell), int))[:height, :width]
    elif kind == "gradient":
        labels = (x * 3 + y * 2) * k // (3 * width + 2 * height)
    elif kind == "noise":
        labels = rng.integers(0, k, (height, width))
    else:
        labels = (x + y) * k // (width + height)
        spots = rng.random((height, width)) < 0.1
        labels[spots] = rng.integers(0, k, int(spots.sum()))
    channels = draw(st.sampled_from([1, 3, 4]))
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    return palette, np.clip(labels, 0, k - 1)


def check_round_trip(palette: np.ndarray, labels: np.ndarray) -> bytes:
    raw = kmcodec.pack(palette, labels)
    coded = kmcodec.pack(palette, labels, compress=True)
    height, width = labels.shape
    k, channels = palette.shape
    assert len(raw) == bound(width, height, k, channels)
    assert len(coded) <= len(raw)
    image = kmcodec.decode(coded)
    assert image.coding == (1 if len(coded) < len(raw) else 0)
    assert np.array_equal(image.labels, labels)
    assert np.array_equal(image.palette, palette)
    assert np.array_equal(image.to_array(), palette[labels])
    # The stream itself, without the container's fallback, round-trips too.
    stream = coding1.encode_labels(labels, palette)
    offset = 24 + palette.size
    assert np.array_equal(coding1.decode_labels(memoryview(stream), width, height, palette, offset), labels)
    return coded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps())
def test_round_trip_k_up_to_256(case):
    check_round_trip(*case)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps(max_k=65536))
def test_round_trip_k_in_the_thousands(case):
    check_round_trip(*case)


@pytest.mark.parametrize("k", [1, 2, 3, 255, 256, 257, 4097, 65536])
def test_round_trip_at_the_edges_of_k(k):
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:40, 0:50]
    labels = ((x * 7 + y * 3) % k + rng.integers(0, 2, (40, 50))) % k
    check_round_trip(rng.integers(0, 256, (k, 3), dtype=np.uint8), labels)


@pytest.mark.parametrize("k", range(1, 257))
def test_every_k_from_1_to_256_round_trips(k):
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:24, 0:40]
    labels = np.minimum((x // 3 + y // 4 + rng.integers(0, 2, (24, 40))) * k // 20, k - 1)
    check_round_trip(rng.integers(0, 256, (k, 1), dtype=np.uint8), labels)


def test_escapes_with_more_than_256_entries_use_index_differences():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 300, (64, 64))
    labels[:32] = 5  # a flat half keeps coding 1 smaller than coding 0
    check_round_trip(rng.integers(0, 256, (300, 3), dtype=np.uint8), labels)


# --- the decoder's worker thread (large images only, so the tests lower its threshold) ---


def threaded_cases():
    """Label maps with unanimous and chosen escapes, odd sizes, both escape codings (K <= 256 and K > 256)."""
    rng = np.random.default_rng(8)
    for k, height, width in ((2, 9, 7), (16, 37, 23), (256, 40, 64), (1000, 33, 48)):
        y, x = np.mgrid[0:height, 0:width]
        labels = (x // 5 + y // 4) % k
        noise = rng.random((height, width)) < 0.2
        labels[noise] = rng.integers(0, k, int(noise.sum()))
        yield rng.integers(0, 256, (k, 3), dtype=np.uint8), labels


class CountingPool(ThreadPoolExecutor):
    submitted = 0

    def submit(self, *args, **kwargs):
        CountingPool.submitted += 1
        return super().submit(*args, **kwargs)


@pytest.fixture
def threaded(monkeypatch):
    monkeypatch.setattr(coding1, "THREAD_MIN_PIXELS", 1)
    monkeypatch.setattr(coding1, "ThreadPoolExecutor", CountingPool)
    CountingPool.submitted = 0
    return CountingPool


def test_threaded_decode_gives_the_same_labels(threaded):
    decoder_tasks = 0  # the encoder has threads too: count only the decoder's
    for palette, labels in threaded_cases():
        stream = coding1.encode_labels(labels, palette)
        threaded.submitted = 0
        decoded = coding1.decode_labels(memoryview(stream), labels.shape[1], labels.shape[0], palette, 0)
        decoder_tasks += threaded.submitted
        assert np.array_equal(decoded, labels)
    assert decoder_tasks > 0  # the worker thread did take part



def test_passes_split_in_halves_give_the_same_labels(threaded, monkeypatch):
    """With the worker, large passes are gathered on it in blocks, and finished in two halves, one on each thread."""
    monkeypatch.setattr(coding1, "CHUNK", 7)  # halves of several chunks each
    rank_chosen = coding1._rank_chosen
    ranked_on_worker = []  # passes A and C finish on the main thread: their second half only on the worker

    def spy(p, *args):
        if p.geometry.kind == "A" and threading.current_thread() is not threading.main_thread():
            ranked_on_worker.append(p.geometry.d)
        return rank_chosen(p, *args)

    monkeypatch.setattr(coding1, "_rank_chosen", spy)
    on_worker = {1 << 40: 0, 2: 0}
    for palette, labels in threaded_cases():
        stream = coding1.encode_labels(labels, palette)
        submitted = []
        for split_min in on_worker:
            monkeypatch.setattr(coding1, "SPLIT_MIN", split_min)
            threaded.submitted = 0
            ranked_on_worker.clear()
            decoded = coding1.decode_labels(memoryview(stream), labels.shape[1], labels.shape[0], palette, 0)
            submitted.append(threaded.submitted)
            on_worker[split_min] += len(ranked_on_worker)
            assert np.array_equal(decoded, labels)
        assert submitted[1] > submitted[0]  # the blocks and halves did go to the worker
    assert on_worker[1 << 40] == 0 and on_worker[2] > 0




class Deferred:
    def __init__(self, work, args):
        self.work, self.args, self.done = work, args, False

    def result(self):
        if not self.done:
            self.value, self.done = self.work(*self.args), True
        return self.value


class DeferredPool:
    """Runs a task only when its result is asked for: work used before it is waited for is left undone."""

    def __init__(self, *args):
        pass

    def submit(self, work, *args):
        return Deferred(work, args)

    def shutdown(self):
        pass


def test_decoder_waits_for_the_worker_before_using_its_work(monkeypatch):
    cases = [(palette, labels, coding1.encode_labels(labels, palette)) for palette, labels in threaded_cases()]
    monkeypatch.setattr(coding1, "THREAD_MIN_PIXELS", 1)
    monkeypatch.setattr(coding1, "SPLIT_MIN", 2)
    monkeypatch.setattr(coding1, "CHUNK", 7)
    monkeypatch.setattr(coding1, "ThreadPoolExecutor", DeferredPool)
    for palette, labels, stream in cases:
        decoded = coding1.decode_labels(memoryview(stream), labels.shape[1], labels.shape[0], palette, 0)
        assert np.array_equal(decoded, labels)


@pytest.mark.parametrize("share", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("rows", [13, 6])
def test_unanimous_slots_count_only_pixels_with_one_candidate(share, rows):
    """The escape list numbers unanimous pixels in raster order (spec §11.4); slots past a row's end are no pixel."""
    rng = np.random.default_rng(int(share * 10))
    geometry = coding1.Geometry("A", 1, 13, 9, 11, coding1.DIAGONAL, 18, 26)
    varied = rng.random((13, 11)) < share
    varied[:, 9:] = False  # slots past a row's end
    varied[4, :9] = True  # a row without unanimous pixels
    varied[rows:] = False  # none to choose after the first `rows` rows
    unanimous = np.flatnonzero(~varied[:, :9])
    at = np.sort(rng.choice(unanimous.size, unanimous.size // 2, replace=False)) if unanimous.size else np.zeros(0, np.int64)
    pixels = unanimous[at]
    slots = coding1.unanimous_slots(at, varied.reshape(-1), geometry)
    assert np.array_equal(slots, pixels // 9 * 11 + pixels % 9)


def test_encoder_bands_write_the_same_bytes(monkeypatch):
    """Large passes are encoded a band of rows at a time; the stream must be the whole pass's."""
    cases = list(threaded_cases())
    whole = [coding1.encode_labels(labels, palette) for palette, labels in cases]
    for band in (1, 50):  # a row at a time, and bands of a few rows
        monkeypatch.setattr(coding1, "BAND_PIXELS", band)
        assert [coding1.encode_labels(labels, palette) for palette, labels in cases] == whole


def test_threaded_encode_writes_the_same_bytes(monkeypatch):
    """Large images have their bands worked out on two threads; the stream must not change."""
    cases = list(threaded_cases())
    alone = [coding1.encode_labels(labels, palette) for palette, labels in cases]
    monkeypatch.setattr(coding1, "THREAD_MIN_PIXELS", 1)
    monkeypatch.setattr(coding1, "BAND_PIXELS", 40)  # many bands, so both threads work
    monkeypatch.setattr(coding1, "CACHE_MIN_ESCAPES", 1)  # and both fill the nearest-entry table
    monkeypatch.setattr(coding1, "ThreadPoolExecutor", CountingPool)
    CountingPool.submitted = 0
    assert [coding1.encode_labels(labels, palette) for palette, labels in cases] == alone
    assert CountingPool.submitted > 0


def test_work_in_chunks_gives_the_same_labels(monkeypatch):
    monkeypatch.setattr(coding1, "CHUNK", 7)  # large passes work in chunks of 65536 pixels to choose
    for palette, labels in threaded_cases():
        stream = coding1.encode_labels(labels, palette)
        decoded = coding1.decode_labels(memoryview(stream), labels.shape[1], labels.shape[0], palette, 0)
        assert np.array_equal(decoded, labels)


def test_threaded_decode_raises_the_same_errors(threaded, monkeypatch):
    """Truncated and corrupted streams fail with the same class and message with or without the worker."""
    monkeypatch.setattr(coding1, "SPLIT_MIN", 2)  # and with passes split in halves
    palette, labels = list(threaded_cases())[1]
    stream = coding1.encode_labels(labels, palette)
    threaded.submitted = 0  # count only the decoder's tasks
    rng = np.random.default_rng(3)
    broken = [stream[:n] for n in range(len(stream) - 40, len(stream), 3)]
    for at in rng.integers(60, len(stream), 40):
        flipped = bytearray(stream)
        flipped[at] ^= 1 << int(rng.integers(0, 8))
        broken.append(bytes(flipped))

    def outcome(data: bytes) -> str:
        try:
            coding1.decode_labels(memoryview(data), labels.shape[1], labels.shape[0], palette, 0)
        except errors.KmqError as error:
            return f"{type(error).__name__}: {error}"
        return "decoded"

    with_worker = [outcome(data) for data in broken]
    assert threaded.submitted > 0
    monkeypatch.setattr(coding1, "THREAD_MIN_PIXELS", 1 << 40)
    assert [outcome(data) for data in broken] == with_worker
    assert sum(result != "decoded" for result in with_worker) > 20


def test_encoder_falls_back_to_coding_0_when_coding_1_is_not_smaller():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 16, (20, 20))
    data = kmcodec.pack(rng.integers(0, 256, (16, 3), dtype=np.uint8), noise, compress=True)
    assert data[6] == 0 and len(data) == bound(20, 20, 16, 3)
    assert kmcodec.pack(np.zeros((1, 3), np.uint8), np.zeros((50, 50), int), compress=True)[6] == 0  # K = 1


def test_encode_compress_keeps_palette_and_labels():
    rng = np.random.default_rng(3)
    image = np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 6, 0), 6, 1)
    raw, coded = kmcodec.decode(kmcodec.encode(image, 8)), kmcodec.decode(kmcodec.encode(image, 8, compress=True))
    assert coded.coding == 1 and raw.coding == 0
    assert np.array_equal(raw.labels, coded.labels) and np.array_equal(raw.palette, coded.palette)


def test_recode_converts_both_ways_without_changing_pixels():
    labels, palette = example_labels(), EXAMPLE_PALETTE
    raw = kmcodec.pack(palette, labels)
    coded = kmcodec.recode(raw, compress=True)
    assert len(coded) <= len(spec_method2_dump()) and kmcodec.decode(coded).labels.tolist() == labels.tolist()
    assert kmcodec.recode(coded, compress=False) == raw
    assert kmcodec.recode(coded, compress=True) == coded


# --- hostile streams ------------------------------------------------------------


def with_stream(data: bytes, stream: bytes) -> bytes:
    """Replace the label stream of a coding-1 file and repair its CRC, so only the stream is wrong."""
    header = layout.HEADER.unpack_from(data)
    start = 24 + header[2] * header[7]
    body = data[:start] + stream
    return body + struct.pack("<I", zlib.crc32(body))


def test_rejects_a_file_longer_than_the_bound():
    data = spec_coding1_dump()
    stream = data[36:-4]
    too_long = with_stream(data, stream + bytes(296 - len(data) + 2))
    with pytest.raises(errors.BoundError, match="at most 296 bytes"):
        kmcodec.decode(too_long)


def test_rejects_a_file_shorter_than_the_fixed_fields():
    data = spec_coding1_dump()
    with pytest.raises(errors.TruncatedError, match="at least 66 bytes"):
        kmcodec.decode(with_stream(data, data[36:50]))


def test_every_bit_flip_with_a_repaired_crc_decodes_or_raises_a_format_error():
    data = spec_coding1_dump()
    stream = bytearray(data[36:-4])
    outcomes = set()
    for i in range(len(stream) * 8):
        flipped = bytearray(stream)
        flipped[i // 8] ^= 0x80 >> (i % 8)
        try:
            kmcodec.decode(with_stream(data, bytes(flipped)))
            outcomes.add("decoded")
        except errors.FormatError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcomes.add(type(exc).__name__)
    # The flips reach every coding-1 rule, not just the first.
    assert {"StreamStructureError", "StreamEndError", "SymbolRangeError"} <= outcomes


def test_every_truncation_raises_a_format_error():
    data = spec_coding1_dump()
    stream = data[36:-4]
    for cut in range(len(stream)):
        with pytest.raises(errors.FormatError):
            kmcodec.decode(with_stream(data, stream[:cut]))


def test_a_stream_claiming_huge_counts_allocates_nothing_for_them():
    """Extra bytes of 2**32 - 1: rejected from the stream's length, before any allocation."""
    labels = np.zeros((512, 512), int)
    labels[:, 256:] = 1
    data = method2_file(np.array([[0], [255]], np.uint8), labels)
    stream = bytearray(data[26:-4])
    stream[5:9] = (2**32 - 1).to_bytes(4, "little")
    hostile = with_stream(data, bytes(stream))
    tracemalloc.start()
    try:
        with pytest.raises(errors.StreamLengthError, match="4294967295 extra bytes"):
            kmcodec.decode(hostile)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # tables only: the label map (256 kB) is not even reached


def test_decode_memory_is_bounded_by_the_header():
    """A 1000 x 1000 coding-1 decode: the label map and the pass arrays, nothing sized by stream claims."""
    y, x = np.mgrid[0:1000, 0:1000]
    labels = ((x // 50 + y // 70) % 16).astype(np.uint8)
    data = method0_file(np.arange(48, dtype=np.uint8).reshape(16, 3), labels)  # the passes of method 0
    assert data[6] == 1
    tracemalloc.start()
    try:
        image = kmcodec.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(image.labels, labels)
    assert peak < 40 * labels.size  # about 4 x 4-byte neighbour planes of a level-1 pass, and some


def test_rans_tokens_invert_for_every_bit_length():
    values = np.array([0, 1, 15, 16, 17, 31, 32, 47, 48, 1000, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1], np.int64)
    tokens, nbits, extra = rans.to_tokens(values)
    assert tokens.max() < rans.TOKENS
    assert np.array_equal(nbits, rans.token_extra_bits(tokens))
    assert np.array_equal(rans.from_tokens(tokens, extra), values)
    assert tokens.tolist()[:9] == [0, 1, 15, 16, 16, 17, 18, 18, 19]  # 16, 17: e = 4, h = 0; 31: h = 1; 32, 47: e = 5, h = 0; 48: h = 1


def brute_force_pattern_tables():
    """Spec §11.4 read literally, one code at a time: pattern id, candidate neighbours, slots."""
    pattern = np.zeros(1024, np.uint8)
    perm = np.zeros((1024, 4), np.uint8)
    slot = np.full((1024, 4), 4, np.uint8)
    for code in range(1024):
        present = [bool(code >> j & 1) for j in range(4)]
        equal = {pair: bool(code >> (4 + i) & 1) for i, pair in enumerate(coding1.PAIRS)}
        same = lambda i, j: i == j or equal[(min(i, j), max(i, j))]  # noqa: E731
        firsts = [j for j in range(4) if present[j] and not any(present[i] and same(i, j) for i in range(j))]
        count = {j: sum(present[i] and same(i, j) for i in range(4)) for j in firsts}
        order = sorted(firsts, key=lambda j: (-count[j], j))
        counts = tuple(count[j] for j in order)
        pattern[code] = coding1.PATTERNS.index(counts) if counts in coding1.PATTERNS else 0
        perm[code, : len(order)] = order
        for j in range(4):
            if present[j]:
                slot[code, j] = next((i for i, f in enumerate(order) if same(f, j)), 4)
    return pattern, perm, slot


def test_pattern_tables_match_the_spec_read_one_code_at_a_time():
    for fast, slow in zip(coding1._pattern_tables(), brute_force_pattern_tables()):
        assert np.array_equal(fast, slow)


# --- golden coding-1 files -------------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures"


def golden_cases():
    import sys

    sys.path.insert(0, str(GOLDEN))
    from make_golden import CODED_CASES, SEED, golden_name

    return [(source, k, SEED, GOLDEN / "golden" / golden_name(source, k, True)) for source, k in CODED_CASES]


@pytest.mark.parametrize(("source", "k", "seed", "stem"), golden_cases())
def test_golden_coding1_file_reencodes_byte_identically(source, k, seed, stem):
    from kmcodec.files import load_image

    pixels = load_image(GOLDEN / source).array
    data = stem.with_suffix(".kmq").read_bytes()
    header = kmcodec.decode(data)
    assert data[6] == 1 and len(data) < bound(header.width, header.height, header.k, header.channels)
    again = kmcodec.encode(pixels, k, seed=seed, compress=True)
    stream_at = 24 + header.channels * header.k
    if data[stream_at] != zstd_labels.METHOD:  # methods 0, 2 and 3 are our own coders: the same bytes
        assert again == data
    else:
        # Method 1's frame is libzstd's output, which a zstandard release may change:
        # the header, palette and method must match, and the labels (checked below).
        assert again[: stream_at + 1] == data[: stream_at + 1]
        assert np.array_equal(kmcodec.decode(again).labels, header.labels)
    # The same palette and labels as the raw encode of the same image: only the coding differs.
    raw = kmcodec.decode(kmcodec.encode(pixels, k, seed=seed))
    image = kmcodec.decode(data)
    assert np.array_equal(image.labels, raw.labels) and np.array_equal(image.palette, raw.palette)
    with Image.open(stem.with_suffix(".png")) as png:
        assert np.array_equal(np.asarray(png), np.asarray(image.to_pil()))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=26, max_size=200), st.sampled_from([(32, 32, 4, 3), (17, 9, 300, 1), (64, 8, 2, 4)]))
def test_random_streams_behind_a_valid_header_decode_or_raise_a_format_error(stream, shape):
    """Random label streams pass rules 1-7 (the CRC is repaired), so they reach rules 10-13."""
    width, height, k, channels = shape
    head = layout.HEADER.pack(layout.MAGIC, 1, channels, 1, (k - 1).bit_length(), width, height, k, 0)
    body = head + bytes(channels * k) + stream[: bound(width, height, k, channels) - 28 - channels * k]
    data = body + struct.pack("<I", zlib.crc32(body))
    try:
        image = kmcodec.decode(data)
    except errors.FormatError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert image.labels.shape == (height, width) and int(image.labels.max()) < k


# ---------------------------------------------------------------- method 1 (spec §11.11)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([2, 5, 16, 200, 256, 257, 3000, 65536]),
    st.sampled_from([1, 3, 4]),
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    st.tuples(st.integers(1, 10), st.integers(1, 10)),
    st.integers(0, 2**32 - 1),
)
def test_the_encoder_keeps_the_smaller_method_and_both_round_trip(k, channels, tile, repeats, seed):
    """Repeated random tiles (glyphs, icons): method 1's ground. Whichever method is written is no
    longer than method 0's stream, and decodes to the labels."""
    rng = np.random.default_rng(seed)
    labels = np.tile(rng.integers(0, k, tile), repeats)
    palette = rng.integers(0, 256, (k, channels)).astype(np.uint8)
    data = kmcodec.pack(palette, labels, compress=True)
    assert len(data) <= bound(labels.shape[1], labels.shape[0], k, channels)
    image = kmcodec.decode(data)
    assert np.array_equal(image.labels, labels) and np.array_equal(image.palette, palette)
    if data[6] == 1:
        assert len(data) - 28 - palette.size <= len(coding1.encode_labels(labels, palette))


@pytest.mark.parametrize(("k", "channels"), [(2, 3), (16, 1), (256, 4), (300, 3), (65536, 1)])
def test_a_repeated_tile_is_written_as_one_zstandard_frame(k, channels):
    rng = np.random.default_rng(k)
    labels = np.tile(rng.integers(0, k, (7, 11)), (9, 8))
    data = kmcodec.pack(rng.integers(0, 256, (k, channels)).astype(np.uint8), labels, compress=True)
    assert data[6] == 1 and stream_method(data) == 1
    assert np.array_equal(kmcodec.decode(data).labels, labels)


def test_photos_stay_on_the_neighbour_models():
    """The golden photo files are method 3, not method 1; re-encoded without the C module they are method 2."""
    from kmcodec import raster_coding

    for name, source, k in (("coffee_k16_z", "coffee.png", 16), ("chelsea_k64_z", "chelsea.png", 64), ("camera_grey_k8_z", "camera_grey.png", 8)):
        assert stream_method((GOLDEN / "golden" / f"{name}.kmq").read_bytes()) == 3, name
        image = kmcodec.decode((GOLDEN / "golden" / f"{name}.kmq").read_bytes())
        saved, raster_coding._raster = raster_coding._raster, None
        try:
            assert stream_method(kmcodec.pack(image.palette, image.labels, compress=True)) == 2, name
        finally:
            raster_coding._raster = saved


def test_method1_decode_allocates_only_the_content():
    """A 2000 x 2000, K = 2 frame of RLE blocks: the decoder holds the 4 MB of labels, not more."""
    import sys

    sys.path.insert(0, str(GOLDEN))
    from make_conformance import rle_block, zstd_frame

    n = 2000 * 2000
    blocks = b"".join(rle_block(i % 2, 131072) for i in range(n // 131072)) + rle_block(1, n % 131072, last=True)
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    header = kmcodec.container.Header(2000, 2000, 2, 3, coding=layout.CODING_CODED)
    data = kmcodec.container.join(header, palette.tobytes(), zstd_frame(n, blocks))
    tracemalloc.start()
    try:
        labels = kmcodec.decode(data).labels
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels[0, 0] == 0 and labels[-1, -1] == 1 and labels.flags.writeable  # like a method-0 label map
    assert peak < 2.5 * n  # the label map (N bytes, decompressed into) and the range check's N booleans


def test_a_large_repeated_image_still_gets_a_single_segment_frame():
    """12 MB of labels: beyond level 19's own window, so the encoder widens the window to the content
    (a frame must be single-segment, §11.11 step 1); matches then reach across the whole image."""
    rng = np.random.default_rng(1)
    labels = np.tile(rng.integers(0, 3, (30, 40)), (100, 100)).astype(np.uint8)  # 3000 x 4000
    data = kmcodec.pack(np.array([[0, 0, 0], [128, 128, 128], [255, 255, 255]], np.uint8), labels, compress=True)
    assert stream_method(data) == 1 and data[24 + 9 + 5] & 0x20
    assert len(data) < 20_000
    assert np.array_equal(kmcodec.decode(data).labels, labels)


def test_spec_method1_example_is_the_frame_of_its_table():
    """spec §11.12: the dump is the RLE, raw and RLE blocks its table lists, and decodes to its description."""
    dumps = re.findall(r"```\n(0{8}.*?)```", SPEC.read_text(), re.S)
    data = bytes.fromhex("".join(line[10:58] for line in dumps[4].splitlines()))
    row = bytes(i % 4 for i in range(64))
    frame = b"\x28\xb5\x2f\xfd\x60" + struct.pack("<H", 2048 - 256) + b"\x02\x20\x00\x00" + b"\x00\x02\x00" + row + b"\x03\x1e\x00\x03"
    assert data[36] == 1 and data[37:-4] == frame and len(data) == 123 < bound(64, 32, 4, 3) == 552
    image = kmcodec.decode(data)
    want = np.zeros((32, 64), np.int64)
    want[16] = np.arange(64) % 4
    want[17:] = 3
    assert np.array_equal(image.labels, want) and np.array_equal(image.palette, EXAMPLE_PALETTE)
