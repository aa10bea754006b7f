"""Coding 1, method 3 (spec §11.15): a raster scan with adaptive counts and a range coder.

These tests go through kmcodec's public decode, with the C module when it is
built and with the pure-Python reference (`raster_ref`) forced, so both paths
are held to the spec's worked example and to each other. tests/test_raster_c.py
compares the C module with the reference directly.
"""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kmcodec
from kmcodec import container, errors, layout, raster_coding, raster_ref
from test_coding1 import EXAMPLE_PALETTE, bound, example_labels, spec_dump


def method3_example_labels() -> np.ndarray:
    """Spec §11.16, from its description: §11.10's image, 3 - label on the dots x mod 6 = 3, y mod 5 = 2."""
    labels = example_labels()
    y, x = np.mgrid[0:32, 0:32]
    dots = (x % 6 == 3) & (y % 5 == 2)
    labels[dots] = 3 - labels[dots]
    return labels


def coded_file(labels: np.ndarray, palette: np.ndarray, stream: bytes) -> bytes:
    header = container.Header(width=labels.shape[1], height=labels.shape[0], k=palette.shape[0], channels=palette.shape[1], coding=layout.CODING_CODED)
    return container.join(header, palette.tobytes(), stream)


def with_check(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture(params=["c", "python"])
def path(request, monkeypatch):
    """Decode with the C module, then again with it hidden, as on an install without a compiler."""
    if request.param == "c":
        if raster_coding._raster is None:
            pytest.skip("the C module kmcodec._raster is not built")
    else:
        monkeypatch.setattr(raster_coding, "_raster", None)
    return request.param


def test_spec_example_decodes_to_its_description(path):
    data = spec_dump(6)
    assert len(data) == 101 < bound(32, 32, 4, 3) and data[36:38] == b"\x03\x01"
    image = kmcodec.decode(data)
    assert image.labels.tolist() == method3_example_labels().tolist()
    assert (image.palette == EXAMPLE_PALETTE).all()


def test_spec_example_is_what_the_encoders_write():
    data = spec_dump(6)
    assert b"\x03\x01" + raster_ref.encode(method3_example_labels().astype(np.uint8), EXAMPLE_PALETTE) == data[36:-4]
    if raster_coding.available():
        assert raster_coding.encode_labels(method3_example_labels(), EXAMPLE_PALETTE) == data[36:-4]


def test_spec_example_trace():
    """§11.16's steps: code from bytes 38-41, token 0 at pixel (0, 0), the contexts of pixels (1, 0) and (3, 2)."""
    data = spec_dump(6)
    decoder = raster_ref.RangeDecoder(data[38:-4])
    assert (decoder.range, decoder.code) == (0xFFFFFFFF, 0x015442E4)
    assert decoder.symbol([16] * 4, 64) == 0 and decoder.range == 0x3FFFFFF0
    assert decoder.symbol([16] * 2, 32) == 0 and decoder.range == 0x1FFFFFF0
    labels = method3_example_labels().ravel().tolist()
    model = raster_ref.Model(EXAMPLE_PALETTE)
    contexts = {}
    for y in range(3):
        for x in range(32):
            _, t, cands, (long_slot, short_slot) = raster_ref.pixel_context(labels, 32, x, y, model)
            contexts[x, y] = t, cands
            model.long[long_slot] = model.short[short_slot] = labels[y * 32 + x] + 1
    assert contexts[1, 0] == (7096, [0])
    assert contexts[3, 2] == (269375, [0])


def test_spec_context_example():
    """§11.15: pixel (0, 1) of a 2-wide image with row 0 = 5, 7 has t = 9796 and candidates 5, 7."""
    assert raster_ref.pixel_context([5, 7, 0, 0], 2, 0, 1)[1:3] == (9796, [5, 7])


def test_history_slot_hash():
    """§11.15's hash, written out again: FNV-1a over label + 1 (0 when absent), folded to 18 bits."""

    def slot(values):
        h = 2166136261
        for c in values:
            h = ((h ^ c) * 16777619) % 2**32
        return (h ^ (h >> 15)) % 2**18

    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]  # 5 x 4
    # pixel (3, 2): the long list's pixels, in the spec's order, inside the image or not
    long_values = [labels[2 * 5 + 2] + 1, labels[1 * 5 + 3] + 1, labels[1 * 5 + 2] + 1, labels[1 * 5 + 4] + 1, labels[2 * 5 + 1] + 1,
                   labels[0 * 5 + 3] + 1, labels[0 * 5 + 4] + 1, labels[0 * 5 + 2] + 1, labels[2 * 5 + 0] + 1, 0]
    assert raster_ref.slots(labels, 5, 3, 2) == (slot(long_values), slot(long_values[:3]))


def test_tokens_cover_every_rank():
    for r in range(256):
        tok, nbits, extra = raster_ref.token(r)
        assert raster_ref.rank_of(tok, extra) == r and nbits == raster_ref.extra_bits(tok)
    assert [1 + raster_ref.token(k - 1)[0] for k in (1, 16, 256)] == [1, 10, 18]  # Z in §11.15


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(1, 256),
    channels=st.sampled_from([1, 3, 4]),
    width=st.integers(1, 24),
    height=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
    smooth=st.booleans(),
)
def test_round_trip_every_k(k, channels, width, height, seed, smooth):
    """Every K from 1 to 256, every C: the labels come back, through the C module and the reference alike."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    if smooth:
        y, x = np.mgrid[0:height, 0:width]
        labels = ((x // 3 + y // 4) % k).astype(np.uint8)
    else:
        labels = rng.integers(0, k, (height, width), dtype=np.uint8)
    stream = b"\x03\x01" + raster_ref.encode(labels, palette)
    if raster_coding.available():
        assert raster_coding.encode_labels(labels, palette) == stream
    offset = layout.HEADER_SIZE + palette.size
    assert (raster_coding.decode_labels(memoryview(stream), width, height, palette, offset) == labels).all()
    assert (raster_ref.decode(stream[2:], width, height, palette) == labels).all()


def test_damaged_streams_fail_alike_on_both_paths(monkeypatch):
    """Truncations, bit flips and appended bytes: the same class and message from C and from the reference."""
    if not raster_coding.available():
        pytest.skip("the C module kmcodec._raster is not built")
    data = spec_dump(6)
    rng = np.random.default_rng(3)
    damaged = [data[:-4][:n] for n in range(58, 97, 3)] + [data[:-4] + b"\x00"]
    for _ in range(200):
        body = bytearray(data[:-4])
        body[int(rng.integers(38, len(body)))] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(body))
    seen = set()
    for body in damaged:
        outcomes = []
        for module in (raster_coding._raster, None):
            monkeypatch.setattr(raster_coding, "_raster", module)
            try:
                outcomes.append(kmcodec.decode(with_check(body)).labels.tobytes())
            except errors.KmqError as e:
                outcomes.append((type(e).__name__, str(e)))
        assert outcomes[0] == outcomes[1]
        seen.add(outcomes[0][0] if isinstance(outcomes[0], tuple) else "decoded")
    assert {"StreamStructureError", "StreamEndError", "SymbolRangeError", "TruncatedError"} <= seen


def test_method3_needs_k_at_most_256():
    labels = np.zeros((32, 32), np.uint16)
    palette = np.zeros((300, 1), np.uint8)
    assert raster_coding.encode_labels(labels, palette) is None
    with pytest.raises(errors.StreamStructureError, match="method 3 needs K <= 256, the header says K = 300"):
        kmcodec.decode(coded_file(labels, palette, b"\x03\x01" + bytes(40)))


def test_fault_messages_name_the_pixel():
    error = raster_coding.fault_error("rank", 70, 3, 3, 32, 37)
    assert isinstance(error, errors.SymbolRangeError) and str(error) == "escape rank 3 at pixel (6, 2) is not below K - m = 3"
    with pytest.raises(ValueError):
        raster_coding.fault_error("other", 0, 0, 0, 1, 0)


needs_c = pytest.mark.skipif(not raster_coding.available(), reason="the C module kmcodec._raster is not built")


def photo_labels(width: int, height: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth fields plus noise, labelled by the nearest of k colours: labels like a photo's."""
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    field = np.stack([128 + 90 * np.sin(5 * x + a) * np.cos(4 * y + a) for a in (0.3, 1.9, 4.1)], -1)
    pixels = np.clip(field + rng.normal(0, 10, field.shape), 0, 255)
    palette = np.round(pixels.reshape(-1, 3)[rng.choice(width * height, k, replace=False)]).astype(np.uint8)
    labels = ((pixels[:, :, None, :] - palette.astype(float)) ** 2).sum(-1).argmin(-1)
    return labels, palette


@needs_c
def test_pack_writes_method3_where_it_is_smallest():
    labels, palette = photo_labels(96, 80, 16)
    data = kmcodec.pack(palette, labels, compress=True)
    assert data[24 + palette.size] == raster_coding.METHOD
    from kmcodec import coding1

    assert len(data) - 28 - palette.size < len(coding1.encode_labels(labels, palette))
    assert (kmcodec.decode(data).labels == labels).all()


def test_stripe_counts_and_rows():
    """Spec §9 and §11.15: one stripe up to 2^22 pixels, then 2 * ceil(N / 2^23); rows floor(i*H/S), none empty."""
    assert raster_coding.stripe_count(2048, 2048) == 1
    assert raster_coding.stripe_count(4000, 3000) == 4 and raster_coding.stripe_count(2049, 2048) == 2
    assert raster_coding.stripe_count(10**7, 3) == 3  # never more than H
    assert raster_coding.stripe_rows(40, 3) == [(0, 13), (13, 26), (26, 40)]
    assert all(y1 > y0 for y0, y1 in raster_coding.stripe_rows(5, 5))


def test_striped_streams_decode_on_both_paths(path, monkeypatch):
    """Several stripes, each coded alone (rows above a stripe absent): the labels come back, on threads or not."""
    labels, palette = photo_labels(96, 80, 16)
    stripes = 3
    rows = raster_coding.stripe_rows(80, stripes)
    parts = [raster_ref.encode(labels[y0:y1].astype(np.uint8), palette) for y0, y1 in rows]
    stream = bytes([3, stripes]) + b"".join(len(p).to_bytes(4, "little") for p in parts[:-1]) + b"".join(parts)
    assert len(stream) != 2 + len(raster_ref.encode(labels.astype(np.uint8), palette))  # not one stripe in disguise
    image = kmcodec.decode(coded_file(labels, palette, stream))
    assert (image.labels == labels).all()
    if raster_coding.available():
        monkeypatch.setattr(raster_coding, "SINGLE_MAX", 96 * 80 - 1)
        monkeypatch.setattr(raster_coding, "STRIPE_PIXELS", 96 * 80 // 3 + 1)  # 2 * ceil(N / that) = 6 stripes
        written = raster_coding.encode_labels(labels, palette)
        assert written[1] == 6 and (kmcodec.decode(coded_file(labels, palette, written)).labels == labels).all()


def test_a_failure_in_a_later_stripe_names_that_stripe(path):
    """Stripe 1 of 2 breaks (its R starts with 1): the error gives stripe 1's first byte, after stripe 0 decoded."""
    labels, palette = photo_labels(96, 80, 16)
    parts = [raster_ref.encode(labels[y0:y1].astype(np.uint8), palette) for y0, y1 in raster_coding.stripe_rows(80, 2)]
    stream = bytes([3, 2]) + len(parts[0]).to_bytes(4, "little") + parts[0] + b"\x01" + parts[1][1:]
    data = coded_file(labels, palette, stream)
    second = 24 + palette.size + 6 + len(parts[0])
    with pytest.raises(errors.StreamStructureError, match=f"bad range-coded part at byte {second}: it starts with 0x01"):
        kmcodec.decode(data)
    damaged = bytes([3, 2]) + len(parts[0]).to_bytes(4, "little") + parts[0][:-1] + bytes([(parts[0][-1] + 1) & 0xFF]) + b"\x01" + parts[1][1:]
    # stripe 0's last byte + 1, and stripe 1 broken too: stripe 0's failure comes first
    with pytest.raises(errors.StreamEndError, match=f"code is 0x[0-9a-f]+ after the last pixel of the stripe from byte {24 + palette.size + 6}"):
        kmcodec.decode(coded_file(labels, palette, damaged))
    cut = bytes([3, 2]) + len(parts[0]).to_bytes(4, "little") + parts[0] + parts[1][:-1]  # stripe 1 (rows 40-79) ends early
    with pytest.raises(errors.StreamEndError, match="stream ends early") as caught:
        kmcodec.decode(coded_file(labels, palette, cut))
    assert 40 <= int(re.search(r"pixel \(\d+, (\d+)\)", str(caught.value)).group(1)) < 80  # rows of the whole image


def test_pack_without_the_c_module_writes_no_method3(monkeypatch):
    monkeypatch.setattr(raster_coding, "_raster", None)
    labels, palette = photo_labels(96, 80, 16)
    assert raster_coding.encode_labels(labels, palette) is None
    assert kmcodec.pack(palette, labels, compress=True)[24 + palette.size] == 2
    with pytest.raises(errors.StreamLengthError, match="stripe lengths too long"):
        kmcodec.decode(coded_file(labels, palette, bytes([3, 2]) + (10**6).to_bytes(4, "little") + bytes(40)))
