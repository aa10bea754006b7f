"""Constants of the .kmq format and its exact size formula (spec/kmq.md).

Every number the spec defines is written once here; the container, the codec,
the CLI and the tests import it from this module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# spec §2 "Header": magic, version, payload coding.
MAGIC = b"\x89KMQ"
VERSION = 1
CODING_RAW = 0  # spec §4: bit-packed labels, MSB first
CODING_CODED = 1  # spec §11: labels predicted coarse to fine and rANS-coded
CODINGS = (CODING_RAW, CODING_CODED)
CODING_NAMES = {CODING_RAW: "raw bit-packed", CODING_CODED: "coded labels"}
# spec §11.1, §11.11 and §11.13: coding 1's label stream starts with its method.
METHOD_NAMES = {
    0: "method 0, neighbour model and rANS",
    1: "method 1, one Zstandard frame",
    2: "method 2, neighbour model and rANS, packed tables",
    3: "method 3, raster scan with history, range coder",
}


def label_method(data: bytes, coding: int, palette_bytes: int) -> int | None:
    """Coding 1's method: the first byte of its label stream; None for coding 0 or no stream."""
    at = HEADER_SIZE + palette_bytes
    return data[at] if coding == CODING_CODED and len(data) > at else None

# spec §2: little-endian, 24 bytes:
# magic[4] version:u8 channels:u8 coding:u8 bits_per_pixel:u8
# width:u32 height:u32 k:u32 reserved:u32
HEADER = struct.Struct("<4sBBBBIIII")
HEADER_SIZE = HEADER.size  # 24
CHECK_SIZE = 4  # spec §5: CRC-32 trailer
MIN_CODED_BYTES = 9 + 13 + 4  # spec §11.1: the smallest coding-1 label stream: fixed fields and one lane
OVERHEAD = HEADER_SIZE + CHECK_SIZE  # 28 bytes, the same for every file

# spec §2 "Valid ranges".
CHANNEL_NAMES = {1: "grey", 3: "RGB", 4: "RGBA"}
CHANNELS = tuple(CHANNEL_NAMES)  # (1, 3, 4)
MIN_K = 1
MAX_K = 65536
MAX_DIMENSION = 2**32 - 1


def channels_text(channels: int) -> str:
    """``3 (RGB)``: a channel count with its spec name, for messages ('?' when not valid)."""
    return f"{channels} ({CHANNEL_NAMES.get(channels, '?')})"


def bits_for_k(k: int) -> int:
    """Bits per label, ceil(log2 k): 0 for k == 1, 16 for k == 65536."""
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"k must be in {MIN_K}..{MAX_K}, got {k}")
    return (k - 1).bit_length()


@dataclass(frozen=True)
class SizeFormula:
    """The theoretical size of a .kmq file: content bits plus constant overhead."""

    width: int
    height: int
    k: int
    channels: int
    bits_per_pixel: int
    palette_bits: int  # 8 * channels * k
    label_bits: int  # width * height * bits_per_pixel
    content_bits: int  # palette_bits + label_bits, the formula
    overhead_bytes: int
    palette_bytes: int
    label_bytes: int  # ceil(label_bits / 8)
    total_bytes: int  # exact size of the coding-0 file; the upper bound of a coding-1 file

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def size_formula(width: int, height: int, k: int, channels: int = 3) -> SizeFormula:
    """Exact size of a .kmq file with these fields (spec §6).

    Content is ``8*channels*k + width*height*bits_per_pixel`` bits; the file is
    ``OVERHEAD + channels*k + ceil(width*height*bits_per_pixel / 8)`` bytes.
    """
    b = bits_for_k(k)
    palette_bits = 8 * channels * k
    label_bits = width * height * b
    label_bytes = (label_bits + 7) // 8
    return SizeFormula(
        width=width,
        height=height,
        k=k,
        channels=channels,
        bits_per_pixel=b,
        palette_bits=palette_bits,
        label_bits=label_bits,
        content_bits=palette_bits + label_bits,
        overhead_bytes=OVERHEAD,
        palette_bytes=channels * k,
        label_bytes=label_bytes,
        total_bytes=OVERHEAD + channels * k + label_bytes,
    )
