"""Spec §2 and §6: bits per label and the exact size formula."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmcodec import layout
from kmcodec.layout import bits_for_k, size_formula


@pytest.mark.parametrize(
    ("k", "bits"),
    [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (16, 4), (17, 5), (255, 8), (256, 8), (257, 9), (65535, 16), (65536, 16)],
)
def test_bits_per_pixel_is_ceil_log2_k(k, bits):
    assert bits_for_k(k) == bits


@given(st.integers(2, layout.MAX_K))
def test_bits_per_pixel_matches_math_ceil_log2(k):
    assert bits_for_k(k) == math.ceil(math.log2(k))


@pytest.mark.parametrize("k", [0, -1, layout.MAX_K + 1])
def test_bits_per_pixel_rejects_k_out_of_range(k):
    with pytest.raises(ValueError):
        bits_for_k(k)


def test_overhead_is_header_plus_check_and_at_most_32_bytes():
    assert layout.HEADER.size == layout.HEADER_SIZE == 24
    assert layout.OVERHEAD == 28 <= 32


def test_worked_example_of_the_spec():
    size = size_formula(3, 2, 3)
    assert (size.content_bits, size.total_bytes) == (8 * 3 * 3 + 6 * 2, 39)


@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, layout.MAX_K), st.sampled_from(layout.CHANNELS))
def test_size_is_overhead_plus_content_rounded_up_to_bytes(width, height, k, channels):
    size = size_formula(width, height, k, channels)
    b = bits_for_k(k)
    assert size.content_bits == 8 * channels * k + width * height * b
    assert size.total_bytes == 28 + channels * k + math.ceil(width * height * b / 8)
    # the only bits beyond the content are the header, the check and 0..7 padding bits
    assert 0 <= 8 * (size.total_bytes - 28) - size.content_bits <= 7
