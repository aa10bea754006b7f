"""Coding 1, method 1 (spec §11.11): the labels as one Zstandard frame (RFC 8878).

    label stream, method 1
    +--------+--------------------------------------------------------------+
    | method | one Zstandard frame: single segment, content size = N*B,     |
    |  u8 1  | no dictionary, no checksum; content = labels in raster order |
    +--------+--------------------------------------------------------------+

B is 1 byte per label when K <= 256, else 2 (little-endian). Method 0's
neighbour model cannot copy a repeated shape (a glyph, an icon); Zstandard's
matches can, so text and screenshots are often far smaller this way. The
encoder tries it only when a fast trial says it may win (`encode_labels`).

The frame's header and block headers are walked here before the library
decompresses anything: that is what ties every malformed frame to one rule of
spec §7 (10, 11 or 12) with its byte offset, in Python and in any other decoder,
whatever its Zstandard library says. The library (`zstandard`) does the rest.
"""

from __future__ import annotations

import numpy as np

from .bitpack import label_dtype
from .errors import (
    StreamEndError,
    StreamLengthError,
    StreamStructureError,
    SymbolRangeError,
)

METHOD = 1
MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 §3.1.1, 0xFD2FB528 little-endian
MAX_BLOCK = 128 * 1024  # RFC 8878 §3.1.1.2.4: Block_Maximum_Size is at most 128 KiB
TRIAL_LEVEL = 3  # a fast first try, to skip the slow levels on photos (bench/README.md)
TRIAL_RATIO = 1.2  # try the slow level when the fast one is within this of the method-2 size
ALWAYS_STRONG = 1 << 16  # content up to this many bytes skips the trial: the strong level takes milliseconds there
SMALL_LEVEL, LARGE_LEVEL, LARGE_BYTES = 22, 19, 4 << 20  # level 22 above 4 MB costs seconds
MAX_CONTENT = 1 << 31  # Zstandard's largest window on 64-bit systems: a single segment can hold no more


def walk_frame(stream: memoryview, need: int, offset: int) -> None:
    """Check the frame's header and block headers against spec §11.11 steps 1-3 (rules 10-12).

    `stream` is the whole label stream (the method byte first); `need` is N*B;
    `offset` is the stream's position in the file, for messages.
    """
    n = len(stream)

    def at(pos: int) -> int:
        return offset + pos

    if n < 6 or bytes(stream[1:5]) != MAGIC:
        raise StreamStructureError(f"bad Zstandard magic at byte {at(1)}: {bytes(stream[1:5]).hex(' ')}, must be 28 b5 2f fd")
    fhd = stream[5]
    if not fhd & 0x20:
        raise StreamStructureError(f"bad Zstandard frame header at byte {at(5)}: {fhd:#04x}, the single-segment bit (0x20) must be set")
    if fhd & 0x08:
        raise StreamStructureError(f"bad Zstandard frame header at byte {at(5)}: {fhd:#04x}, the reserved bit (0x08) must be 0")
    if fhd & 0x04:
        raise StreamStructureError(f"bad Zstandard frame header at byte {at(5)}: {fhd:#04x}, a content checksum (0x04) is not allowed")
    if fhd & 0x03:
        raise StreamStructureError(f"bad Zstandard frame header at byte {at(5)}: {fhd:#04x}, a dictionary id (0x03) is not allowed")
    size_bytes = (1, 2, 4, 8)[fhd >> 6]
    if 6 + size_bytes > n:
        raise StreamEndError(f"label stream ends at byte {at(n)} inside the Zstandard content size at byte {at(6)}")
    content_size = int.from_bytes(stream[6 : 6 + size_bytes], "little") + (256 if size_bytes == 2 else 0)
    if content_size != need:
        raise StreamLengthError(f"Zstandard content size at byte {at(6)} is {content_size} bytes, the header needs {need}")
    block_max = min(content_size, MAX_BLOCK)
    pos = 6 + size_bytes
    while True:
        if pos + 3 > n:
            raise StreamEndError(f"label stream ends at byte {at(n)} inside a Zstandard block header at byte {at(pos)}")
        head = int.from_bytes(stream[pos : pos + 3], "little")
        last, kind, size = head & 1, (head >> 1) & 3, head >> 3
        if kind == 3:
            raise StreamStructureError(f"bad Zstandard block at byte {at(pos)}: block type 3 is reserved")
        if size > block_max:
            raise StreamStructureError(f"bad Zstandard block at byte {at(pos)}: size {size}, at most {block_max}")
        body = 1 if kind == 1 else size
        if pos + 3 + body > n:
            raise StreamEndError(
                f"label stream ends at byte {at(n)} inside the Zstandard block at byte {at(pos)}, which needs {body} bytes"
            )
        pos += 3 + body
        if last:
            break
    if pos != n:
        raise StreamEndError(f"label stream has {n - pos} bytes left over after its Zstandard frame ends at byte {at(pos)}")


def decode_labels(stream: memoryview, width: int, height: int, k: int, offset: int) -> np.ndarray:
    """Labels (height x width) from a method-1 label stream (spec §11.11); rules 10-13."""
    import zstandard  # only files that use method 1 pay for the import

    need = width * height * label_dtype(k).itemsize  # N·B of spec §11.11
    walk_frame(stream, need, offset)
    # The frame is single-segment with a checked content size, so libzstd's window is the
    # content itself; it decompresses straight into the (writable) label map.
    labels = np.empty((height, width), label_dtype(k).newbyteorder("<"))
    view = memoryview(labels.reshape(-1)).cast("B")
    filled = 0
    try:
        reader = zstandard.ZstdDecompressor(max_window_size=max(need, 1 << 10)).stream_reader(stream[1:], read_across_frames=False)
        while filled < need and (got := reader.readinto(view[filled:])):
            filled += got
        over = len(reader.read(1))
    except zstandard.ZstdError as error:
        raise StreamStructureError(f"bad Zstandard data in the frame at byte {offset + 1}: {error}") from None
    if filled != need or over:
        raise StreamStructureError(f"Zstandard frame at byte {offset + 1} holds {'more than ' if over else ''}{filled} bytes, its content size says {need}")
    bad = labels >= k
    if bad.any():
        i = int(np.argmax(bad.reshape(-1)))
        raise SymbolRangeError(f"label {int(labels.reshape(-1)[i])} of pixel {i} (Zstandard frame at byte {offset + 1}) is not below k={k}")
    return labels.astype(label_dtype(k), copy=False)  # native order: a copy only on big-endian machines


def encode_labels(labels: np.ndarray, k: int, beat: int) -> bytes | None:
    """The method-1 stream when it is shorter than `beat` bytes, else None.

    A level-3 trial (a few ms per megapixel) decides whether the slow, strong
    level is worth its time: on photos it never wins.
    """
    import zstandard

    content = np.ascontiguousarray(labels, label_dtype(k).newbyteorder("<")).tobytes()

    def frame(level: int, single_segment: bool = False) -> bytes:
        options = {"source_size": len(content), "write_content_size": True, "write_checksum": False, "write_dict_id": False}
        params = zstandard.ZstdCompressionParameters.from_level(level, **options)
        if single_segment and 1 << params.window_log < len(content):
            # A window as large as the content makes the frame single-segment (spec §11.11),
            # and lets matches reach back across the whole image.
            params = zstandard.ZstdCompressionParameters.from_level(level, window_log=(len(content) - 1).bit_length(), **options)
        return zstandard.ZstdCompressor(compression_params=params).compress(content)

    if len(content) > MAX_CONTENT:
        return None
    if len(content) > ALWAYS_STRONG and 1 + len(frame(TRIAL_LEVEL)) >= TRIAL_RATIO * beat:
        return None
    data = frame(SMALL_LEVEL if len(content) <= LARGE_BYTES else LARGE_LEVEL, single_segment=True)
    if not data[4] & 0x20:  # not single-segment: not allowed (spec §11.11 step 1)
        return None
    stream = bytes([METHOD]) + data
    return stream if len(stream) < beat else None
