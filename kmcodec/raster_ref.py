"""Coding 1, method 3 (spec §11.15) in plain Python, one pixel at a time.

It follows the spec line by line. The C module `kmcodec._raster` does the same
work about 100x faster; this module is the reference its tests compare against,
and the decoder kmcodec falls back to when the C module was not built.
"""

from __future__ import annotations

import numpy as np

TOP = 1 << 24  # the range decoder renormalises below 2^24
START, STEP, LIMIT = 16, 24, 8192  # adaptive tables: first frequency, growth, halving threshold
FULL_RANGE = (1 << 32) - 1
PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # (W, N), (W, NE), (W, NW), (N, NE), (N, NW), (NE, NW)
# The pixels whose labels are hashed into the history tables' slots, as (dx, dy); the short list is the first 3.
LONG = ((-1, 0), (0, -1), (-1, -1), (1, -1), (-2, 0), (0, -2), (1, -2), (-1, -2), (-3, 0), (2, -1))
SHORT = 3
SLOT_BITS = 18


class Fault(Exception):
    """The first failure of a stream, as the C module reports it: kind, pixel index, and two numbers."""

    def __init__(self, kind: str, pixel: int, a: int, b: int) -> None:
        super().__init__(kind, pixel, a, b)
        self.kind, self.pixel, self.a, self.b = kind, pixel, a, b


def token(r: int) -> tuple[int, int, int]:
    """(token, number of extra bits, extra bits) of a rank."""
    if r < 8:
        return r, 0, 0
    g = r.bit_length() - 1
    return 8 + 2 * (g - 3) + (r >> (g - 1) & 1), g - 1, r & ((1 << (g - 1)) - 1)


def rank_of(tok: int, extra: int) -> int:
    if tok < 8:
        return tok
    g = (tok - 8) // 2 + 3
    return (1 << g) | ((tok - 8) & 1) << (g - 1) | extra


def extra_bits(tok: int) -> int:
    return 0 if tok < 8 else (tok - 8) // 2 + 2


class Table:
    """Adaptive frequencies: every symbol starts at 16, grows by 24 when coded, all halve above 8192."""

    __slots__ = ("f", "total")

    def __init__(self, n: int) -> None:
        self.f = [START] * n
        self.total = START * n

    def update(self, s: int) -> None:
        self.f[s] += STEP
        self.total += STEP
        if self.total > LIMIT:
            self.f = [(v + 1) >> 1 for v in self.f]
            self.total = sum(self.f)


class Model:
    """What encoder and decoder share: tables, the order of the palette from each entry, nearest entries."""

    def __init__(self, palette: np.ndarray) -> None:
        pal = np.asarray(palette, np.int64)
        self.k = pal.shape[0]
        if not 1 <= self.k <= 256:
            raise ValueError(f"method 3 needs 1 <= K <= 256, got {self.k}")
        self.palette = [tuple(int(v) for v in row) for row in pal]
        dist = ((pal[:, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
        self.order = [list(map(int, np.argsort(row, kind="stable"))) for row in dist]  # ties by index
        self.choice: dict[int, Table] = {}
        self.escape = [Table(1 + token(self.k - 1)[0]) for _ in range(7)]
        self.long = [0] * (1 << SLOT_BITS)  # label + 1; 0 is empty
        self.short = [0] * (1 << SLOT_BITS)
        self.nearest: dict[tuple, int] = {}

    def ref(self, nb: tuple[int, ...]) -> int:
        """The entry nearest the mean colour of the present neighbours (spec §11.13), 0 when there is none."""
        present = [self.palette[v] for v in nb if v >= 0]
        if not present:
            return 0
        q = len(present)
        mean = tuple((2 * sum(col) + q) // (2 * q) for col in zip(*present))
        if mean not in self.nearest:
            d = [sum((a - b) ** 2 for a, b in zip(entry, mean)) for entry in self.palette]
            self.nearest[mean] = d.index(min(d))
        return self.nearest[mean]


def slots(labels: list[int], width: int, x: int, y: int) -> tuple[int, int]:
    """The pixel's slots in the long and the short history table (spec §11.15, "Two predictions")."""
    h = short = 2166136261
    for i, (dx, dy) in enumerate(LONG):
        px, py = x + dx, y + dy
        c = labels[py * width + px] + 1 if 0 <= px < width and py >= 0 else 0
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
        if i == SHORT - 1:
            short = h
    mask = (1 << SLOT_BITS) - 1
    return (h ^ (h >> 15)) & mask, (short ^ (short >> 15)) & mask


def pixel_context(labels: list[int], width: int, x: int, y: int, model: "Model | None" = None) -> tuple[tuple[int, ...], int, list[int], tuple[int, int]]:
    """Neighbours (W, N, NE, NW; -1 when absent), the 21-bit context t, the candidates, and the two slots.

    Without a model both predictions are missing (the spec's context example).
    """
    row, up = y * width, (y - 1) * width
    w = labels[row + x - 1] if x > 0 else -1
    n = labels[up + x] if y > 0 else -1
    ne = labels[up + x + 1] if y > 0 and x + 1 < width else -1
    nw = labels[up + x - 1] if y > 0 and x > 0 else -1
    nb = (w, n, ne, nw)
    t = 0
    for bit, (i, j) in enumerate(PAIRS):
        t |= (nb[i] == nb[j]) << bit  # absent (-1) agrees only with absent
    for i in range(4):
        t |= (nb[i] < 0) << (6 + i)
    ww = labels[row + x - 2] if x > 1 else -1
    nn = labels[(y - 2) * width + x] if y > 1 else -1
    t |= (ww == w) << 10 | (nn == n) << 11
    counts: dict[int, int] = {}
    for v in nb:
        if v >= 0:
            counts[v] = counts.get(v, 0) + 1
    cands = sorted(counts, key=lambda v: -counts[v])  # stable: ties keep first-holder order
    a1 = a2 = 0
    where = (0, 0)
    if model is not None:
        where = slots(labels, width, x, y)
        p1, p2 = model.long[where[0]] - 1, model.short[where[1]] - 1
        if p1 >= 0:
            a1 = cands.index(p1) + 1 if p1 in cands else 5
            if a1 == 5:
                cands.append(p1)
        if p2 >= 0:
            a2 = cands.index(p2) + 1 if p2 in cands else 6
            if a2 == 6:
                cands.append(p2)
    return nb, t | len(cands) << 12 | a1 << 15 | a2 << 18, cands, where


# --- the decoder ---------------------------------------------------------------------


class RangeDecoder:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.pixel = data, 0, 0
        first = self.byte()
        if first:
            raise Fault("first_byte", 0, first, 0)
        self.range, self.code = FULL_RANGE, 0
        for _ in range(4):
            self.code = self.code << 8 | self.byte()

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise Fault("past_end", self.pixel, len(self.data), 0)
        self.pos += 1
        return self.data[self.pos - 1]

    def symbol(self, f: list[int], total: int) -> int:
        q = self.range // total
        v = self.code // q
        if v >= total:
            raise Fault("value", self.pixel, v, total)
        s, cum = 0, 0
        while cum + f[s] <= v:
            cum += f[s]
            s += 1
        self.code -= q * cum
        self.range = q * f[s]
        while self.range < TOP:
            self.code = self.code << 8 | self.byte()
            self.range <<= 8
        return s


BIT = [1, 1]


def decode(data: bytes, width: int, height: int, palette: np.ndarray) -> np.ndarray:
    """The labels (height x width, uint8) of a method-3 range-coded part; raises Fault at the first failure."""
    model = Model(palette)
    k = model.k
    labels = [0] * (width * height)
    dec = RangeDecoder(bytes(data))
    for y in range(height):
        for x in range(width):
            i = dec.pixel = y * width + x
            nb, t, cands, (long_slot, short_slot) = pixel_context(labels, width, x, y, model)
            m = len(cands)
            if m:
                table = model.choice.get(t) or model.choice.setdefault(t, Table(m + 1))
                s = dec.symbol(table.f, table.total)
                table.update(s)
                if s < m:
                    labels[i] = cands[s]
                    model.long[long_slot] = model.short[short_slot] = cands[s] + 1
                    continue
            table = model.escape[m]
            tok = dec.symbol(table.f, table.total)
            table.update(tok)
            extra = 0
            for _ in range(extra_bits(tok)):
                extra = extra << 1 | dec.symbol(BIT, 2)
            r = rank_of(tok, extra)
            if r >= k - m:
                raise Fault("rank", i, r, k - m)
            labels[i] = [e for e in model.order[model.ref(nb)] if e not in cands][r]
            model.long[long_slot] = model.short[short_slot] = labels[i] + 1
    dec.pixel = width * height
    if dec.pos != len(dec.data):
        raise Fault("left_over", dec.pixel, dec.pos, len(dec.data))
    if dec.code:
        raise Fault("code", dec.pixel, dec.code, 0)
    return np.array(labels, np.uint8).reshape(height, width)


# --- the encoder (spec §11.15, non-normative part) ------------------------------------


class RangeEncoder:
    """LZMA's range encoder: a 33-bit low, one held-back byte and a count of pending 0xff bytes."""

    def __init__(self) -> None:
        self.low, self.range, self.cache, self.pending = 0, FULL_RANGE, 0, 1
        self.out = bytearray()

    def put(self, cum: int, f: int, total: int) -> None:
        q = self.range // total
        self.low += q * cum
        self.range = q * f
        while self.range < TOP:
            self.range <<= 8
            self.shift()

    def shift(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            self.out.extend([(0xFF + carry) & 0xFF] * (self.pending - 1))
            self.pending = 0
            self.cache = self.low >> 24 & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def finish(self) -> bytes:
        for _ in range(5):
            self.shift()
        return bytes(self.out)


def encode(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """The range-coded part of method 3 (without the method byte) for a label map (height x width)."""
    height, width = labels.shape
    model = Model(palette)
    flat = [int(v) for v in np.asarray(labels).ravel()]
    if flat and max(flat) >= model.k:
        raise ValueError(f"a label is not below K = {model.k}")
    enc = RangeEncoder()
    for y in range(height):
        for x in range(width):
            v = flat[y * width + x]
            nb, t, cands, (long_slot, short_slot) = pixel_context(flat, width, x, y, model)
            model.long[long_slot] = model.short[short_slot] = v + 1  # read above; set for the pixels after
            m = len(cands)
            if m:
                table = model.choice.get(t) or model.choice.setdefault(t, Table(m + 1))
                s = cands.index(v) if v in cands else m
                enc.put(sum(table.f[:s]), table.f[s], table.total)
                table.update(s)
                if s < m:
                    continue
            order = model.order[model.ref(nb)]
            r = [e for e in order if e not in cands].index(v)
            tok, nbits, extra = token(r)
            table = model.escape[m]
            enc.put(sum(table.f[:tok]), table.f[tok], table.total)
            table.update(tok)
            for b in range(nbits - 1, -1, -1):
                enc.put(extra >> b & 1, 1, 2)
    return enc.finish()
