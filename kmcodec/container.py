"""The .kmq container: header fields <-> bytes, the length rule and the CRC-32 check.

Knows nothing about pixels: it splits a file into header, palette bytes and label
bytes (and joins them back), enforcing every header rule of spec/kmq.md before
anything proportional to the image is allocated.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from . import layout
from ._mapped import mapping_of, release_range
from .errors import (
    BadMagicError,
    BoundError,
    ChecksumError,
    HeaderFieldError,
    PixelLimitError,
    TrailingDataError,
    TruncatedError,
    UnsupportedCodingError,
    UnsupportedVersionError,
)


CRC_CHUNK = 1 << 24  # bytes per CRC-32 step


@dataclass(frozen=True)
class Header:
    """The fields of a .kmq header (spec §2), validated on construction by `check`."""

    width: int
    height: int
    k: int
    channels: int = 3
    bits_per_pixel: int | None = None  # derived from k when omitted
    coding: int = layout.CODING_RAW
    version: int = layout.VERSION
    reserved: int = 0

    def __post_init__(self) -> None:
        if self.bits_per_pixel is None and layout.MIN_K <= self.k <= layout.MAX_K:
            object.__setattr__(self, "bits_per_pixel", layout.bits_for_k(self.k))

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def size(self) -> layout.SizeFormula:
        return layout.size_formula(self.width, self.height, self.k, self.channels)

    def check(self) -> None:
        """Raise the specific `FormatError` for the first field out of range (spec §2 order)."""
        if self.version != layout.VERSION:
            raise UnsupportedVersionError(
                f"unsupported version: header says {self.version}, this decoder reads {layout.VERSION}"
            )
        if self.channels not in layout.CHANNELS:
            raise HeaderFieldError(
                f"bad channels at byte 5: {self.channels}, allowed {', '.join(map(str, layout.CHANNELS))}"
            )
        if self.coding not in layout.CODINGS:
            raise UnsupportedCodingError(
                f"unsupported coding at byte 6: {self.coding}, version 1 allows "
                + " or ".join(f"{c} ({layout.CODING_NAMES[c]})" for c in layout.CODINGS)
            )
        if not 1 <= self.width <= layout.MAX_DIMENSION:
            raise HeaderFieldError(f"bad width at byte 8: {self.width}, allowed 1..{layout.MAX_DIMENSION}")
        if not 1 <= self.height <= layout.MAX_DIMENSION:
            raise HeaderFieldError(f"bad height at byte 12: {self.height}, allowed 1..{layout.MAX_DIMENSION}")
        if not layout.MIN_K <= self.k <= layout.MAX_K:
            raise HeaderFieldError(f"bad k at byte 16: {self.k}, allowed {layout.MIN_K}..{layout.MAX_K}")
        expected_bits = layout.bits_for_k(self.k)
        if self.bits_per_pixel != expected_bits:
            raise HeaderFieldError(
                f"bad bits_per_pixel at byte 7: {self.bits_per_pixel}, k={self.k} needs ceil(log2 k) = {expected_bits}"
            )
        if self.reserved != 0:
            raise HeaderFieldError(f"bad reserved field at byte 20: {self.reserved:#x}, must be 0")

    def pack(self) -> bytes:
        self.check()
        return layout.HEADER.pack(
            layout.MAGIC,
            self.version,
            self.channels,
            self.coding,
            self.bits_per_pixel,
            self.width,
            self.height,
            self.k,
            self.reserved,
        )


def default_max_pixels() -> int | None:
    """The decoder's pixel limit when the caller gives none: Pillow's, read at call time."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def parse_header(data: bytes | memoryview) -> Header:
    """Read and validate the 24-byte header at the start of `data`."""
    prefix = bytes(data[: len(layout.MAGIC)])
    if prefix != layout.MAGIC[: len(prefix)] or not prefix:
        raise BadMagicError(f"not a .kmq file: starts with {prefix.hex() or 'nothing'}, expected {layout.MAGIC.hex()}")
    if len(data) < layout.HEADER_SIZE:
        raise TruncatedError(f"truncated: file has {len(data)} bytes, the header alone is {layout.HEADER_SIZE}")
    _, version, channels, coding, bits, width, height, k, reserved = layout.HEADER.unpack_from(data, 0)
    header = Header(
        width=width,
        height=height,
        k=k,
        channels=channels,
        bits_per_pixel=bits,
        coding=coding,
        version=version,
        reserved=reserved,
    )
    header.check()
    return header


def check_pixel_limit(header: Header, max_pixels: int | None) -> None:
    if max_pixels is not None and header.pixels > max_pixels:
        raise PixelLimitError(
            f"too many pixels: {header.width}x{header.height} = {header.pixels}, limit {max_pixels}"
            " (raise it with max_pixels / --max-pixels)"
        )


def check_values(data: bytes | memoryview) -> tuple[int, int]:
    """(stored, computed) CRC-32 of a file of the right length (spec §5)."""
    view = memoryview(data).cast("B")
    body_end = len(view) - layout.CHECK_SIZE
    crc = 0
    mapping = mapping_of(data)
    # In chunks, releasing a mapped file's pages as it goes (kmcodec.read(mmap=True)).
    for start in range(0, body_end, CRC_CHUNK):
        crc = zlib.crc32(view[start : min(start + CRC_CHUNK, body_end)], crc)
        release_range(mapping, start, start + CRC_CHUNK)
    return int.from_bytes(view[body_end:], "little"), crc


@dataclass(frozen=True)
class Parts:
    """A validated file split into its sections (views into the caller's bytes, no copies)."""

    header: Header
    palette: memoryview
    labels: memoryview


def split(data: bytes | bytearray | memoryview, *, max_pixels: int | None) -> Parts:
    """Validate header, pixel limit, length and CRC-32, then return the sections.

    `max_pixels` None means no limit. Nothing proportional to width x height is
    allocated before the length check. Coding 0 has one exact length (spec §6);
    a coding-1 file may be shorter, down to the smallest label stream, but never
    longer (the formula is its bound).
    """
    view = memoryview(data).cast("B")
    header = parse_header(view)
    check_pixel_limit(header, max_pixels)
    size = header.size
    check_length(header, len(view))
    body_end = len(view) - layout.CHECK_SIZE
    stored, actual = check_values(view)
    if stored != actual:
        raise ChecksumError(f"bad check at byte {body_end}: stored CRC-32 {stored:08x}, computed {actual:08x}")
    palette_end = layout.HEADER_SIZE + size.palette_bytes
    return Parts(header=header, palette=view[layout.HEADER_SIZE:palette_end], labels=view[palette_end:body_end])


def length_range(header: Header) -> tuple[int, int]:
    """(shortest, longest) valid file length for this header (spec §6, rule 6)."""
    size = header.size
    if header.coding == layout.CODING_RAW:
        return size.total_bytes, size.total_bytes
    shortest = layout.OVERHEAD + size.palette_bytes + layout.MIN_CODED_BYTES
    return shortest, size.total_bytes


def check_length(header: Header, length: int) -> None:
    shortest, longest = length_range(header)
    if length < shortest:
        need = f"{shortest}" if shortest == longest else f"at least {shortest}"
        raise TruncatedError(f"truncated: header says {need} bytes, file has {length}")
    if length > longest:
        if header.coding == layout.CODING_RAW:
            raise TrailingDataError(
                f"trailing data: header says {longest} bytes, file has {length} ({length - longest} extra)"
            )
        raise BoundError(
            f"over the formula bound: a coding-1 file may have at most {longest} bytes (the coding-0 size), file has {length}"
        )


def join(header: Header, palette: bytes, labels: bytes) -> bytes:
    """Assemble a file: header, palette, label bytes, then the CRC-32 of all of them."""
    size = header.size
    shortest, longest = length_range(header)
    length = layout.OVERHEAD + len(palette) + len(labels)
    if len(palette) != size.palette_bytes or not shortest <= length <= longest:
        raise ValueError(
            f"section sizes {len(palette)}+{len(labels)} do not fit the header's {size.palette_bytes}+{size.label_bytes}"
        )
    body = b"".join((header.pack(), palette, labels))
    return body + zlib.crc32(body).to_bytes(layout.CHECK_SIZE, "little")
