"""Coding 1, method 3 (spec §11.15): the label stream as one range-coded raster scan.

    label stream, method 3
    +--------+---------------------------------------------------------------+
    | method | R: range-coded bytes; per pixel in raster order a choice among |
    |  u8 3  | its neighbours' labels and two labels predicted from history   |
    |        | (adaptive counts per context), or an escape rank from the      |
    |        | palette entry nearest the neighbours' mean colour              |
    +--------+---------------------------------------------------------------+

The predictions are what followed the same neighbourhood the last time it was
seen, so repeated shapes (glyphs, icons) are copied as LZ77 would copy them.
Every pixel's counts depend on every pixel before it, so the work is one
sequential loop: the C module `kmcodec._raster` runs it at tens of ns a pixel.
Where the module was not built (no compiler at install time), files are still
read, by `raster_ref`, about 100x slower, and the encoder does not write
method 3.
"""

from __future__ import annotations

import numpy as np

from . import raster_ref
from .errors import KmqError, StreamEndError, StreamStructureError, SymbolRangeError

try:
    from . import _raster
except ImportError:  # built without a compiler: read with raster_ref, never write
    _raster = None

METHOD = 3
MAX_K = 256
# The encoder tries method 3 up to this many pixels. One core decodes it at about
# 30-40 ns a pixel, while method 2 spreads over two: above ~4 MP method 3 would
# make decoding slower than the formats users compare against (bench/README.md).
MAX_PIXELS = 1 << 22


def available() -> bool:
    """Whether this install can write method 3 (the C module was built)."""
    return _raster is not None


def encode_labels(labels: np.ndarray, palette: np.ndarray) -> bytes | None:
    """The method-3 label stream, or None where method 3 is not written (K > 256, too large, no C module)."""
    height, width = labels.shape
    k, channels = palette.shape
    if _raster is None or k > MAX_K or width * height > MAX_PIXELS:
        return None
    flat = np.ascontiguousarray(labels, np.uint8)
    return bytes([METHOD]) + _raster.encode(flat, width, height, np.ascontiguousarray(palette).tobytes(), k, channels)


def decode_labels(stream: memoryview, width: int, height: int, palette: np.ndarray, offset: int) -> np.ndarray:
    """Labels (height x width) of a method-3 stream; `offset` is the stream's position in the file, for messages.

    Raises the `KmqError` subclass of spec §7 for the first failure in decoding order.
    """
    k, channels = palette.shape
    if k > MAX_K:
        raise StreamStructureError(f"bad method at byte {offset}: method 3 needs K <= {MAX_K}, the header says K = {k}")
    body = stream[1:]
    if _raster is None:
        try:
            return raster_ref.decode(body, width, height, palette)
        except raster_ref.Fault as fault:
            raise fault_error(fault.kind, fault.pixel, fault.a, fault.b, width, offset + 1) from None
    labels = np.empty((height, width), np.uint8)
    fault = _raster.decode(body, width, height, np.ascontiguousarray(palette).tobytes(), k, channels, labels)
    if fault is not None:
        raise fault_error(*fault, width, offset + 1)
    return labels


def fault_error(kind: str, pixel: int, a: int, b: int, width: int, start: int) -> KmqError:
    """The spec §7 error for a failure the decoder met at raster index `pixel`; R starts at file byte `start`."""
    at = f"pixel ({pixel % width}, {pixel // width})"
    if kind == "first_byte":
        return StreamStructureError(f"bad range-coded part at byte {start}: it starts with {a:#04x}, must be 0x00")
    if kind == "value":
        return StreamStructureError(f"bad range-coded value at {at}: {a} is not below the table's total {b}")
    if kind == "past_end":
        return StreamEndError(f"stream ends early: {at} needs a byte past the {a} range-coded bytes (from byte {start})")
    if kind == "left_over":
        return StreamEndError(f"stream leaves bytes over: {b - a} of the {b} range-coded bytes are unread after the last pixel")
    if kind == "code":
        return StreamEndError(f"stream ends in the wrong state: the range decoder's code is {a:#x} after the last pixel, must be 0")
    if kind == "rank":
        return SymbolRangeError(f"escape rank {a} at {at} is not below K - m = {b}")
    raise ValueError(f"unknown method-3 failure {kind!r}")
