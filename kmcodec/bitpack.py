"""Bit packing of labels: b bits each, most significant bit first, row-major, no row padding.

The stream ends with zero bits up to the next byte (spec §4). All paths are
vectorised and work in bounded chunks, so memory stays proportional to the output.
"""

from __future__ import annotations

import numpy as np

from .errors import LabelRangeError, PaddingError

# Pixels per chunk in the general paths: a multiple of 8, so every chunk of
# b-bit labels starts and ends on a byte boundary.
CHUNK = 1 << 20


def packed_size(count: int, bits: int) -> int:
    """Bytes needed for `count` labels of `bits` bits: ceil(count * bits / 8)."""
    return (count * bits + 7) // 8


def label_dtype(k: int) -> np.dtype:
    """The smallest unsigned dtype holding labels 0..k-1."""
    return np.dtype(np.uint8) if k <= 256 else np.dtype(np.uint16)


def pack_labels(labels: np.ndarray, bits: int) -> bytes:
    """Pack `labels` (any shape, read row-major) at `bits` bits each; bits in 0..16."""
    flat = np.ascontiguousarray(labels).reshape(-1)
    if bits == 0:
        return b""
    if bits == 8:
        return flat.astype(np.uint8, copy=False).tobytes()
    if bits == 16:
        return flat.astype(">u2").tobytes()
    if 8 % bits == 0:  # 1, 2, 4: several whole labels per byte
        per_byte = 8 // bits
        padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint8)
        padded[: flat.size] = flat
        groups = padded.reshape(-1, per_byte)
        out = np.zeros(groups.shape[0], np.uint8)
        for i in range(per_byte):
            out |= groups[:, i] << np.uint8(8 - bits * (i + 1))
        return out.tobytes()
    # Any other width: keep the low `bits` of each big-endian 16-bit label, then repack.
    # Chunks hold a multiple of 8 labels, so each one packs to whole bytes.
    return b"".join(
        np.packbits(np.unpackbits(flat[i : i + CHUNK].astype(">u2").view(np.uint8)).reshape(-1, 16)[:, 16 - bits :]).tobytes()
        for i in range(0, flat.size, CHUNK)
    )


def unpack_labels(data: bytes | memoryview, count: int, bits: int, k: int, width: int | None = None) -> np.ndarray:
    """Unpack all `count` labels and enforce the decoder's rules on them.

    Raises `PaddingError` for non-zero padding bits and `LabelRangeError` for a
    label >= k (located as (x, y) when `width` is given). Returns a flat array
    of `label_dtype(k)`.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size != packed_size(count, bits):
        raise ValueError(f"{buf.size} label bytes for {count} labels of {bits} bits")
    check_padding(buf, count, bits)
    labels = np.empty(count, label_dtype(k))
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        labels[start : start + n] = unpack_range(buf, start, n, bits)
        check_range(labels[start : start + n], k, width, start)
    return labels


def check_labels(data: bytes | memoryview, count: int, bits: int, k: int, width: int | None = None) -> None:
    """The checks of `unpack_labels` in bounded memory, keeping no labels."""
    buf = np.frombuffer(data, np.uint8)
    check_padding(buf, count, bits)
    if fills_width(k):
        return
    first = 0
    if 8 % bits == 0 and bits < 16:
        # One lookup per byte (does it hold a label >= k?), a chunk of bytes at a
        # time; only a chunk with a bad byte is unpacked, to locate the label.
        holds_bad = (byte_table(bits) >= k).any(axis=1)
        per_byte = 8 // bits
        bad = (start for start in range(0, buf.size, CHUNK) if holds_bad[buf[start : start + CHUNK]].any())
        first_bad = next(bad, None)
        if first_bad is None:
            return
        first = first_bad * per_byte
    for start in range(first, count, CHUNK):
        n = min(CHUNK, count - start)
        check_range(unpack_range(buf, start, n, bits), k, width, start)


def unpack_range(buf: np.ndarray, start: int, count: int, bits: int) -> np.ndarray:
    """Labels start .. start+count-1 of a packed stream, unchecked; reads only the bytes they span."""
    if bits == 0:
        return np.zeros(count, np.uint8)
    first_bit = start * bits
    span = buf[first_bit // 8 : packed_size(start + count, bits)]
    skip = first_bit % 8
    if bits == 8:
        return span.copy()
    if bits == 16:
        return span.view(">u2").astype(np.uint16)
    if 8 % bits == 0:
        return byte_table(bits)[span].reshape(-1)[skip // bits : skip // bits + count]
    return _unpack_groups(buf, start, count, bits)


def _unpack_groups(buf: np.ndarray, start: int, count: int, bits: int) -> np.ndarray:
    """Any width: 8 labels fill exactly `bits` bytes, so work on groups of 8 labels.

    Label j of a group starts at bit j*bits and lies within the 3 bytes from
    byte j*bits // 8; reading that 24-bit window column by column needs no
    per-label index arrays.
    """
    first = start - start % 8
    groups = -(-(start + count - first) // 8)
    raw = buf[first * bits // 8 : (first // 8 + groups) * bits]
    grid = np.zeros((groups, bits + 2), np.uint32)  # 2 spare zero bytes: a window may run past the group
    flat = np.zeros(groups * bits, np.uint8)
    flat[: raw.size] = raw
    grid[:, :bits] = flat.reshape(groups, bits)
    out = np.empty((groups, 8), np.uint16)
    mask = np.uint32((1 << bits) - 1)
    for j in range(8):
        byte, bit = divmod(j * bits, 8)
        window = (grid[:, byte] << 16) | (grid[:, byte + 1] << 8) | grid[:, byte + 2]
        out[:, j] = (window >> np.uint32(24 - bits - bit)) & mask
    return out.reshape(-1)[start - first : start - first + count]


def byte_table(bits: int) -> np.ndarray:
    """For bits in {1, 2, 4, 8}: table[byte] = the labels packed in that byte, first first."""
    per_byte = 8 // bits
    values = np.arange(256, dtype=np.uint8)[:, None]
    shifts = np.array([8 - bits * (i + 1) for i in range(per_byte)], np.uint8)
    return (values >> shifts) & np.uint8((1 << bits) - 1)


def check_padding(buf: np.ndarray, count: int, bits: int) -> None:
    pad = buf.size * 8 - count * bits
    if pad and int(buf[-1]) & ((1 << pad) - 1):
        raise PaddingError(
            f"non-zero padding: last label byte {int(buf[-1]):#04x} (byte {buf.size - 1} of the label stream)"
            f" has {pad} padding bits that must be 0"
        )


def fills_width(k: int) -> bool:
    """Whether every b-bit value is a valid label: k is a power of two (spec §4)."""
    return k & (k - 1) == 0


def check_range(labels: np.ndarray, k: int, width: int | None = None, offset: int = 0) -> None:
    """Raise `LabelRangeError` naming the first label >= k (no-op when k fills the bit width)."""
    if fills_width(k):
        return
    bad = labels >= k
    if bad.any():
        index = offset + int(np.argmax(bad))
        where = f"pixel (x={index % width}, y={index // width})" if width else f"pixel index {index}"
        raise LabelRangeError(f"label {int(labels[index - offset])} at {where} is not below k={k}")
