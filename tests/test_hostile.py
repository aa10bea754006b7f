"""Decoder hardening (spec §7): hostile bytes either decode or raise a KmqError subclass, nothing else.

A bounded, deterministic cousin of tests/fuzz/: truncations at every length, every
single-bit flip, extreme and swapped header fields, and random bytes. Whatever
decodes must re-pack to the same bytes.
"""

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import kmcodec
from kmcodec import layout
from kmcodec.errors import BadMagicError, KmqError, PixelLimitError, TrailingDataError, TruncatedError

# Low enough that re-packing a decoded K = 1 file claiming this many pixels is cheap.
LIMIT = 1 << 16
FIELDS = ["magic", "version", "channels", "coding", "bits_per_pixel", "width", "height", "k", "reserved"]
U8_FIELDS = ["version", "channels", "coding", "bits_per_pixel"]
U32_FIELDS = ["width", "height", "k", "reserved"]
EXTREMES = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 255, 256, 65535, 65536, 65537, 2**31, 2**32 - 1]
HOSTILE = settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def small_file(k: int, channels: int, width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    labels = rng.integers(0, k, (height, width))
    labels.flat[-1] = k - 1
    return kmcodec.pack(palette, labels)


# Every label path: b = 0 (no stream), byte-table widths 1, 2, 4, 8, the general
# path at 3, 5, 9 and 12, and 16; rows ending mid-byte; all three channel counts.
SEEDS = [
    small_file(1, 3, 3, 2),
    small_file(2, 1, 5, 3),
    small_file(3, 3, 7, 2),
    small_file(5, 4, 5, 3),
    small_file(16, 3, 3, 3),
    small_file(20, 1, 3, 4),
    small_file(200, 1, 3, 2),
    small_file(300, 1, 2, 2),
    small_file(3000, 1, 3, 1),
    small_file(40000, 1, 2, 1),
]
# Every truncation and every bit flip outside the palette, at every label width
# of SEEDS (b = 0, 1, 2, 3, 4, 5, 8, 9, 12, 16). A palette byte only feeds the
# CRC, so large palettes are flipped at a sample of bits.
WIDE_SEEDS = [small_file(200, 1, 3, 2), small_file(300, 3, 5, 3), small_file(2100, 1, 7, 3), small_file(40000, 1, 3, 3)]
FLIP_SEEDS = [data for data in SEEDS if len(data) <= 120] + WIDE_SEEDS
PALETTE_SAMPLE = 61


def decode_or_reject(data: bytes):
    """The property: a KmqError with a one-line message, or an image that re-packs to `data`."""
    try:
        image = kmcodec.decode(data, max_pixels=LIMIT)
    except KmqError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return None
    assert kmcodec.pack(image.palette, image.labels) == bytes(data)
    assert np.array_equal(image.to_array(), image.palette[image.labels])
    return image


def fields_of(data: bytes) -> dict:
    return dict(zip(FIELDS, layout.HEADER.unpack_from(data)))


def rebuild(data: bytes, fields: dict, *, fix_length: bool) -> bytes:
    """New header fields on the old body, the length made to fit them when asked, and a correct CRC-32."""
    body = layout.HEADER.pack(*(fields[name] for name in FIELDS)) + data[layout.HEADER_SIZE : -layout.CHECK_SIZE]
    if fix_length:
        try:
            total = layout.size_formula(fields["width"], fields["height"], fields["k"], fields["channels"]).total_bytes
        except ValueError:  # k out of range: no formula, keep the body
            total = None
        if total is not None and total <= 1 << 20:
            body = body[: total - layout.CHECK_SIZE].ljust(total - layout.CHECK_SIZE, b"\0")
    return body + struct.pack("<I", zlib.crc32(body))


def test_seeds_decode():
    for data in SEEDS:
        assert decode_or_reject(data) is not None


@pytest.mark.parametrize("seed", range(len(FLIP_SEEDS)))
def test_rejects_every_truncation(seed):
    data = memoryview(FLIP_SEEDS[seed])  # slices without copies
    for length in sampled_in_palette(data, range(len(data)), 1):
        with pytest.raises((TruncatedError, BadMagicError)):
            kmcodec.decode(data[:length], max_pixels=LIMIT)


def sampled_in_palette(data, positions, per_byte: int) -> list[int]:
    """All `positions` (bytes, or bits when per_byte is 8) outside the palette, every PALETTE_SAMPLE-th inside it."""
    header = fields_of(bytes(data[: layout.HEADER_SIZE]))
    palette_end = layout.HEADER_SIZE + header["channels"] * header["k"]
    inside = range(layout.HEADER_SIZE * per_byte + 1, palette_end * per_byte)
    return [p for p in positions if p not in inside or p % PALETTE_SAMPLE == 0]


@pytest.mark.parametrize("seed", range(len(FLIP_SEEDS)))
def test_rejects_every_single_bit_flip(seed):
    """CRC-32 catches every single-bit error; a flipped header bit may trip an earlier rule first."""
    data = FLIP_SEEDS[seed]
    for bit in sampled_in_palette(data, range(8 * len(data)), 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(KmqError):
            kmcodec.decode(bytes(flipped), max_pixels=LIMIT)


def test_flip_seeds_cover_every_label_path():
    assert sorted({fields_of(data)["bits_per_pixel"] for data in FLIP_SEEDS}) == [0, 1, 2, 3, 4, 5, 8, 9, 12, 16]


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_rejects_every_extension(seed):
    data = SEEDS[seed]
    for extra in (b"\0", b"\0" * 7, data[-4:], data):
        with pytest.raises(TrailingDataError):
            kmcodec.decode(data + extra, max_pixels=LIMIT)


@HOSTILE
@given(st.sampled_from(SEEDS), st.binary(min_size=1, max_size=40), st.integers(0, 2**16))
def test_bytes_spliced_into_a_valid_file(data, insert, where):
    where = where % len(data)
    decode_or_reject(data[:where] + insert + data[where:])
    decode_or_reject(data + insert)
    # Written over the body at the same length with the CRC repaired: rules 1-7 may pass, so 8 and 9 are reached.
    body = bytearray(data[:-4])
    at = where % len(body)
    body[at : at + len(insert)] = insert[: len(body) - at]
    event(outcome(bytes(body) + struct.pack("<I", zlib.crc32(body))))


@HOSTILE
@given(st.sampled_from(SEEDS), st.lists(st.integers(0, 2**20), min_size=1, max_size=6), st.booleans())
def test_bit_flips_with_and_without_a_repaired_check(data, bits, repair_check):
    flipped = bytearray(data)
    for bit in bits:
        bit %= 8 * len(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
    if repair_check:
        flipped[-4:] = struct.pack("<I", zlib.crc32(flipped[:-4]))
    decode_or_reject(bytes(flipped))


@HOSTILE
@given(
    st.sampled_from(SEEDS),
    st.dictionaries(
        st.sampled_from(U8_FIELDS + U32_FIELDS),
        st.one_of(st.sampled_from(EXTREMES), st.integers(0, 2**32 - 1)),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
def test_extreme_header_fields(data, changes, fix_length):
    fields = fields_of(data)
    for name, value in changes.items():
        fields[name] = value % 256 if name in U8_FIELDS else value
    decode_or_reject(rebuild(data, fields, fix_length=fix_length))


@HOSTILE
@given(
    st.sampled_from(SEEDS),
    st.one_of(st.permutations(U8_FIELDS), st.permutations(U32_FIELDS)),
    st.booleans(),
)
def test_swapped_header_fields(data, order, fix_length):
    fields = fields_of(data)
    names = sorted(order, key=FIELDS.index)
    values = [fields[name] for name in order]
    fields.update(zip(names, values))
    decode_or_reject(rebuild(data, fields, fix_length=fix_length))


@HOSTILE
@given(st.binary(max_size=300))
def test_random_bytes(data):
    decode_or_reject(data)


def outcome(data: bytes) -> str:
    """Check the property, then name the rule of spec §7 that rejects `data` (by kmcodec's exception) or "decoded"."""
    if decode_or_reject(data) is not None:
        return "decoded"
    try:
        kmcodec.decode(data, max_pixels=LIMIT)
    except KmqError as exc:
        return type(exc).__name__
    raise AssertionError("decoded on the second try")


def past_rule_6(k: int, channels: int, width: int, height: int, seed: int, edits, repair_check: bool) -> bytes:
    """A file whose header and length pass rules 1-6, random labels with a few bytes of the label
    stream overwritten (`edits`: (position, byte) pairs, negative from the end, where the padding
    is), and a CRC repaired when asked."""
    rng = np.random.default_rng(seed)
    bits = layout.bits_for_k(k)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    labels = rng.integers(0, k, (height, width))
    header = kmcodec.container.Header(width=width, height=height, k=k, channels=channels)
    data = bytearray(kmcodec.container.join(header, palette.tobytes(), kmcodec.bitpack.pack_labels(labels, bits)))
    stream = range(layout.HEADER_SIZE + channels * k, len(data) - layout.CHECK_SIZE)
    for position, byte in edits if len(stream) else ():
        data[stream[position % len(stream)]] = byte
    if repair_check:
        data[-4:] = struct.pack("<I", zlib.crc32(data[:-4]))
    return bytes(data)


# K weighted to small values and to either side of the powers of two, where b changes.
K_VALUES = st.one_of(st.integers(1, 40), st.sampled_from([127, 129, 255, 256, 257, 300, 2049, 4095, 40000, 65535, 65536]))


@settings(HOSTILE, max_examples=400)
@given(
    K_VALUES,
    st.sampled_from(layout.CHANNELS),
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.one_of(st.integers(-2, -1), st.integers(0, 2**16)), st.integers(0, 255)), max_size=3),
    st.booleans(),
)
def test_headers_that_pass_rules_1_to_6_reach_the_check_padding_and_label_rules(k, channels, width, height, seed, edits, repair):
    data = past_rule_6(k, channels, width, height, seed, edits, repair)
    event(outcome(data))


def test_files_past_rule_6_reach_every_later_rule():
    """Counted, not assumed: the generator above reaches rules 7, 8, 9 and a successful decode."""
    rng = np.random.default_rng(12)
    counts: dict[str, int] = {}
    for _ in range(400):
        k = int(rng.choice([2, 3, 5, 7, 12, 200, 300, 3000]))
        edits = [(int(rng.integers(-2, 2**16)), int(rng.integers(0, 256))) for _ in range(rng.integers(0, 3))]
        data = past_rule_6(k, 3, int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(2**32)), edits, rng.random() < 0.75)
        name = outcome(data)
        counts[name] = counts.get(name, 0) + 1
    assert set(counts) == {"ChecksumError", "PaddingError", "LabelRangeError", "decoded"}, counts
    assert min(counts.values()) >= 20, counts


@HOSTILE
@given(st.binary(min_size=8, max_size=300), st.booleans())
def test_random_bytes_behind_a_plausible_header(tail, with_check):
    """Header fields mostly in range (K in 1..65536, b usually right, small sides), random bytes after."""
    k = 1 + int.from_bytes(tail[2:4], "little") % (300 if tail[0] & 1 else 65536)
    bits = layout.bits_for_k(k) if tail[1] % 4 else tail[1] % 17
    fields = layout.MAGIC, 1, (1, 3, 4)[tail[0] % 3], 0, bits, 1 + tail[4] % 16, 1 + tail[5] % 16, k, 0
    data = layout.HEADER.pack(*fields) + tail[8:]
    if with_check and len(data) >= layout.OVERHEAD:
        data = data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
    event(outcome(data))


def claims_max_dims(k: int) -> bytes:
    body = layout.HEADER.pack(layout.MAGIC, 1, 3, 0, layout.bits_for_k(k), 2**32 - 1, 2**32 - 1, k, 0) + bytes(3 * k)
    return body + struct.pack("<I", zlib.crc32(body))


def peak_bytes(action) -> int:
    tracemalloc.start()
    try:
        action()
    except KmqError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("k", [1, 2, 300, 65536])
def test_pixel_bomb_is_rejected_by_the_default_limit_using_no_memory(k):
    data = claims_max_dims(k)
    with pytest.raises(PixelLimitError, match="4294967295x4294967295"):
        kmcodec.decode(data)
    assert peak_bytes(lambda: kmcodec.decode(data)) < 64_000


@pytest.mark.parametrize("k", [2, 300, 65536])
def test_pixel_bomb_without_a_limit_fails_the_length_check_using_no_memory(k):
    data = claims_max_dims(k)
    with pytest.raises(TruncatedError):
        kmcodec.decode(data, max_pixels=None)
    assert peak_bytes(lambda: kmcodec.decode(data, max_pixels=None)) < 64_000


def test_k1_file_under_the_limit_allocates_nothing_for_its_pixels():
    """A 31-byte K = 1 file may claim 89 million pixels; decode must not materialise them."""
    body = layout.HEADER.pack(layout.MAGIC, 1, 3, 0, 0, 9000, 9000, 1, 0) + b"\1\2\3"
    data = body + struct.pack("<I", zlib.crc32(body))
    assert peak_bytes(lambda: kmcodec.decode(data)) < 64_000
    first = next(kmcodec.decode(data).iter_rows(1))
    assert first.shape == (1, 9000, 3) and (first == [1, 2, 3]).all()


# --------------------------------------------------------------------------- memory on real payloads


def tiled_file(k: int, channels: int, width: int, height: int) -> bytes:
    """A multi-MB valid file built fast: one packed row of random labels, repeated.

    `width * b` is a multiple of 8, so each row packs to whole bytes and the
    repeated bytes are exactly the packing of the repeated rows.
    """
    bits = layout.bits_for_k(k)
    assert width * bits % 8 == 0
    rng = np.random.default_rng(k)
    row = rng.integers(0, k, width)
    row[-1] = k - 1
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    header = kmcodec.container.Header(width=width, height=height, k=k, channels=channels)
    return kmcodec.container.join(header, palette.tobytes(), kmcodec.bitpack.pack_labels(row, bits) * height)


def growth(measure, k: int) -> int:
    """How much more peak memory `measure(data)` takes on a 16-megapixel grey file than on a 4-megapixel one.

    Both sizes are past every fixed-size buffer (chunks of bitpack.CHUNK labels,
    codec.GATHER_THREADS x codec.GATHER_CHUNK items, the pair table), so a
    bounded path grows by nothing, or by its output alone.
    """
    small, large = (tiled_file(k, 1, WIDTH, ROWS * n) for n in (1, 4))
    return peak_bytes(lambda: measure(large)) - peak_bytes(lambda: measure(small))


WIDTH, ROWS = 4096, 1024
# b = 2, 4, 8 (one lookup per byte) and 12 (the general path).
MEMORY_K = [3, 11, 200, 3000]


@pytest.mark.parametrize("k", MEMORY_K)
def test_validating_a_payload_uses_memory_independent_of_its_size(k):
    """decode checks every label (rules 8, 9) chunk by chunk, keeping none."""
    assert growth(lambda data: kmcodec.decode(data), k) < 256_000


@pytest.mark.parametrize("k", MEMORY_K)
def test_iter_rows_uses_memory_independent_of_the_image_size(k):
    assert growth(lambda data: [None for _ in kmcodec.decode(data).iter_rows(16)], k) < 256_000


@pytest.mark.parametrize("k", MEMORY_K)
@pytest.mark.parametrize("pairs", [True, False], ids=["pair-table", "byte-table"])
def test_to_array_allocates_its_output_and_a_bounded_rest(monkeypatch, k, pairs):
    """The larger image's output is 3 x WIDTH x ROWS bytes larger; the rest may not grow by a label per pixel."""
    monkeypatch.setattr(kmcodec.codec, "PAIR_MIN_BYTES", 0 if pairs else 1 << 62)  # one path for both sizes
    monkeypatch.setattr(kmcodec.codec, "GATHER_THREADS", 1)  # threads' chunk buffers overlap by chance
    assert growth(lambda data: kmcodec.decode(data).to_array(), k) < 3 * WIDTH * ROWS + 1_000_000
