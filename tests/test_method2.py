"""Coding 1, method 2 (spec §11.13): packed tables and escape ranks counted from the mean colour's entry."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmcodec
from kmcodec import coding1, container, errors, layout, packed_tables, rans

SPEC_TABLE_EXAMPLE = "0110 10 00000101001 000010101"  # spec §11.13: p = 6, n = 3, f = 40, 20, 4


def bits_to_bytes(bits: str) -> bytes:
    bits = bits.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


def golomb(value: int) -> str:
    """Exp-Golomb as the spec words it: z zeros, a one, z bits; f = 2^z - 1 + x."""
    z = (value + 1).bit_length() - 1
    return "0" * z + format(value + 1, "b")


def test_spec_table_example_reads_as_the_spec_says():
    reader = packed_tables.TableReader(memoryview(bits_to_bytes(SPEC_TABLE_EXAMPLE)), 0, 0)
    freqs = reader.table(3, "table")
    assert freqs[:3].tolist() == [2560, 1280, 256] and freqs[3:].sum() == 0
    assert reader.end() == 4


def test_golomb_codes_are_the_spec_words():
    assert [golomb(v) for v in (0, 1, 2, 3, 40)] == ["1", "010", "011", "00100", "00000101001"]
    for v in (0, 1, 2, 3, 40, 4095):
        assert packed_tables.golomb_bits([v]) == len(golomb(v))
    # p = 6, n = 3 in a 3-symbol context, then f = 40 and 20: the spec's example, as the encoder writes it
    assert packed_tables.write_tables([(6, np.array([40, 20, 4]), 3)]) == bits_to_bytes(SPEC_TABLE_EXAMPLE)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([3, 4, 5, 72]), st.lists(st.integers(0, 5000), min_size=72, max_size=72)), min_size=1, max_size=12))
def test_packed_tables_read_back_what_was_written(cases):
    tables, expect = [], []
    for alphabet, counts in cases:
        counts = np.array(counts[:alphabet], np.int64)
        if not counts.any():
            counts[alphabet - 1] = 1
        p, freqs = packed_tables.best_table(counts, alphabet)
        assert freqs.sum() == 1 << p and (freqs[counts > 0] >= 1).all() and (freqs[counts == 0] == 0).all()
        tables.append((p, freqs, alphabet))
        expect.append(freqs << (12 - p))
    data = packed_tables.write_tables(tables)
    reader = packed_tables.TableReader(memoryview(data), 0, 0)
    for (_, _, alphabet), want in zip(tables, expect):
        got = reader.table(alphabet, "table")
        assert got[:alphabet].tolist() == want.tolist() and got.sum() == rans.TOTAL
    assert reader.end() == len(data)


def test_best_table_trades_precision_for_table_bits():
    few = packed_tables.best_table(np.array([3, 1, 0]), 3)
    many = packed_tables.best_table(np.array([300000, 100000, 7]), 3)
    assert few[0] < many[0] == 12  # a context of 4 symbols cannot pay for 12-bit frequencies


# --- the mean colour's entry -----------------------------------------------------------


def brute_ref(palette: np.ndarray, neighbours: list[int | None]) -> int:
    """spec §11.13, word for word, with Python integers."""
    held = [palette[label].astype(int) for label in neighbours if label is not None]
    n = len(held)
    mean = [(2 * sum(colour[c] for colour in held) + n) // (2 * n) for c in range(palette.shape[1])]
    dist = [sum((int(entry[c]) - mean[c]) ** 2 for c in range(palette.shape[1])) for entry in palette]
    return min(range(len(palette)), key=lambda i: (dist[i], i))


@pytest.mark.parametrize("cache_from", [0, 1 << 30])  # the table of nearest entries large images use, or none
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_mean_ref_is_the_entry_nearest_the_rounded_mean(channels, cache_from, monkeypatch):
    monkeypatch.setattr(coding1, "CACHE_MIN_ESCAPES", cache_from)
    rng = np.random.default_rng(channels)
    k = 40
    palette = rng.integers(0, 256, (k, channels)).astype(np.uint8)
    palette[5] = palette[3]  # a duplicate: ties go to the lower index
    n = 3000
    labels = rng.integers(0, k, (4, n))
    present = rng.random((4, n)) < 0.8
    present[0] |= ~present.any(axis=0)
    escapes = coding1.EscapeOrder(palette)
    half = n // 2
    first = escapes.mean_refs(list(labels[:, :half]), list(present[:, :half]))
    got = escapes.mean_refs(list(labels), list(present))  # with a table (C <= 3): half its colours are in it
    want = [brute_ref(palette, [int(labels[j, i]) if present[j, i] else None for j in range(4)]) for i in range(n)]
    assert got.tolist() == want and first.tolist() == want[:half]
    inner = present.all(axis=0)  # all four present: the decoder's shortcut, (sum + 2) >> 2 in every field
    shortcut = escapes.mean_refs(list(labels[:, inner]), None)
    assert shortcut.tolist() == np.array(want)[inner].tolist() and inner.sum() > 100


@pytest.mark.parametrize("k", [24, 256])  # K = 256: entry 255 is the one the decoder's table cannot hold
@pytest.mark.parametrize("cache_from", [0, 1 << 30])
def test_method2_counts_escapes_from_the_mean_and_method0_from_candidate_0(cache_from, k, monkeypatch):
    """A photo-like image: both methods decode to the same labels; method 2 is smaller and its ranks differ."""
    monkeypatch.setattr(coding1, "CACHE_MIN_ESCAPES", cache_from)
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    base = np.cumsum(np.cumsum(rng.integers(-1, 2, (96, 80)), axis=0), axis=1)
    labels = (np.abs(base) % k).astype(np.uint8)
    m0 = coding1.encode_labels(labels, palette, coding1.METHOD)
    m2 = coding1.encode_labels(labels, palette)
    assert m0[0] == 0 and m2[0] == 2 and len(m2) < len(m0)
    for stream in (m0, m2):
        assert coding1.decode_labels(memoryview(stream), 80, 96, palette, 0).tolist() == labels.tolist()
    # Read method 2's stream with method 0's reference: the labels come out wrong or the file is rejected.
    escapes = coding1.EscapeOrder(palette, coding1.METHOD_PACKED)
    escapes.mean = False
    original = coding1.EscapeOrder
    try:
        coding1.EscapeOrder = lambda palette, method=0: escapes
        try:
            wrong = coding1.decode_labels(memoryview(m2), 80, 96, palette, 0)
            assert wrong.tolist() != labels.tolist()
        except errors.KmqError:
            pass
    finally:
        coding1.EscapeOrder = original


# --- hostile tables ----------------------------------------------------------------------


WIDTH, HEIGHT = 64, 8  # K = 2 grey: the bound is 28 + 2 + 64 = 94 bytes, room for any table below


def file_with_tables(table_bits: str, presence: int = 1, lane_state: bool = True) -> bytes:
    """A flat 64 x 8, K = 2 grey coding-1 file, method 2, whose packed tables are `table_bits`
    (for the contexts whose bits are set in `presence`), then one lane state and nothing else."""
    palette = np.array([[0], [255]], np.uint8)
    stream = bytes([2]) + struct.pack("<HHI", 1, 0, 0) + presence.to_bytes(13, "little") + bits_to_bytes(table_bits)
    if lane_state:
        stream += struct.pack("<I", rans.STATE_LOW)
    header = container.Header(WIDTH, HEIGHT, 2, 1, coding=layout.CODING_CODED)
    body = container.join(header, palette.tobytes(), stream)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


ONE_SYMBOL = "0000 0000000"  # p = 0, n = 1: context 0 always decodes 0 (no escapes)


def test_a_table_of_one_symbol_decodes():
    """Context 0 says no pass has an escape; a symbol of frequency 4096 reads no word."""
    image = kmcodec.decode(file_with_tables(ONE_SYMBOL))
    assert image.labels.tolist() == np.zeros((HEIGHT, WIDTH), int).tolist()


@pytest.mark.parametrize(
    "bits, error, message",
    [
        ("1101 0000000", errors.StreamStructureError, "precision 13"),
        ("0001 1001000", errors.StreamStructureError, "73 symbols"),
        ("1100 0000001 0000000000000 1 0000000000000", errors.StreamStructureError, "more than 12 leading zero bits"),
        ("0001 0000001 011", errors.StreamStructureError, "sum to 2, more than 1 before the last symbol"),
        (ONE_SYMBOL + " 1", errors.StreamStructureError, "bits after the last table are not zero"),
    ],
)
def test_bad_packed_tables_are_rejected_with_their_rule(bits, error, message):
    with pytest.raises(error, match=message):
        kmcodec.decode(file_with_tables(bits))


def test_packed_tables_cut_by_the_end_of_the_stream():
    """Three one-symbol tables, then one whose first frequency's code runs past the stream's last byte."""
    bits = ONE_SYMBOL * 3 + "0101 0000001 0000"
    assert len(bits.replace(" ", "")) == 48
    with pytest.raises(errors.StreamEndError, match="stream ends early: table 3 frequency"):
        kmcodec.decode(file_with_tables(bits, presence=0b1111, lane_state=False))


def test_method_4_is_rejected():
    data = bytearray(file_with_tables(ONE_SYMBOL))
    data[26] = 4
    body = bytes(data[:-4])
    with pytest.raises(errors.StreamStructureError, match="coding 1 allows 0, 1, 2 and 3"):
        kmcodec.decode(body + struct.pack("<I", zlib.crc32(body)))
