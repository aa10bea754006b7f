"""The C module `kmcodec._raster` (coding 1, method 3, spec §11.15) against the plain-Python `raster_ref`.

The C module must write the same bytes as the reference, decode the same labels,
and report the same first failure (kind, pixel, a, b) on every damaged stream.
It is optional at install time, so these tests skip where it was not built; CI
builds it and sets KMQ_REQUIRE_EXTENSION=1, which turns a missing module into a
failure.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmcodec import raster_coding, raster_ref

REQUIRED = os.environ.get("KMQ_REQUIRE_EXTENSION") == "1"  # set by .ci/run
if REQUIRED:
    _raster = importlib.import_module("kmcodec._raster")  # no skip: CI must have built it
else:
    _raster = pytest.importorskip("kmcodec._raster", reason="the C extension was not built (no compiler at install)")

SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def c_encode(labels: np.ndarray, palette: np.ndarray) -> bytes:
    (height, width), (k, channels) = labels.shape, palette.shape
    return _raster.encode(np.ascontiguousarray(labels, np.uint8), width, height, palette.tobytes(), k, channels)


def c_decode(data: bytes, width: int, height: int, palette: np.ndarray) -> tuple[np.ndarray, tuple | None]:
    """Labels (height x width) and the failure tuple, or None when the stream is valid."""
    labels = np.zeros((height, width), np.uint8)
    fault = _raster.decode(data, width, height, palette.tobytes(), *palette.shape, labels)
    return labels, fault


def ref_decode(data: bytes, width: int, height: int, palette: np.ndarray) -> tuple[np.ndarray | None, tuple | None]:
    try:
        return raster_ref.decode(data, width, height, palette), None
    except raster_ref.Fault as fault:
        return None, (fault.kind, fault.pixel, fault.a, fault.b)


def random_palette(rng: np.random.Generator, k: int, channels: int, kind: str) -> np.ndarray:
    """Random colours; or a few values per channel, so that entries tie in distance and repeat."""
    if kind == "few values":
        return (rng.integers(0, 3, (k, channels)) * 127).astype(np.uint8)
    return rng.integers(0, 256, (k, channels), dtype=np.uint8)


def random_labels(rng: np.random.Generator, k: int, height: int, width: int, kind: str) -> np.ndarray:
    """Noise over all of K; noise over a few labels; or flat rectangles with a few noisy pixels."""
    if kind == "noise":
        return rng.integers(0, k, (height, width), dtype=np.uint8)
    if kind == "few labels":
        return rng.choice(rng.integers(0, k, 3), (height, width)).astype(np.uint8)
    labels = np.full((height, width), rng.integers(0, k), np.uint8)
    for _ in range(rng.integers(1, 5)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        labels[y : y + rng.integers(1, height + 1), x : x + rng.integers(1, width + 1)] = rng.integers(0, k)
    spots = rng.random((height, width)) < 0.05
    labels[spots] = rng.integers(0, k, int(spots.sum()))
    return labels


@st.composite
def label_maps(draw, max_side: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(palette, labels): K 1-256, C 1, 3 or 4, sides 1-max_side (1 x N, N x 1 and 1 x 1 included)."""
    k = draw(st.one_of(st.integers(1, 256), st.sampled_from([1, 2, 16, 255, 256])))
    channels = draw(st.sampled_from([1, 3, 4]))
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    palette = random_palette(rng, k, channels, draw(st.sampled_from(["random", "few values"])))
    labels = random_labels(rng, k, height, width, draw(st.sampled_from(["noise", "few labels", "flat"])))
    return palette, labels


def damage(data: bytes, rng: np.random.Generator, how: str) -> bytes:
    out = bytearray(data)
    if how == "truncate":
        return bytes(out[: rng.integers(0, len(out))])
    if how == "flip":
        at = int(rng.integers(0, len(out)))
        out[at] ^= 1 << int(rng.integers(0, 8))
        return bytes(out)
    if how == "append":
        return bytes(out) + rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
    noise = bytearray(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes())
    if noise and rng.random() < 0.8:
        noise[0] = 0  # past the first-byte check, into the pixels
    return bytes(noise)


# ---- the module is there, and takes only what the spec allows ---------------------


def test_extension_is_built_and_used():
    """CI requires the compiled module (KMQ_REQUIRE_EXTENSION=1); kmcodec then writes method 3 with it."""
    if REQUIRED:
        assert raster_coding.available()
    assert _raster.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert raster_coding._raster is _raster


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"k": 0}, ValueError),
        ({"k": 257}, ValueError),
        ({"channels": 2}, ValueError),
        ({"width": 0}, ValueError),
        ({"height": -1}, ValueError),
        ({"labels": np.zeros(5, np.uint8)}, ValueError),
        ({"labels": np.zeros(6, np.int32)}, TypeError),
        ({"labels": np.zeros((3, 4), np.uint8)[:, ::2]}, ValueError),
        ({"palette": bytes(8)}, ValueError),
        ({"labels": [0] * 6}, TypeError),
    ],
)
def test_encode_rejects_arguments_the_spec_does_not_allow(change, error):
    args = {"labels": np.zeros(6, np.uint8), "width": 3, "height": 2, "palette": bytes(6), "k": 2, "channels": 3}
    args.update(change)
    with pytest.raises(error):
        _raster.encode(**args)


def test_encode_rejects_label_not_below_k():
    labels = np.array([0, 1, 2, 3, 4, 1], np.uint8)
    with pytest.raises(ValueError, match="label 4 at pixel 4 is not below k = 4"):
        _raster.encode(labels, 3, 2, bytes(4), 4, 1)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"k": 300}, ValueError),
        ({"channels": 5}, ValueError),
        ({"out": bytes(6)}, TypeError),
        ({"out": bytearray(7)}, ValueError),
        ({"out": np.zeros(6, np.uint16)}, TypeError),
        ({"data": "text"}, TypeError),
    ],
)
def test_decode_rejects_arguments_the_spec_does_not_allow(change, error):
    args = {"data": bytes(5), "width": 3, "height": 2, "palette": bytes(2), "k": 2, "channels": 1, "out": bytearray(6)}
    args.update(change)
    with pytest.raises(error):
        _raster.decode(**args)


# ---- the same bytes and labels as the reference ---------------------------------------


@SLOW
@given(label_maps())
def test_round_trip(case):
    palette, labels = case
    data = c_encode(labels, palette)
    assert data[0] == 0  # spec §11.15: the held-back byte 0 opens R
    back, fault = c_decode(data, labels.shape[1], labels.shape[0], palette)
    assert fault is None and np.array_equal(back, labels)


@SLOW
@given(label_maps())
def test_encode_writes_the_bytes_of_the_reference(case):
    palette, labels = case
    assert c_encode(labels, palette) == raster_ref.encode(labels, palette)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 40), (40, 1), (2, 2), (3, 1), (1, 3)])
@pytest.mark.parametrize("k", [1, 2, 256])
def test_thin_images_match_the_reference(height, width, k):
    rng = np.random.default_rng(height * 1000 + width + k)
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    labels = rng.integers(0, k, (height, width), dtype=np.uint8)
    data = c_encode(labels, palette)
    assert data == raster_ref.encode(labels, palette)
    back, fault = c_decode(data, width, height, palette)
    assert fault is None and np.array_equal(back, labels)


@pytest.mark.parametrize(("k", "channels", "kind"), [(16, 3, "flat"), (2, 1, "flat"), (256, 4, "noise"), (256, 3, "few labels"), (40, 1, "noise")])
def test_tables_past_their_halving_match_the_reference(k, channels, kind):
    """64 x 64 pixels: a context or an escape table is coded often enough for its total to pass 8192."""
    rng = np.random.default_rng(k + channels)
    palette = random_palette(rng, k, channels, "random")
    labels = random_labels(rng, k, 64, 64, kind)
    data = c_encode(labels, palette)
    assert data == raster_ref.encode(labels, palette)
    back, fault = c_decode(data, 64, 64, palette)
    assert fault is None and np.array_equal(back, labels)


@pytest.mark.parametrize(("k", "channels"), [(2, 1), (7, 3), (256, 3), (256, 4)])
def test_repeated_glyphs_match_the_reference(k, channels):
    """Glyphs stamped again and again: the history tables predict them, so P1 and P2 land
    on candidates or are appended, and m reaches 6."""
    rng = np.random.default_rng(k * 10 + channels)
    palette = random_palette(rng, k, channels, "random")
    glyphs = [rng.integers(0, k, (5, 4), dtype=np.uint8) for _ in range(3)]
    labels = np.full((40, 60), rng.integers(0, k), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 36), rng.integers(0, 57)
        labels[y : y + 5, x : x + 4] = glyphs[rng.integers(0, 3)][: 40 - y, : 60 - x]
    data = c_encode(labels, palette)
    assert data == raster_ref.encode(labels, palette)
    back, fault = c_decode(data, 60, 40, palette)
    assert fault is None and np.array_equal(back, labels)


def test_history_holds_label_255():
    """K = 256 stripes of labels 255, 254 and 0: the history tables must tell label 255 from an empty entry."""
    palette = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    labels = np.array([255, 255, 0, 254, 255, 0, 0, 255], np.uint8)[(np.arange(30)[:, None] * 3 + np.arange(24)) % 8]
    data = c_encode(labels, palette)
    assert data == raster_ref.encode(labels, palette)
    back, fault = c_decode(data, 24, 30, palette)
    assert fault is None and np.array_equal(back, labels)


def test_smooth_photo_like_image_matches_the_reference():
    """Gradients quantised to 256 entries: most pixels escape from a mean of two or more colours."""
    y, x = np.mgrid[0:48, 0:48]
    rgb = np.stack([x * 5, y * 5, (x + y) * 2 + 7 * np.sin(x * y / 30)], axis=-1).clip(0, 255).astype(np.uint8)
    palette = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
    labels = ((rgb[..., None, :].astype(int) - palette.astype(int)) ** 2).sum(-1).argmin(-1).astype(np.uint8)
    assert c_encode(labels, palette) == raster_ref.encode(labels, palette)


# ---- the same first failure as the reference ----------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps(max_side=8), st.sampled_from(["truncate", "flip", "append", "random"]), st.integers(0, 2**32 - 1))
def test_damaged_streams_fail_as_the_reference_does(case, how, seed):
    palette, labels = case
    height, width = labels.shape
    data = damage(c_encode(labels, palette), np.random.default_rng(seed), how)
    want_labels, want_fault = ref_decode(data, width, height, palette)
    got_labels, got_fault = c_decode(data, width, height, palette)
    assert got_fault == want_fault
    if want_fault is None:
        assert np.array_equal(got_labels, want_labels)


def test_empty_stream_needs_a_byte_at_the_first_pixel():
    assert c_decode(b"", 2, 2, np.zeros((2, 1), np.uint8))[1] == ("past_end", 0, 0, 0)


def test_rejects_first_byte_not_zero():
    assert c_decode(b"\x07" + bytes(8), 2, 2, np.zeros((2, 1), np.uint8))[1] == ("first_byte", 0, 7, 0)


def test_code_needs_bytes_1_to_4():
    assert c_decode(b"\x00\x01\x02", 2, 2, np.zeros((2, 1), np.uint8))[1] == ("past_end", 0, 3, 0)


@pytest.mark.parametrize("code", [0xFFFFFFA0, 0xFFFFFFFF])
def test_rejects_value_not_below_total(code):
    """Pixel (0, 0), K = 16: escape table 0 has T = 16 Z = 160 and q = floor((2^32 - 1) / 160) = 26843545;
    code = q T = ffffffa0 is the smallest with v = T."""
    palette = np.zeros((16, 3), np.uint8)
    data = b"\x00" + code.to_bytes(4, "big")
    assert c_decode(data, 3, 3, palette)[1] == ("value", 0, 160, 160) == ref_decode(data, 3, 3, palette)[1]
    below = b"\x00" + (0xFFFFFFA0 - 1).to_bytes(4, "big")  # v = 159: decodes on, to another failure
    assert c_decode(below, 3, 3, palette)[1][:2] != ("value", 0)


def test_rejects_bytes_left_after_the_last_pixel():
    palette = np.array([[0], [255]], np.uint8)
    data = c_encode(np.array([[0, 1], [1, 0]], np.uint8), palette)
    assert c_decode(data + b"\x00", 2, 2, palette)[1] == ("left_over", 4, len(data), len(data) + 1)


def test_truncated_stream_runs_past_the_end():
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    data = c_encode(rng.integers(0, 256, (6, 6), dtype=np.uint8), palette)
    _, fault = c_decode(data[:-1], 6, 6, palette)
    assert fault[0] == "past_end" and fault[2:] == (len(data) - 1, 0)
    assert fault == ref_decode(data[:-1], 6, 6, palette)[1]


def find_fault(kind: str, palette: np.ndarray, side: int) -> bytes:
    """A damaged stream on which the reference reports `kind` (the first of a fixed sequence of tries)."""
    rng = np.random.default_rng(11)
    for _ in range(5000):
        labels = rng.integers(0, palette.shape[0], (side, side), dtype=np.uint8)
        data = damage(c_encode(labels, palette), rng, str(rng.choice(["flip", "random"])))
        fault = ref_decode(data, side, side, palette)[1]
        if fault is not None and fault[0] == kind:
            return data
    raise AssertionError(f"no stream with a {kind} failure found")


@pytest.mark.parametrize("kind", ["code", "rank", "value"])
def test_each_failure_inside_the_stream_is_the_reference_one(kind):
    palette = np.random.default_rng(5).integers(0, 256, (5, 3), dtype=np.uint8)
    data = find_fault(kind, palette, 3)
    got = c_decode(data, 3, 3, palette)[1]
    assert got[0] == kind and got == ref_decode(data, 3, 3, palette)[1]


# ---- the pixel loops run without the GIL, on state of their own ----------------------


def test_threads_decode_at_once_and_get_their_own_labels():
    rng = np.random.default_rng(9)
    cases = []
    for k in (3, 16, 256):
        palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
        labels = random_labels(rng, k, 200, 150, "flat")
        cases.append((palette, labels, c_encode(labels, palette)))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: c_decode(case[2], 150, 200, case[0]), cases * 4))
    for (palette, labels, _), (back, fault) in zip(cases * 4, results):
        assert fault is None and np.array_equal(back, labels)
