"""Spec §2, §5, §7: header fields, exact length, CRC-32, and the order of the rules."""

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import kmcodec
from kmcodec import container, layout
from kmcodec.errors import (
    BadMagicError,
    ChecksumError,
    HeaderFieldError,
    PixelLimitError,
    TrailingDataError,
    TruncatedError,
    UnsupportedCodingError,
    UnsupportedVersionError,
)

SPEC = Path(__file__).resolve().parents[1] / "spec" / "kmq.md"
EXAMPLE_LABELS = np.array([[0, 1, 2], [2, 1, 0]])


def spec_hex_dumps():
    """The hex dumps of spec §8, in order, as bytes."""
    dumps = re.findall(r"```\n(0{8}.*?)```", SPEC.read_text(), re.S)
    return [bytes.fromhex("".join(line[10:58] for line in dump.splitlines())) for dump in dumps]


@pytest.mark.parametrize(
    ("index", "palette", "labels"),
    [
        (0, [[255, 0, 0], [0, 128, 0], [0, 0, 255]], EXAMPLE_LABELS),
        (1, [[0], [128], [255]], EXAMPLE_LABELS),
        (2, [[0, 0, 0, 0], [255, 128, 0, 255]], [[0, 1, 1], [1, 1, 0]]),
    ],
)
def test_spec_worked_examples_are_the_bytes_we_write(index, palette, labels):
    data = kmcodec.pack(np.array(palette, np.uint8), np.array(labels))
    assert data == spec_hex_dumps()[index]
    assert kmcodec.decode(data).labels.tolist() == np.array(labels).tolist()


def rgb_example() -> bytes:
    return kmcodec.pack(np.array([[255, 0, 0], [0, 128, 0], [0, 0, 255]], np.uint8), EXAMPLE_LABELS)


def with_header(data: bytes, **fields) -> bytes:
    """Rewrite header fields and fix the CRC, so only the rewritten field is wrong."""
    names = ["magic", "version", "channels", "coding", "bits_per_pixel", "width", "height", "k", "reserved"]
    values = dict(zip(names, layout.HEADER.unpack_from(data)))
    values.update(fields)
    body = layout.HEADER.pack(*(values[n] for n in names)) + data[layout.HEADER_SIZE : -4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"magic": b"\x89PNG"}, BadMagicError, "not a .kmq file"),
        ({"version": 2}, UnsupportedVersionError, "header says 2"),
        ({"channels": 2}, HeaderFieldError, "bad channels at byte 5: 2"),
        ({"coding": 2}, UnsupportedCodingError, "coding at byte 6: 2"),
        ({"width": 0}, HeaderFieldError, "bad width at byte 8: 0"),
        ({"height": 0}, HeaderFieldError, "bad height at byte 12: 0"),
        ({"k": 0}, HeaderFieldError, "bad k at byte 16: 0"),
        ({"k": 65537}, HeaderFieldError, "bad k at byte 16: 65537"),
        ({"bits_per_pixel": 3}, HeaderFieldError, "bits_per_pixel at byte 7: 3, k=3 needs ceil\\(log2 k\\) = 2"),
        ({"reserved": 1}, HeaderFieldError, "reserved field at byte 20"),
    ],
)
def test_rejects_each_bad_header_field(fields, error, message):
    with pytest.raises(error, match=message):
        kmcodec.decode(with_header(rgb_example(), **fields))


def test_rejects_short_header_as_truncated():
    with pytest.raises(TruncatedError, match="file has 10 bytes, the header alone is 24"):
        kmcodec.decode(rgb_example()[:10])


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"\x89KMX"])
def test_rejects_bad_magic(data):
    with pytest.raises(BadMagicError):
        kmcodec.decode(data)


def test_rejects_truncation_with_both_lengths_in_the_message():
    with pytest.raises(TruncatedError, match="header says 39 bytes, file has 38"):
        kmcodec.decode(rgb_example()[:-1])


def test_rejects_trailing_bytes():
    with pytest.raises(TrailingDataError, match="header says 39 bytes, file has 41"):
        kmcodec.decode(rgb_example() + b"\0\0")


def test_rejects_bad_check():
    data = bytearray(rgb_example())
    data[30] ^= 0x10
    with pytest.raises(ChecksumError, match="bad check at byte 35"):
        kmcodec.decode(bytes(data))


def test_pixel_limit_trips_before_the_length_check():
    huge = with_header(rgb_example(), width=2**32 - 1, height=2**32 - 1)
    with pytest.raises(PixelLimitError, match="4294967295x4294967295"):
        kmcodec.decode(huge)


def test_pixel_limit_follows_pillow_and_can_be_raised(monkeypatch):
    from PIL import Image

    data = rgb_example()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)
    with pytest.raises(PixelLimitError, match="limit 5"):
        kmcodec.decode(data)
    assert kmcodec.decode(data, max_pixels=6).width == 3
    assert kmcodec.decode(data, max_pixels=None).width == 3


def test_length_is_checked_against_the_header_before_allocation():
    import tracemalloc

    claims_a_lot = with_header(rgb_example(), width=60000, height=60000)  # 3.6 Gpx at 2 bits
    tracemalloc.start()
    with pytest.raises(TruncatedError, match="header says 900000037 bytes, file has 39"):
        kmcodec.decode(claims_a_lot, max_pixels=None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000


def test_header_round_trips_through_pack_and_parse():
    header = container.Header(width=7, height=5, k=300, channels=4)
    assert header.bits_per_pixel == 9
    assert container.parse_header(header.pack() + b"rest") == header
