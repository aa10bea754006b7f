"""Labels to pixels (kmcodec/lookup.py, the C module `kmcodec._lookup`) against numpy's indexing.

The module is optional at install time, so these tests skip where it was not
built; CI sets KMQ_REQUIRE_EXTENSION=1, which turns a missing module into a
failure. decode must give the same pixels with and without it.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmcodec
from kmcodec import lookup

if os.environ.get("KMQ_REQUIRE_EXTENSION") == "1":  # set by .ci/run
    _lookup = importlib.import_module("kmcodec._lookup")
else:
    _lookup = pytest.importorskip("kmcodec._lookup", reason="the C extension was not built (no compiler at install)")


def test_extension_is_built_and_used():
    assert lookup.available() and lookup._lookup is _lookup


@settings(max_examples=200, deadline=None)
@given(item=st.sampled_from([1, 2, 3, 4, 5, 8]), count=st.integers(0, 700), seed=st.integers(0, 2**32 - 1))
def test_every_pixel_is_its_row_of_the_table(item, count, seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 256, (256, item), dtype=np.uint8)
    labels = rng.integers(0, 256, count, dtype=np.uint8)
    out = np.full(count * item + 8, 77, np.uint8)  # 8 guard bytes: nothing is written past the output
    _lookup.lookup(table.tobytes(), item, labels, out[: count * item])
    assert np.array_equal(out[: count * item].reshape(count, item), table[labels])
    assert (out[count * item :] == 77).all()


def test_large_images_are_split_over_threads(monkeypatch):
    """Pieces of CHUNK labels on THREADS threads, the last one short, join up to table[labels]."""
    monkeypatch.setattr(lookup, "CHUNK", 1000)
    monkeypatch.setattr(lookup, "THREADS", 3)
    rng = np.random.default_rng(5)
    table = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    labels = rng.integers(0, 256, 10_501, dtype=np.uint8)
    assert np.array_equal(lookup.lookup(table, labels).reshape(-1, 3), table[labels])


@pytest.mark.parametrize(
    ("table", "item", "labels", "out", "message"),
    [
        (bytes(256 * 3), 0, b"\0", bytearray(0), "item must be 1..8"),
        (bytes(256 * 9), 9, b"\0", bytearray(9), "item must be 1..8"),
        (bytes(255 * 3), 3, b"\0", bytearray(3), "table must be 256 x 3"),
        (bytes(256 * 3), 3, b"\0\0", bytearray(5), "out must be 2 x 3"),
    ],
)
def test_bad_arguments_raise_value_error(table, item, labels, out, message):
    with pytest.raises(ValueError, match=message):
        _lookup.lookup(table, item, labels, out)


@pytest.mark.parametrize("built", [True, False], ids=["c-lookup", "numpy-take"])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("compress", [False, True])
def test_decode_gives_the_same_pixels_with_and_without_the_module(monkeypatch, built, channels, compress):
    rng = np.random.default_rng(channels)
    palette = rng.integers(1, 256, (200, channels), dtype=np.uint8)
    labels = rng.integers(0, 200, (41, 67)).astype(np.uint8)
    data = kmcodec.pack(palette, labels, compress=compress)
    if not built:
        monkeypatch.setattr(lookup, "_lookup", None)
    assert np.array_equal(kmcodec.decode(data).to_array(), palette[labels])
