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

from . import raster_ref, threads
from .errors import KmqError, StreamEndError, StreamLengthError, StreamStructureError, SymbolRangeError

try:
    from . import _raster
except ImportError:  # built without a compiler: read with raster_ref, never write
    _raster = None

METHOD = 3
MAX_K = 256
# One stripe up to this many pixels; above it S = 2 * ceil(N / STRIPE_PIXELS) stripes,
# which two or more cores decode at once (spec §9): one core runs this loop at
# 20-50 ns a pixel, so a 12 MP image on one core would decode slower than method 2.
SINGLE_MAX = 1 << 22
STRIPE_PIXELS = 1 << 23
MAX_STRIPES = 255


def available() -> bool:
    """Whether this install can write method 3 (the C module was built)."""
    return _raster is not None


def stripe_count(width: int, height: int) -> int:
    """How many stripes the encoder cuts an image into (spec §9)."""
    n = width * height
    return 1 if n <= SINGLE_MAX else min(MAX_STRIPES, height, 2 * -(-n // STRIPE_PIXELS))


def stripe_rows(height: int, stripes: int) -> list[tuple[int, int]]:
    """Rows [y0, y1) of each stripe (spec §11.15): floor(i*H/S) up to floor((i+1)*H/S); none is empty."""
    return [(i * height // stripes, (i + 1) * height // stripes) for i in range(stripes)]


def each(work, items: list) -> list:
    """work(item) for every item, on threads when there are several (the C module releases the GIL)."""
    return threads.each(work, items, threads.WORKERS if _raster is not None else 1)


def encode_labels(labels: np.ndarray, palette: np.ndarray) -> bytes | None:
    """The method-3 label stream, or None where method 3 is not written (K > 256, no C module)."""
    height, width = labels.shape
    k, channels = palette.shape
    if _raster is None or k > MAX_K:
        return None
    flat = np.ascontiguousarray(labels, np.uint8)
    table = np.ascontiguousarray(palette).tobytes()
    rows = stripe_rows(height, stripe_count(width, height))
    parts = each(lambda r: _raster.encode(flat[r[0] : r[1]], width, r[1] - r[0], table, k, channels), rows)
    lengths = b"".join(len(part).to_bytes(4, "little") for part in parts[:-1])
    return bytes([METHOD, len(parts)]) + lengths + b"".join(parts)


def decode_labels(stream: memoryview, width: int, height: int, palette: np.ndarray, offset: int) -> np.ndarray:
    """Labels (height x width) of a method-3 stream; `offset` is the stream's position in the file, for messages.

    Raises the `KmqError` subclass of spec §7 for the first failure in decoding
    order: the stripe count and lengths, then the stripes in order (decoded at
    once on several threads where the C module is built).
    """
    k, channels = palette.shape
    if k > MAX_K:
        raise StreamStructureError(f"bad method at byte {offset}: method 3 needs K <= {MAX_K}, the header says K = {k}")
    if len(stream) < 2:
        raise StreamEndError(f"stream ends early at byte {offset + 1}: no stripe count")
    stripes = stream[1]
    if not 1 <= stripes <= height:
        raise StreamStructureError(f"bad stripe count at byte {offset + 1}: {stripes}, must be 1..{min(MAX_STRIPES, height)} (at most H)")
    start = 2 + 4 * (stripes - 1)
    if start > len(stream):
        raise StreamLengthError(
            f"stream too short for its stripe lengths at byte {offset + 2}: {stripes - 1} lengths need {start - 2} bytes, {len(stream) - 2} are left"
        )
    ends = np.cumsum(np.frombuffer(stream, "<u4", stripes - 1, 2), dtype=np.int64) + start
    if stripes > 1 and ends[-1] > len(stream):
        raise StreamLengthError(
            f"stripe lengths too long at byte {offset + 2}: they add up to {int(ends[-1]) - start} bytes, {len(stream) - start} follow them"
        )
    bounds = [start] + [int(e) for e in ends] + [len(stream)]
    rows = stripe_rows(height, stripes)
    labels = np.empty((height, width), np.uint8)
    table = np.ascontiguousarray(palette).tobytes()

    def stripe(i: int) -> tuple | None:
        (y0, y1), part = rows[i], stream[bounds[i] : bounds[i + 1]]
        if _raster is not None:
            return _raster.decode(part, width, y1 - y0, table, k, channels, labels[y0:y1])
        try:
            labels[y0:y1] = raster_ref.decode(part, width, y1 - y0, palette)
        except raster_ref.Fault as fault:
            return fault.kind, fault.pixel, fault.a, fault.b
        return None

    for i, fault in enumerate(each(stripe, list(range(stripes)))):  # the first failure in stripe order
        if fault is not None:
            kind, pixel, a, b = fault
            raise fault_error(kind, rows[i][0] * width + pixel, a, b, width, offset + bounds[i])
    return labels


# What each failure the decoders report (spec §7 rules 10, 12, 13) says; {at} is the pixel,
# {start} the file byte where the stripe's part begins.
FAULTS = {
    "first_byte": (StreamStructureError, "bad range-coded part at byte {start}: it starts with {a:#04x}, must be 0x00"),
    "value": (StreamStructureError, "bad range-coded value at {at}: {a} is not below the table's total {b}"),
    "past_end": (StreamEndError, "stream ends early: {at} needs a byte past the {a} range-coded bytes (from byte {start})"),
    "left_over": (StreamEndError, "stream leaves bytes over: {left} of the {b} range-coded bytes from byte {start} are unread after the stripe's last pixel"),
    "code": (StreamEndError, "stream ends in the wrong state: the range decoder's code is {a:#x} after the last pixel of the stripe from byte {start}, must be 0"),
    "rank": (SymbolRangeError, "escape rank {a} at {at} is not below K - m = {b}"),
}


def fault_error(kind: str, pixel: int, a: int, b: int, width: int, start: int) -> KmqError:
    """The spec §7 error for a failure the decoder met at raster index `pixel`; R starts at file byte `start`."""
    if kind not in FAULTS:
        raise ValueError(f"unknown method-3 failure {kind!r}")
    error, text = FAULTS[kind]
    return error(text.format(at=f"pixel ({pixel % width}, {pixel // width})", a=a, b=b, left=b - a, start=start))
