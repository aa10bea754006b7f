"""Spec §4: the label stream, checked against an independent bit-by-bit reference."""

import numpy as np
import pytest
from bitarray import bitarray
from hypothesis import given, settings
from hypothesis import strategies as st

from kmcodec import bitpack
from kmcodec.errors import LabelRangeError, PaddingError


def reference_pack(labels, bits):
    """MSB-first, no row padding, zero-filled tail: written out one bit at a time."""
    stream = bitarray(endian="big")
    for value in labels:
        stream.extend(format(int(value), f"0{bits}b") if bits else "")
    return stream.tobytes()  # bitarray pads the last byte with zeros


@st.composite
def label_streams(draw):
    bits = draw(st.integers(0, 16))
    count = draw(st.integers(1, 300))
    values = draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=count, max_size=count))
    return bits, np.array(values, np.uint16 if bits > 8 else np.uint8)


@settings(max_examples=300)
@given(label_streams())
def test_pack_matches_msb_first_reference_for_every_width(stream):
    bits, labels = stream
    assert bitpack.pack_labels(labels, bits) == reference_pack(labels, bits)


@settings(max_examples=300)
@given(label_streams())
def test_unpack_inverts_pack(stream):
    bits, labels = stream
    data = bitpack.pack_labels(labels, bits)
    assert len(data) == bitpack.packed_size(labels.size, bits)
    assert np.array_equal(bitpack.unpack_labels(data, labels.size, bits, 1 << bits), labels)


@given(label_streams(), st.data())
def test_unpack_range_reads_any_window(stream, data):
    bits, labels = stream
    packed = np.frombuffer(bitpack.pack_labels(labels, bits), np.uint8)
    start = data.draw(st.integers(0, labels.size - 1))
    count = data.draw(st.integers(1, labels.size - start))
    assert np.array_equal(bitpack.unpack_range(packed, start, count, bits), labels[start : start + count])


def test_rows_are_not_padded():
    # 3 labels of 3 bits: 001 010 011 + 7 zero bits = 0b00101001 0b10000000
    assert bitpack.pack_labels(np.array([[1, 2, 3]]), 3) == bytes([0b00101001, 0b10000000])


def test_chunked_general_path_matches_reference_across_chunk_boundary(monkeypatch):
    monkeypatch.setattr(bitpack, "CHUNK", 16)
    labels = np.arange(45, dtype=np.uint16) % 29
    data = bitpack.pack_labels(labels, 5)
    assert data == reference_pack(labels, 5)
    assert np.array_equal(bitpack.unpack_labels(data, labels.size, 5, 29), labels)


def test_rejects_label_not_below_k():
    data = bitpack.pack_labels(np.array([0, 1, 2, 5, 3]), 3)
    with pytest.raises(LabelRangeError, match=r"label 5 at pixel \(x=0, y=1\) is not below k=5"):
        bitpack.unpack_labels(data, 5, 3, 5, width=3)


def test_rejects_nonzero_padding_bits():
    data = bytearray(bitpack.pack_labels(np.array([1, 0, 1]), 1))
    data[-1] |= 0x01
    with pytest.raises(PaddingError, match="padding"):
        bitpack.unpack_labels(bytes(data), 3, 1, 2)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_byte_table_lists_the_labels_of_each_byte_first_first(bits):
    """Checked against the byte's binary digits, cut into b-digit labels from the left."""
    table = bitpack.byte_table(bits)
    for byte in range(256):
        digits = format(byte, "08b")
        assert list(table[byte]) == [int(digits[i : i + bits], 2) for i in range(0, 8, bits)]


# Past the first CHUNK (1M) labels the checks run chunk by chunk; the error must
# still name the pixel in the whole image. b = 2, 3, 5 (general path), 8, 9, 12.
@pytest.mark.parametrize("k", [3, 5, 17, 200, 300, 3000])
def test_label_not_below_k_is_located_past_the_first_chunk(k):
    width, height = 1031, 1500  # 1,546,500 pixels: the bad one sits in the second chunk
    x, y = 17, 1400
    assert y * width + x > bitpack.CHUNK
    bits = (k - 1).bit_length()
    bad = (1 << bits) - 1  # the largest b-bit value: not below k, as k is no power of two
    labels = np.zeros(width * height, bitpack.label_dtype(k))
    labels[y * width + x] = bad
    data = bitpack.pack_labels(labels, bits)
    message = rf"label {bad} at pixel \(x={x}, y={y}\) is not below k={k}"
    with pytest.raises(LabelRangeError, match=message):
        bitpack.check_labels(data, labels.size, bits, k, width)
    with pytest.raises(LabelRangeError, match=message):
        bitpack.unpack_labels(data, labels.size, bits, k, width)
