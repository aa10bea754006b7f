"""Coding 1, method 2: frequency tables as one bit string (spec §11.13).

Method 0 spends 1-2 bytes on every frequency at 12-bit precision, 1.1-1.5 kB a
file; most contexts see too few symbols for that precision to pay. Here each
table has its own precision p, and its frequencies are Exp-Golomb codes, so a
small file's tables take about a third of the bytes.
"""

from __future__ import annotations

import numpy as np

from . import rans
from .errors import StreamEndError, StreamStructureError

PRECISION_BITS = 4  # p, 0 ... 12
MAX_ZEROS = rans.PRECISION  # an Exp-Golomb code of a frequency below 2**12 has at most 12 leading zeros


def size_bits(alphabet: int) -> int:
    """w: the bits of the field n - 1, the bit length of alphabet - 1."""
    return (alphabet - 1).bit_length()


def golomb_widths(values: np.ndarray) -> np.ndarray:
    """Bits of the Exp-Golomb code of each value: 2z + 1, z = bit length of v + 1, less 1 (exact below 2**52)."""
    return 2 * np.floor(np.log2(np.asarray(values, np.int64) + 1)).astype(np.int64) + 1


def golomb_bits(values: np.ndarray) -> int:
    """Bits of the Exp-Golomb codes of `values`."""
    return int(golomb_widths(values).sum())


def best_table(counts: np.ndarray, alphabet: int) -> tuple[int, np.ndarray]:
    """(p, frequencies summing to 2**p) with the fewest table bits plus coded bits; ties to the lower p."""
    used = np.flatnonzero(counts)
    n = int(used[-1]) + 1
    best: tuple[float, int, np.ndarray] | None = None
    for p in range(rans.PRECISION + 1):
        if used.size > 1 << p:
            continue
        freqs = rans.normalise(counts, 1 << p)
        bits = PRECISION_BITS + size_bits(alphabet) + golomb_bits(freqs[: n - 1])
        bits += rans.cost_bits(counts, freqs << (rans.PRECISION - p))
        if best is None or bits < best[0]:
            best = (bits, p, freqs)
    assert best is not None  # p = 12 always fits: at most 72 symbols
    return best[1], best[2]


def write_tables(tables: list[tuple[int, np.ndarray, int]]) -> bytes:
    """The bit string of the present tables, in context order: (p, frequencies, alphabet) each.

    An Exp-Golomb code of f is f + 1 written in 2z + 1 bits (z = bit length of f + 1, less 1):
    its z leading zeros come for free, so every field is one (value, width) pair for `rans.pack_bits`.
    """
    values: list[np.ndarray] = []
    widths: list[np.ndarray] = []
    for p, freqs, alphabet in tables:
        n = int(np.flatnonzero(freqs)[-1]) + 1
        codes = np.asarray(freqs[: n - 1], np.int64)
        values += [np.array([p, n - 1]), codes + 1]
        widths += [np.array([PRECISION_BITS, size_bits(alphabet)]), golomb_widths(codes)]
    if not values:
        return b""
    return rans.pack_bits(np.concatenate(values), np.concatenate(widths))


class TableReader:
    """Reads the packed tables bit by bit from the label stream, naming the byte of every failure."""

    def __init__(self, data: memoryview, start: int, offset: int) -> None:
        self.data = data
        self.pos = start * 8  # in bits, from the start of the label stream
        self.start = start
        self.offset = offset  # the label stream's position in the file, for messages

    def bit(self, field: str) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise StreamEndError(f"stream ends early: {field} at byte {self.offset + byte} is past the end of the stream")
        self.pos += 1
        return (self.data[byte] >> (7 - ((self.pos - 1) & 7))) & 1

    def read(self, nbits: int, field: str) -> int:
        value = 0
        for _ in range(nbits):
            value = (value << 1) | self.bit(field)
        return value

    def golomb(self, field: str) -> int:
        at = self.offset + (self.pos >> 3)
        zeros = 0
        while not self.bit(field):
            zeros += 1
            if zeros > MAX_ZEROS:
                raise StreamStructureError(f"bad {field} at byte {at}: an Exp-Golomb code with more than {MAX_ZEROS} leading zero bits")
        return (1 << zeros) - 1 + self.read(zeros, field)

    def table(self, alphabet: int, name: str) -> np.ndarray:
        """One packed table, as frequencies summing to 4096 widened to the token alphabet."""
        at = self.offset + (self.pos >> 3)
        p = self.read(PRECISION_BITS, f"{name} precision")
        if p > rans.PRECISION:
            raise StreamStructureError(f"bad {name} at byte {at}: precision {p}, allowed 0..{rans.PRECISION}")
        n = self.read(size_bits(alphabet), f"{name} size") + 1
        if n > alphabet:
            raise StreamStructureError(f"bad {name} at byte {at}: {n} symbols, allowed 1..{alphabet}")
        freqs = np.zeros(rans.TOKENS, np.int64)
        for s in range(n - 1):
            freqs[s] = self.golomb(f"{name} frequency")
        rest = (1 << p) - int(freqs.sum())
        if rest < 1:
            raise StreamStructureError(
                f"bad {name} at byte {at}: frequencies sum to {(1 << p) - rest}, more than {(1 << p) - 1} before the last symbol"
            )
        freqs[n - 1] = rest
        return freqs << (rans.PRECISION - p)

    def end(self) -> int:
        """Check the padding after the last table; the byte where the lane states start."""
        if self.pos & 7:
            byte = self.pos >> 3
            if self.data[byte] & ((1 << (8 - (self.pos & 7))) - 1):
                raise StreamStructureError(f"bad table padding at byte {self.offset + byte}: the bits after the last table are not zero")
            self.pos += 8 - (self.pos & 7)
        return self.pos >> 3

