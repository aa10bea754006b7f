"""Coding 1, coded labels (spec §11): the labels predicted coarse to fine, then rANS-coded.

    label stream of a coding-1 file
    +--------+-------+-------------+-------------+---------+--------------+------------+------------+
    | method | lanes | first label | extra bytes | present | freq tables  | lane states| extra bits | rANS words
    |  u8 0  |  u16  |     u16     |     u32     | 13 bytes| one per ctx  | lanes x u32|            | u16 ...
    +--------+-------+-------------+-------------+---------+--------------+------------+------------+

- Pixel (0, 0) is stored as `first label`. Every other pixel is coded in one of
  3 passes per level, at steps d = 2^(S-1) ... 2, 1 (2^S >= max(W, H)):
  A: x = d, y = d (mod 2d), whose neighbours are the 4 diagonal pixels at +-d;
  B: x = d, y = 0 (mod 2d), and C: x = 0, y = d (mod 2d), whose neighbours are
  the 4 pixels up, left, right and down at distance d. All were decoded earlier,
  so a whole pass is decoded at once.
- The distinct labels of the neighbours inside the image, most frequent first
  (ties: first in neighbour order), are the candidates. Their count pattern
  picks the context.
- When all neighbours agree (one candidate, "unanimous"), the pixel is that
  candidate unless it is listed as an escape: per pass, the number of escapes
  and the gaps between them. Otherwise a symbol names the candidate, or escapes.
- An escaped pixel's label is coded as its rank among the non-candidates
  ordered by colour distance from the first candidate (K <= 256), or as the
  zigzag of its index difference from it (K > 256).
- Integers become hybrid tokens plus extra bits; tokens and symbols are coded
  with static 12-bit frequency tables by interleaved rANS (see `rans`).

Encoder and decoder sit side by side: `encode_labels` and `decode_labels`.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import _nearest, packed_tables, rans, raster_coding, zstd_labels
from .bitpack import label_dtype
from .errors import StreamLengthError, StreamStructureError, SymbolRangeError

METHOD = 0  # spec §11.1: byte-aligned tables, escapes ranked from candidate 0; method 1 is `zstd_labels` (§11.11)
METHOD_PACKED = 2  # spec §11.13: packed tables, escapes ranked from the entry nearest the neighbours' mean colour
METHODS = (METHOD, METHOD_PACKED)  # the methods of this module's neighbour model
HEADER_SIZE = 9  # method, lanes, first label, extra bytes
RANK_MAX_K = 256  # spec §11.5: up to this K escapes are ranked by colour distance
# The decoder overlaps passes B and C on a worker thread from this many pixels per pass
# (images of 4x as many); tests lower it to reach that path with small images.
THREAD_MIN_PIXELS = 1 << 18
CHUNK = 1 << 16  # pixels to choose per chunk of the element-wise work: temporaries stay in cache
# With the worker thread, a pass's pixels to choose are gathered on it in blocks of this many,
# and finishing work on this many pixels or escapes is split in two halves, the second on
# the worker (`in_halves`); tests lower it to reach both with small images.
SPLIT_MIN = 2 * CHUNK
BAND_PIXELS = 1 << 20  # the encoder works on bands of a pass's rows of about this many pixels
CACHE_MIN_ESCAPES = 1 << 14  # escapes in one pass that make the decoder keep a table of nearest entries (spec §11.13)

# spec §11.3: neighbour offsets (dy, dx) in units of d, in neighbour order.
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))  # pass A: NW, NE, SW, SE
AXIAL = ((-1, 0), (0, -1), (0, 1), (1, 0))  # passes B and C: N, W, E, S
PASSES = (("A", 1, 1, DIAGONAL), ("B", 0, 1, AXIAL), ("C", 1, 0, AXIAL))  # name, y0/d, x0/d, offsets

# spec §11.4: count patterns of the neighbours' labels, their ids and candidate counts m.
PATTERNS = ((4,), (3, 1), (2, 2), (2, 1, 1), (1, 1, 1, 1), (3,), (2, 1), (1, 1, 1), (2,), (1, 1), (1,))
PATTERN_M = np.array([len(p) for p in PATTERNS])
CHOICE_PATTERNS = [i for i, p in enumerate(PATTERNS) if len(p) > 1]  # 1, 2, 3, 4, 6, 7, 9
CHOICE_INDEX = np.array([CHOICE_PATTERNS.index(i) if i in CHOICE_PATTERNS else -1 for i in range(len(PATTERNS))])
PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

# spec §11.6: the contexts, in table order.
GROUPS = 8
CTX_COUNT = 0
CTX_GAP = 1  # + group
CTX_ESCAPE = CTX_GAP + GROUPS  # + 4 * group + (m - 1)
CTX_CHOICE = CTX_ESCAPE + 4 * GROUPS  # + 7 * group + choice index
CONTEXTS = CTX_CHOICE + len(CHOICE_PATTERNS) * GROUPS  # 97
PRESENT_BYTES = (CONTEXTS + 7) // 8  # 13
ALPHABETS = [rans.TOKENS] * CTX_CHOICE + [
    int(PATTERN_M[p]) + 1 for _ in range(GROUPS) for p in CHOICE_PATTERNS
]


def _pattern_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PATTERN[code], PERM[code] and SLOT[code] for code = presence bits 0-3 | pair-equality bits 4-9.

    PERM[code, i] is the neighbour holding candidate i; SLOT[code, j] is the
    candidate index of neighbour j's label (4 when absent). Built from the spec's
    definition for all 1024 codes at once (the tests check it against a
    brute-force reading of the spec).
    """
    codes = np.arange(1024)
    present = ((codes[:, None] >> np.arange(4)) & 1) == 1  # (code, neighbour)
    same = np.broadcast_to(np.eye(4, dtype=bool), (1024, 4, 4)).copy()  # (code, i, j): i, j hold one label
    for i, (a, b) in enumerate(PAIRS):
        equal = ((codes >> (4 + i)) & 1) == 1
        same[:, a, b] |= equal
        same[:, b, a] |= equal
    holds = same & present[:, :, None] & present[:, None, :]
    earlier = np.triu(np.ones((4, 4), bool), 1)  # [i, j]: i < j
    first = present & ~(holds & earlier).any(axis=1)  # present and no earlier neighbour holds its label
    count = holds.sum(axis=1)  # (code, j): neighbours holding j's label
    # Candidates: the first holders, most holders first, ties in neighbour order.
    rank = np.where(first, (4 - count) * 4 + np.arange(4), 99)
    perm = np.argsort(rank, axis=1, kind="stable")
    m = first.sum(axis=1)
    perm = np.where(np.arange(4) < m[:, None], perm, 0).astype(np.uint8)
    counts = np.take_along_axis(np.where(first, count, 0), perm.astype(np.intp), axis=1)
    counts = np.where(np.arange(4) < m[:, None], counts, 0)
    ids = {sum(c << (3 * i) for i, c in enumerate(p)): n for n, p in enumerate(PATTERNS)}
    packed = (counts << (3 * np.arange(4))).sum(axis=1)
    pattern = np.array([ids.get(int(v), 0) for v in range(1 << 12)], np.uint8)[packed]
    # slot[code, j]: the candidate whose neighbour holds j's label.
    held = np.take_along_axis(holds, perm.astype(np.intp)[:, :, None], axis=1) & (np.arange(4) < m[:, None])[:, :, None]  # (code, candidate, j)
    slot = np.where(held.any(axis=1), held.argmax(axis=1), 4).astype(np.uint8)
    return pattern, perm, slot


class Tables:
    """The per-code lookup tables, built once on first use (not at import: `import kmcodec` stays fast)."""

    def __init__(self) -> None:
        self.pattern, self.perm, slot = _pattern_tables()
        self.m = PATTERN_M.astype(np.uint8)[self.pattern]  # m for each code
        # choice[group, code]: the choice context of a code in a group (as uint8; 0 where m = 1)
        choice = CHOICE_INDEX[self.pattern]
        contexts = CTX_CHOICE + len(CHOICE_PATTERNS) * np.arange(GROUPS)[:, None] + choice[None, :]
        self.choice = np.where(choice >= 0, contexts, 0).astype(np.uint8)
        # symbol[code << 4 | hits]: the candidate index of the pixel's own label, given which
        # neighbours hold it (bit j: neighbour j equals it), or m when none does.
        hits = np.arange(16)
        held = (hits[:, None] >> np.arange(4)[None, :]) & 1  # (16, 4)
        best = np.where(held[None, :, :] == 1, slot[:, None, :], 255).min(axis=2)  # (1024, 16)
        self.symbol = np.minimum(best, self.m[:, None]).astype(np.uint8).reshape(-1)
        # The decoder's tables, indexed by a raw key: bits 0-5 the 6 pair equalities of the
        # neighbours' values whether present or not, bits 6-9 which neighbours are absent.
        raw = np.arange(1024)
        present = ~(raw >> 6) & 15
        code = present.copy()
        for i, (a, b) in enumerate(PAIRS):
            code |= (raw >> i & present >> a & present >> b & 1) << (4 + i)
        self.raw_m = self.m[code]
        self.raw_perm = self.perm[code].astype(np.intp)  # (1024, 4)
        # raw_context[group, key]: the choice context, shifted to its row of the rANS table.
        choice = CHOICE_INDEX[self.pattern[code]]
        groups = np.arange(GROUPS)[:, None]
        self.raw_context = ((CTX_CHOICE + len(CHOICE_PATTERNS) * groups + choice[None, :]) << rans.PRECISION).astype(np.uint32)
        # raw_pick[key << 3 | symbol]: the neighbour holding the named candidate; for an escape
        # 4 + the neighbour holding candidate 0 (the escape's reference).
        symbols = np.arange(8)
        picked = self.raw_perm[:, np.minimum(symbols, 3)]
        named = symbols[None, :] < self.raw_m[:, None]
        self.raw_pick = np.where(named, picked, 4 + self.raw_perm[:, :1]).astype(np.uint8).reshape(-1)
        # raw_repeat[j][key]: 0 when neighbour j is present and the first holding its label,
        # else all ones, so that OR-ing it into a position removes the neighbour from the candidates.
        first = present.copy()
        for i, (a, b) in enumerate(PAIRS):
            first &= ~((code >> (4 + i) & 1) << b)
        self.raw_repeat = [np.where(first >> j & 1, 0, 0xFFFF).astype(np.uint16) for j in range(4)]

@functools.lru_cache(maxsize=1)
def code_tables() -> Tables:
    return Tables()


def choice_contexts(group: int) -> tuple[int, ...]:
    """spec §11.6: the choice contexts of a group, one per pattern with more than one candidate."""
    return tuple(range(CTX_CHOICE + len(CHOICE_PATTERNS) * group, CTX_CHOICE + len(CHOICE_PATTERNS) * (group + 1)))


def levels(width: int, height: int) -> list[int]:
    """The steps d of spec §11.2, coarsest first: 2^(S-1) ... 1 with 2^S >= max(width, height)."""
    s = (max(width, height) - 1).bit_length()
    return [1 << i for i in range(s - 1, -1, -1)]


def group(kind: str, d: int) -> int:
    """spec §11.6: 4 * (0 for pass A, 1 for B and C) + level class of d."""
    level = 0 if d == 1 else 1 if d == 2 else 2 if d <= 8 else 3
    return (0 if kind == "A" else 4) + level


@dataclass
class Pass:
    """One pass: its pixels (rows ys x columns xs, raster order) and their neighbourhoods."""

    ys: np.ndarray
    xs: np.ndarray
    neighbours: np.ndarray  # (4, n) labels; `absent` (= K) outside the image
    code: np.ndarray  # (n,) presence and pair-equality bits
    m: np.ndarray  # (n,) number of candidates
    group: int

    def choice_contexts(self, index: np.ndarray) -> np.ndarray:
        """The choice contexts (spec §11.4 item 3, uint8) of the pixels `index` (indices or a mask)."""
        return code_tables().choice[self.group].take(self.code[index])

    def candidates(self, index: np.ndarray) -> np.ndarray:
        """(len(index), 4) candidates of the pixels `index`, -1 beyond m."""
        n = self.code.size
        at = code_tables().perm.take(self.code.take(index), axis=0).astype(np.intp)  # the neighbour holding each
        at *= n
        at += index[:, None]
        out = self.neighbours.reshape(-1).take(at).astype(np.int32)
        out[np.arange(4)[None, :] >= self.m.take(index)[:, None]] = -1
        return out


def passes(width: int, height: int):
    """Yield (kind, d, ys, xs, offsets) for every pass in file order."""
    for d in levels(width, height):
        for kind, y0, x0, offsets in PASSES:
            ys = np.arange(y0 * d, height, 2 * d)
            xs = np.arange(x0 * d, width, 2 * d)
            if ys.size and xs.size:
                yield kind, d, ys, xs, offsets


def _span(first: int, count: int, step: int, size: int) -> tuple[int, int, int]:
    """Of the positions first + step*i (i < count), the range of i inside 0..size-1, and its first position."""
    i0 = -(first // step) if first < 0 else 0  # first >= -step, so at most one position is before 0
    i1 = min(count, (size - 1 - first) // step + 1)
    return i0, max(i0, i1), first + step * i0


def plane_dtype(k: int) -> np.dtype:
    """The smallest dtype holding labels 0..k-1 and the `absent` marker k."""
    return np.dtype(np.uint8 if k < 256 else np.uint16 if k < 65536 else np.uint32)


def _codes(planes: np.ndarray, absent: int) -> np.ndarray:
    """Presence bits 0-3 and pair-equality bits 4-9 (equal and both present) of (4, ...) neighbour planes."""
    present = planes != absent
    code = np.zeros(planes.shape[1:], np.uint16)
    for j in range(4):
        code |= present[j].astype(np.uint16) << j
    for i, (a, b) in enumerate(PAIRS):
        code |= ((planes[a] == planes[b]) & present[a]).astype(np.uint16) << (4 + i)
    return code


def prepare(labels: np.ndarray, kind: str, d: int, ys: np.ndarray, xs: np.ndarray, offsets, absent: int) -> Pass:
    """Neighbours, pattern and candidates of a pass, from labels decoded so far (spec §11.3-§11.4).

    Every neighbour is present away from the image's edges, so the codes are
    computed there from the 6 equalities alone, and with the full rule only on
    the strips along the edges.
    """
    height, width = labels.shape
    ny, nx = ys.size, xs.size
    planes = np.empty((4, ny, nx), plane_dtype(absent))
    inner = [0, ny, 0, nx]
    for j, (dy, dx) in enumerate(offsets):
        r0, r1, y = _span(int(ys[0]) + dy * d, ny, 2 * d, height)
        c0, c1, x = _span(int(xs[0]) + dx * d, nx, 2 * d, width)
        planes[j, r0:r1, c0:c1] = labels[y : y + 2 * d * (r1 - r0) : 2 * d, x : x + 2 * d * (c1 - c0) : 2 * d]
        planes[j, :r0] = absent
        planes[j, r1:] = absent
        planes[j, :, :c0] = absent
        planes[j, :, c1:] = absent
        inner = [max(inner[0], r0), min(inner[1], r1), max(inner[2], c0), min(inner[3], c1)]
    eq = np.zeros((ny, nx), np.uint8)
    for i, (a, b) in enumerate(PAIRS):
        eq |= (planes[a] == planes[b]).view(np.uint8) << np.uint8(i)
    code = (eq.astype(np.uint16) << np.uint16(4)) | np.uint16(15)
    r0, r1, c0, c1 = inner[0], max(inner[0], inner[1]), inner[2], max(inner[2], inner[3])
    for rows, cols in ((slice(0, r0), slice(None)), (slice(r1, ny), slice(None)), (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, nx))):
        if planes[:, rows, cols].size:
            code[rows, cols] = _codes(planes[:, rows, cols], absent)
    code = code.reshape(-1)
    return Pass(ys, xs, planes.reshape(4, -1), code, code_tables().m[code], group(kind, d))


# --- escapes: labels that are none of the candidates (spec §11.5) --------------------


class EscapeOrder:
    """For K <= 256: every palette entry's list of all entries by colour distance, and positions in it."""

    def __init__(self, palette: np.ndarray, method: int = METHOD_PACKED) -> None:
        self.k = palette.shape[0]
        self.ranked = self.k <= RANK_MAX_K
        self.mean = self.ranked and method == METHOD_PACKED  # spec §11.13: ranks count from the mean colour's entry
        self.palette = palette
        # Nearest entries of the mean colours met so far (C <= 3: one slot per colour, pages
        # touched as used). Passes B and C may finish on two threads: the lock guards it.
        self.nearest: np.ndarray | None = None
        self.fields: np.ndarray | None = None
        self.lock = threading.Lock()
        if self.ranked:
            p = palette.astype(np.int64)
            dist = ((p[:, None, :] - p[None, :, :]) ** 2).sum(axis=2)
            self.order = np.argsort(dist * self.k + np.arange(self.k)[None, :], axis=1).astype(np.int32)  # ties: lower index
            self.position = np.empty_like(self.order)
            np.put_along_axis(self.position, self.order, np.arange(self.k)[None, :], axis=1)
            # The decoder's copies in rows of 256, so a row and a column make one uint16 index.
            self.position_rows = np.zeros((self.k, 256), np.uint16)
            self.position_rows[:, : self.k] = self.position
            self.position_rows = self.position_rows.reshape(-1)
            self.order_rows = np.zeros((self.k, 256), np.uint8)
            self.order_rows[:, : self.k] = self.order
            self.order_rows = self.order_rows.reshape(-1)

    def mean_refs(self, neighbours: list[np.ndarray], present: list[np.ndarray] | None) -> np.ndarray:
        """spec §11.13: the entry nearest the rounded mean colour of the present neighbours.

        `present` None means all four are. Escapes share few distinct mean colours, so
        the nearest entry is searched once per colour, and remembered on large images.
        Works in chunks, so its temporaries stay small whatever the number of escapes.
        Only the few escapes with an absent neighbour (at the image's edges) take the
        slower mean of fewer than four.
        """
        size = neighbours[0].size
        out = np.empty(size, np.uint8)  # K <= 256: only ranked escapes have a mean reference
        for start in range(0, size, CHUNK):
            part = slice(start, min(size, start + CHUNK))
            near = [n[part] for n in neighbours]
            key = self._mean_keys(near, None)
            if present is not None:
                here = [h[part] for h in present]
                edge = np.flatnonzero(~np.logical_and.reduce(here))
                if edge.size:
                    key[edge] = self._mean_keys([n[edge] for n in near], [h[edge] for h in here])
            out[part] = self._nearest_of(key, size)
        return out

    def _mean_keys(self, neighbours: list[np.ndarray], present: list[np.ndarray] | None) -> np.ndarray:
        """The mean colours, packed with channel 0 in the top byte."""
        channels = self.palette.shape[1]
        if self.fields is None:  # each entry's channels in 16-bit fields of one integer: 4 add without carries
            self.fields = (self.palette.astype(np.int64) << (16 * np.arange(channels - 1, -1, -1))).sum(axis=1)
        total = self.fields.take(neighbours[0].astype(np.intp), mode="clip")
        if present is not None:
            total *= present[0]
        for j in range(1, 4):
            more = self.fields.take(neighbours[j].astype(np.intp), mode="clip")  # an absent one's label may be anything
            if present is not None:
                more *= present[j]
            total += more
        if present is None:  # floor((2 sum + 4) / 8) = (sum + 2) >> 2 in every field; masks drop the bits that cross
            total += 2 * (self.fields.dtype.type(1) << (16 * np.arange(channels))).sum()
            total >>= 2
            means = [(total >> (16 * c)) & 0xFF for c in range(channels - 1, -1, -1)]
        else:
            n = np.add.reduce([h.astype(np.int64) for h in present])
            means = [(2 * ((total >> (16 * c)) & 0xFFFF) + n) // (2 * n) for c in range(channels - 1, -1, -1)]
        key = means[0]
        for mean in means[1:]:
            key <<= 8
            key |= mean
        return key.astype(np.uint32)

    def _nearest_of(self, key: np.ndarray, escapes: int) -> np.ndarray:
        """The nearest entries of packed colours: searched, or from the table of those met before."""
        channels = self.palette.shape[1]
        if channels == 4 or (self.nearest is None and escapes < CACHE_MIN_ESCAPES):
            # RGBA has 2**32 colours, and a small image needs no table: one search per distinct colour here.
            unique, inverse = np.unique(key, return_inverse=True)
            return self._search(unique, channels)[inverse.reshape(-1)]
        with self.lock:
            if self.nearest is None:  # entry + 1, mod 256: 0 is "not met yet" (K = 256's entry 255 is searched each time)
                self.nearest = np.zeros(1 << (8 * channels), np.uint8)
            got = self.nearest.take(key)
            missing = np.flatnonzero(got == 0)
            got -= np.uint8(1)
            if missing.size:
                unique, inverse = np.unique(key[missing], return_inverse=True)
                found = self._search(unique, channels)
                self.nearest[unique] = (found + 1).astype(np.uint8)  # wraps to 0 for 255
                got[missing] = found[inverse.reshape(-1)]
            return got

    def _search(self, keys: np.ndarray, channels: int) -> np.ndarray:
        """The nearest entry of each packed colour (channel 0 in the top byte)."""
        colours = ((keys[:, None] >> (8 * np.arange(channels - 1, -1, -1, dtype=np.uint32))) & 255).astype(np.uint8)
        return _nearest.nearest_few(colours, self.palette)

    def ranks(self, labels: np.ndarray, cands: np.ndarray, m: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
        """Escape ranks (spec §11.5) counted from `ref` (default: candidate 0, as method 0 counts)."""
        ref = (cands[:, 0] if ref is None else ref).astype(np.int64)
        labels = labels.astype(np.int64)
        if not self.ranked:
            diff = labels - ref
            return np.where(diff >= 0, 2 * diff, -2 * diff - 1)
        row = ref << 8  # rows of 256 in position_rows
        pos = self.position_rows.take(row + labels)
        before = np.zeros(labels.size, np.uint8)
        for j in range(4):
            earlier = self.position_rows.take(row + np.maximum(cands[:, j], 0)) < pos
            earlier &= m > j
            before += earlier
        return pos.astype(np.int64) - before

    def check(self, ranks: np.ndarray, m: np.ndarray, where: str) -> None:
        """Ranked escapes: every rank below the count of non-candidates."""
        if not self.ranked:
            return
        limit = self.k - m
        if (ranks >= limit).any():
            i = int(np.argmax(ranks >= limit))
            raise SymbolRangeError(
                f"escape rank {int(ranks[i])} at {where} is not below k - candidates = {int(limit[i])}"
            )

    def labels(self, ranks: np.ndarray, ref: np.ndarray, where: str) -> np.ndarray:
        """K > 256: labels from the zigzag of their difference from candidate 0."""
        ref = ref.astype(np.int64)
        out = ref + np.where(ranks & 1, -((ranks + 1) >> 1), ranks >> 1)
        bad = (out < 0) | (out >= self.k)
        if bad.any():
            i = int(np.argmax(bad))
            raise SymbolRangeError(f"escape at {where} decodes to label {int(out[i])}, not below k={self.k}")
        return out

    def ranked_labels(self, ranks: np.ndarray, ref: np.ndarray, others: list, repeat: list) -> np.ndarray:
        """K <= 256, checked ranks: the label at rank `ranks` among the entries ordered from `ref`, skipping the candidates.

        The candidates are `ref` and the labels `others[j]`, where `repeat[j]` is 0.
        """
        row = ref.astype(np.uint16) << np.uint16(8)
        if not others:
            skip = [self.position_rows.take(row | ref)]
        else:  # the candidates' positions, sorted by a network of 5 compare-exchanges
            skip = [self.position_rows.take(row | label) | gone for label, gone in zip(others, repeat)]
            for i, j in ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)):
                skip[i], skip[j] = np.minimum(skip[i], skip[j]), np.maximum(skip[i], skip[j])
        t = ranks.astype(np.uint16)
        for s in skip:
            t += s <= t
        return self.order_rows.take(row | t)


# --- the encoder ---------------------------------------------------------------------


@dataclass
class PassSymbols:
    """One pass's share of the stream, in stream order: rANS contexts and symbols, and the extra bits."""

    contexts: list[np.ndarray]
    symbols: list[np.ndarray]
    nbits: list[np.ndarray]
    bits: list[np.ndarray]

    def counts(self) -> np.ndarray:
        """How often each (context, symbol) occurs, flat: row = context."""
        counts = np.zeros(CONTEXTS * rans.TOKENS, np.int64)
        for c, y in zip(self.contexts, self.symbols):  # part by part: no int32 copy as long as the stream
            counts += np.bincount(c.astype(np.int32) * rans.TOKENS + y, minlength=CONTEXTS * rans.TOKENS)
        return counts

    def emit(self, ctx, symbols, nbits=None, bits=None) -> None:
        symbols = np.asarray(symbols).astype(np.uint8)  # contexts < 97 and symbols < 72: a byte each
        self.contexts.append(np.broadcast_to(np.asarray(ctx).astype(np.uint8), symbols.shape))
        self.symbols.append(symbols)
        if nbits is not None:
            self.nbits.append(np.asarray(nbits).astype(np.uint8))  # at most 31
            self.bits.append(np.asarray(bits).astype(np.uint32))

    def emit_tokens(self, ctx, values) -> None:
        tokens, nbits, extra = rans.to_tokens(values)
        self.emit(ctx, tokens, nbits, extra)

    def extend(self, other: "PassSymbols") -> None:
        for mine, theirs in ((self.contexts, other.contexts), (self.symbols, other.symbols), (self.nbits, other.nbits), (self.bits, other.bits)):
            mine.extend(theirs)


@dataclass
class Band:
    """What the encoder works out for a band of rows of one pass."""

    unanimous: int  # pixels with one candidate
    missed: np.ndarray  # those that escape, as their index among the band's unanimous pixels
    choices: PassSymbols
    escapes: PassSymbols


def band_symbols(labels: np.ndarray, escapes: EscapeOrder, kind: str, d: int, ys: np.ndarray, xs: np.ndarray, offsets) -> Band:
    """Symbols of the rows `ys` of a pass (spec §11.4-§11.5)."""
    k = escapes.k
    p = prepare(labels, kind, d, ys, xs, offsets, k)
    own = labels[ys[0] : ys[-1] + 1 : 2 * d, xs[0] :: 2 * d].reshape(-1)
    hits = np.zeros(own.size, np.uint16)
    for j in range(4):
        hits |= (p.neighbours[j] == own).view(np.uint8).astype(np.uint16) << np.uint16(j)
    symbol = code_tables().symbol[(p.code << np.uint16(4)) | hits]  # the candidate index of the own label, or m
    found = symbol < p.m
    unanimous = p.m == 1
    band = Band(int(np.count_nonzero(unanimous)), np.flatnonzero(~found[unanimous]), PassSymbols([], [], [], []), PassSymbols([], [], [], []))
    choose = ~unanimous
    if choose.any():
        band.choices.emit(p.choice_contexts(choose), symbol[choose])
    esc = np.flatnonzero(~found)
    for start in range(0, esc.size, CHUNK):  # in chunks: a K = 256 photo has millions of escapes
        part = esc[start : start + CHUNK]
        ref = None
        if escapes.mean:
            near = [row[part] for row in p.neighbours]
            here = [row != k for row in near]
            ref = escapes.mean_refs(near, None if all(h.all() for h in here) else here)
        m = p.m[part]
        ranks = escapes.ranks(own[part].astype(np.int64), p.candidates(part), m, ref)
        band.escapes.emit_tokens(CTX_ESCAPE + 4 * p.group + m.astype(np.int64) - 1, ranks)
    return band


def bands(kind: str, d: int, ys: np.ndarray, xs: np.ndarray, offsets) -> list[tuple]:
    """A pass split into bands of whole rows of about BAND_PIXELS pixels, as `band_symbols` takes them.

    A 12 MP image has passes of 3 million pixels; bands keep the encoder's
    temporaries small whatever the pass.
    """
    rows = max(1, BAND_PIXELS // xs.size)
    return [(kind, d, ys[r : r + rows], xs, offsets) for r in range(0, ys.size, rows)]


def pass_symbols(parts: list[Band], group_: int) -> PassSymbols:
    """What one pass writes, from its bands, in order: escape count and gaps, choices, escape ranks."""
    out = PassSymbols([], [], [], [])
    before = np.cumsum([0] + [band.unanimous for band in parts])
    if before[-1]:
        missed = np.concatenate([band.missed + first for band, first in zip(parts, before)])
        out.emit_tokens(CTX_COUNT, [missed.size])
        out.emit_tokens(CTX_GAP + group_, np.diff(missed, prepend=-1) - 1)
    for band in parts:
        out.extend(band.choices)
    for band in parts:
        out.extend(band.escapes)
    return out


def encode_labels(labels: np.ndarray, palette: np.ndarray, method: int = METHOD_PACKED) -> bytes:
    """The coding-1 label stream for a label map (height x width, every label < K), method 2 or 0.

    The bands of all passes only read the labels, so on large images two threads
    work them out (numpy releases the GIL in large array operations); they are
    then written in file order.
    """
    height, width = labels.shape
    k = palette.shape[0]
    labels = labels.astype(label_dtype(k), copy=False)
    escapes = EscapeOrder(palette, method)
    plan = [(group(kind, d), bands(kind, d, ys, xs, offsets)) for kind, d, ys, xs, offsets in passes(width, height)]
    jobs = [job for _, pass_bands in plan for job in pass_bands]
    if width * height >= 4 * THREAD_MIN_PIXELS:
        with ThreadPoolExecutor(2) as pool:
            done = iter(list(pool.map(lambda job: band_symbols(labels, escapes, *job), jobs)))
    else:
        done = iter([band_symbols(labels, escapes, *job) for job in jobs])
    parts = [pass_symbols([next(done) for _ in pass_bands], group_) for group_, pass_bands in plan]
    counts = sum((part.counts() for part in parts), np.zeros(CONTEXTS * rans.TOKENS, np.int64)).reshape(CONTEXTS, rans.TOKENS)
    ctx_parts = [a for part in parts for a in part.contexts]
    sym_parts = [a for part in parts for a in part.symbols]
    nbit_parts = [a for part in parts for a in part.nbits]
    bit_parts = [a for part in parts for a in part.bits]
    del parts
    ctx = np.concatenate(ctx_parts) if ctx_parts else np.zeros(0, np.uint8)
    sym = np.concatenate(sym_parts) if sym_parts else np.zeros(0, np.uint8)
    ctx_parts.clear()  # the parts are in ctx and sym now
    sym_parts.clear()
    tables = np.zeros_like(counts)
    present = bytearray(PRESENT_BYTES)
    table_bytes = bytearray()
    packed = []
    for c in range(CONTEXTS):
        if counts[c].any():
            present[c >> 3] |= 1 << (c & 7)
            if method == METHOD_PACKED:
                p_bits, freqs = packed_tables.best_table(counts[c, : ALPHABETS[c]], ALPHABETS[c])
                packed.append((p_bits, freqs, ALPHABETS[c]))
                tables[c, : ALPHABETS[c]] = freqs << (rans.PRECISION - p_bits)
            else:
                tables[c] = rans.normalise(counts[c])
                rans.write_table(tables[c, : ALPHABETS[c]], table_bytes)
    if method == METHOD_PACKED:
        table_bytes = bytearray(packed_tables.write_tables(packed))
    extra = rans.pack_bits(
        np.concatenate(bit_parts) if bit_parts else np.zeros(0, np.int64),
        np.concatenate(nbit_parts) if nbit_parts else np.zeros(0, np.int64),
    )
    estimate = sum(rans.cost_bits(counts[c], tables[c]) for c in range(CONTEXTS) if counts[c].any()) / 8
    lanes = choose_lanes(sym.size, estimate)
    states, words = rans.encode(ctx, sym, tables, lanes)
    head = bytearray([method])
    head += lanes.to_bytes(2, "little") + int(labels[0, 0]).to_bytes(2, "little") + len(extra).to_bytes(4, "little")
    return b"".join([bytes(head), bytes(present), bytes(table_bytes), states.astype("<u4").tobytes(), extra, words.astype("<u2").tobytes()])


def choose_lanes(symbols: int, estimate_bytes: float) -> int:
    """More lanes decode faster (fewer numpy rounds) but cost 4 bytes each: keep them under ~2% of the stream."""
    cap = min(symbols / 1024, estimate_bytes / 200, 4096)
    lanes = 1
    while lanes * 2 <= cap:
        lanes *= 2
    return lanes


# --- the decoder ---------------------------------------------------------------------


def decode_labels(stream: memoryview, width: int, height: int, palette: np.ndarray, offset: int) -> np.ndarray:
    """Labels (height x width) from a coding-1 label stream; `offset` is its position in the file, for messages.

    Raises the coding-1 `FormatError` subclasses of spec §7 rules 10-13.
    """
    k = palette.shape[0]
    where = f"the label stream (byte {offset})"
    reader = rans.Reader(stream, f"byte {offset}")
    method = reader.u8("method")
    if method == zstd_labels.METHOD:
        return zstd_labels.decode_labels(stream, width, height, k, offset)
    if method == raster_coding.METHOD:
        return raster_coding.decode_labels(stream, width, height, palette, offset)
    if method not in METHODS:
        raise StreamStructureError(f"bad method at byte {offset}: {method}, coding 1 allows 0, 1, 2 and 3")
    lanes = reader.uint(2, "lanes")
    if lanes < 1:
        raise StreamStructureError(f"bad lanes at byte {offset + 1}: 0, allowed 1..{rans.MAX_LANES}")
    first = reader.uint(2, "first label")
    extra_bytes = reader.uint(4, "extra bytes")
    present = [reader.u8("table presence") for _ in range(PRESENT_BYTES)]
    if present[-1] >> (CONTEXTS & 7):
        raise StreamStructureError(f"bad table presence at byte {offset + HEADER_SIZE + PRESENT_BYTES - 1}: bits past context {CONTEXTS - 1} are set")
    tables: list[np.ndarray | None] = [None] * CONTEXTS
    bits_in = packed_tables.TableReader(stream, reader.pos, offset) if method == METHOD_PACKED else None
    for c in range(CONTEXTS):
        if present[c >> 3] >> (c & 7) & 1:
            tables[c] = bits_in.table(ALPHABETS[c], f"table {c}") if bits_in else read_padded(reader, ALPHABETS[c], f"table {c}")
    if bits_in:
        reader.pos = bits_in.end()
    left = len(stream) - reader.pos
    if 4 * lanes + extra_bytes > left:
        raise StreamLengthError(
            f"stream too short for its counts at byte {offset + reader.pos}: {lanes} lanes and {extra_bytes} extra bytes"
            f" need {4 * lanes + extra_bytes} bytes, {left} are left"
        )
    if (left - 4 * lanes - extra_bytes) % 2:
        raise StreamStructureError(f"bad rANS words at byte {offset + reader.pos + 4 * lanes + extra_bytes}: an odd number of bytes")
    states = np.frombuffer(stream, "<u4", lanes, reader.pos)
    if (states < rans.STATE_LOW).any():
        lane = int(np.argmax(states < rans.STATE_LOW))
        raise StreamStructureError(f"bad lane state at byte {offset + reader.pos + 4 * lane}: {int(states[lane]):#x}, must be at least {rans.STATE_LOW:#x}")
    extra_at = reader.pos + 4 * lanes
    bits = rans.BitReader(np.frombuffer(stream, np.uint8, extra_bytes, extra_at), where)
    words = np.frombuffer(stream, "<u2", offset=extra_at + extra_bytes)
    if first >= k:
        raise SymbolRangeError(f"first label {first} at byte {offset + 3} is not below k={k}")
    decoder = rans.Decoder(states, words, rans.decode_table(tables, ALPHABETS), where)
    labels = decode_levels(Symbols(decoder, bits, EscapeOrder(palette, method)), first, width, height, k)
    decoder.finish()
    bits.finish()
    return labels


@dataclass
class Symbols:
    """What a pass reads from the stream: rANS symbols, integers (tokens plus extra bits), escapes."""

    decoder: rans.Decoder
    bits: rans.BitReader
    escapes: EscapeOrder

    def integers(self, contexts: np.ndarray, possible: tuple[int, ...]) -> np.ndarray:
        """Integers coded with these contexts, each one of `possible`."""
        tokens = self.decoder.decode(contexts.astype(np.uint32) << np.uint32(rans.PRECISION), possible)
        return rans.from_tokens(tokens, self.bits.read(rans.token_extra_bits(tokens)))


def decode_levels(symbols: Symbols, first: int, width: int, height: int, k: int) -> np.ndarray:
    """The labels, level by level (spec §11.2).

    At step d, `grid` holds the labels decoded so far (y, x multiples of 2d). It
    and pass A's labels are copied into zero-padded arrays of one row length, so
    every neighbour of a pass is the same array read at a fixed offset: each pass
    works on flat, contiguous views, one slot per pixel plus a few past each row's end.

    On large images a worker thread takes the element-wise work off the reading
    (numpy releases the GIL in large array operations): it gathers each pass's
    neighbours, keys and contexts a block at a time while this thread reads the
    choices of the blocks done, finishes pass B while pass C is read (B and C
    depend only on pass A and coarser levels), and takes half of every other
    large finish. The stream itself is read in order on this thread, so errors
    come in stream order.
    """
    dtype = label_dtype(k)
    grid = np.full((1, 1), first, dtype)
    pool = ThreadPoolExecutor(1) if width * height >= 4 * THREAD_MIN_PIXELS else None
    try:
        for d in levels(width, height):
            gy, gx = grid.shape
            ay, ax = len(range(d, height, 2 * d)), len(range(d, width, 2 * d))
            row = gx + 2  # room for a neighbour one past either end of a row
            g = np.zeros((gy + 3, row), dtype)
            g[:gy, :gx] = grid
            a = np.zeros((ay + 4, row), dtype)  # pass A's labels at [1 : ay + 1, 1 : ax + 1]
            sources = {  # (array, offset) of each neighbour, in the order of spec §11.3
                "A": ((g, 0), (g, 1), (g, row), (g, row + 1)),
                "B": ((a, 1), (g, 0), (g, 1), (a, row + 1)),
                "C": ((g, 0), (a, row), (a, row + 1), (g, row)),
            }
            geometry = {}
            for kind, y0, x0, offsets in PASSES:
                ny, nx = (ay if y0 else gy), (ax if x0 else gx)
                if ny and nx:
                    geometry[kind] = Geometry(kind, d, ny, nx, row, offsets, width, height)
            fine = np.empty((gy + ay, gx + ax), dtype)
            fine[0::2, 0::2] = grid
            if "A" in geometry:
                fine[1::2, 1::2] = a[1 : ay + 1, 1 : ax + 1] = decode_pass(symbols, prepare_pass(geometry["A"], sources["A"], pool), pool)
            b, c = geometry.get("B"), geometry.get("C")
            if pool is not None and b is not None and c is not None and c.ny * c.nx >= THREAD_MIN_PIXELS:
                prepared_b = prepare_pass(b, sources["B"], pool)
                prepared_c = pool.submit(prepare_pass, c, sources["C"], pool)  # after B's gathering, then C's own
                finished_b = pool.submit(finish_pass, prepared_b, read_pass(symbols, prepared_b), symbols.escapes)
                fine[1::2, 0::2] = decode_pass(symbols, prepared_c.result(), pool)  # half of its finish waits for B's
                fine[0::2, 1::2] = finished_b.result()
            else:
                if b is not None:
                    fine[0::2, 1::2] = decode_pass(symbols, prepare_pass(b, sources["B"], pool), pool)
                if c is not None:
                    fine[1::2, 0::2] = decode_pass(symbols, prepare_pass(c, sources["C"], pool), pool)
            grid = fine
    finally:
        if pool is not None:
            pool.shutdown()
    return grid


@dataclass
class Geometry:
    """Where a pass's pixels are: ny x nx pixels stored in rows of `row` slots."""

    kind: str
    d: int
    ny: int
    nx: int
    row: int
    offsets: tuple
    width: int
    height: int

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """The slots of the pixels with an absent neighbour, and which are absent (bit j: neighbour j).

        Only the first and last row and column can have one: a neighbour is at most
        d outside the image.
        """
        _, y0, x0, _ = next(p for p in PASSES if p[0] == self.kind)
        d, ny, nx = self.d, self.ny, self.nx
        row_bits = {r: 0 for r in (0, ny - 1)}
        col_bits = {c: 0 for c in (0, nx - 1)}
        for j, (dy, dx) in enumerate(self.offsets):
            r0, r1, _ = _span((y0 + dy) * d, ny, 2 * d, self.height)
            c0, c1, _ = _span((x0 + dx) * d, nx, 2 * d, self.width)
            for r in row_bits:
                row_bits[r] |= (not r0 <= r < r1) << j
            for c in col_bits:
                col_bits[c] |= (not c0 <= c < c1) << j
        rows = [r for r, bits in row_bits.items() if bits]
        cols = [c for c, bits in col_bits.items() if bits]
        inner = np.arange(1 if 0 in rows else 0, ny - 1 if ny - 1 in rows else ny)
        slots, absent = [], []
        across = np.zeros(nx, np.uint16)  # a row's absent bits from its columns
        for c in cols:
            across[c] |= col_bits[c]
        for r in rows:
            slots.append(r * self.row + np.arange(nx))
            absent.append(across | row_bits[r])
        for c in cols:
            slots.append(inner * self.row + c)
            absent.append(np.full(inner.size, col_bits[c], np.uint16))
        if not slots:
            return np.zeros(0, np.intp), np.zeros(0, np.uint16)
        return np.concatenate(slots), np.concatenate(absent)


def raw_keys(n0: np.ndarray, n1: np.ndarray, n2: np.ndarray, n3: np.ndarray) -> np.ndarray:
    """Bits 0-5: the pair equalities of the neighbours' values (PAIRS order), as uint8."""
    nbs = (n0, n1, n2, n3)
    key = (n0 == n1).view(np.uint8)
    for i, (a, b) in enumerate(PAIRS[1:], 1):
        eq = np.equal(nbs[a], nbs[b]).view(np.uint8)
        key |= np.left_shift(eq, np.uint8(i), out=eq)
    return key


@dataclass
class Prepared:
    """A pass before its symbols are read: what the neighbours alone decide."""

    geometry: Geometry
    varied: np.ndarray | None  # per slot: the pixel has more than one candidate
    out: np.ndarray  # per slot: the label so far (a unanimous pixel's one candidate)
    choose: np.ndarray  # slots of the pixels with more than one candidate
    nb: np.ndarray | None  # their 4 neighbours' labels (4 x choose.size)
    key: np.ndarray | None  # their raw keys
    contexts: np.ndarray | None  # their choice contexts, shifted to rows of the rANS table
    blocks: list  # (start, stop, None or the Future of the worker gathering nb, key and contexts there)


@dataclass
class Read:
    """What a pass read from the stream."""

    unanimous: np.ndarray  # slots of the unanimous pixels that escape
    pick: np.ndarray | None  # per pixel to choose: raw_pick of its key and symbol
    escaped: np.ndarray  # which pixels to choose escape (indices into `choose`)
    chosen: np.ndarray  # their slots
    ranks: np.ndarray | None  # escape ranks, unanimous and chosen mixed in raster order
    at_u: np.ndarray | slice  # where in `ranks` the unanimous escapes are
    at_c: np.ndarray | slice  # where in `ranks` the chosen escapes are
    labels: np.ndarray | None  # K > 256: the escapes' labels, in raster order


def decode_pass(symbols: Symbols, prepared: Prepared, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """One pass's labels (spec §11.4-§11.5), one per slot (ny rows of `row` slots)."""
    return finish_pass(prepared, read_pass(symbols, prepared), symbols.escapes, pool)


def in_halves(pool: ThreadPoolExecutor | None, work, n: int) -> None:
    """work(0, n), as work(0, n // 2) here and work(n // 2, n) on `pool` when there is one and n is large.

    For element-wise work on a pass whose halves write disjoint parts of arrays:
    numpy releases the GIL in large array operations, so the idle core takes half.
    """
    if pool is None or n < SPLIT_MIN:
        work(0, n)
        return
    other = pool.submit(work, n // 2, n)
    try:
        work(0, n // 2)
    finally:
        other.result()


def prepare_pass(geometry: Geometry, sources, pool: ThreadPoolExecutor | None = None) -> Prepared:
    """Unanimity, candidates and choice contexts of a pass, from its neighbours (spec §11.3-§11.4).

    With a `pool`, a large pass's pixels to choose are gathered on the worker, a
    block at a time and in order, while this thread reads the choices of the
    blocks already gathered (`read_pass`).
    """
    tables = code_tables()
    ny, nx, row = geometry.ny, geometry.nx, geometry.row
    size = ny * row
    views = [array.reshape(-1)[offset : offset + size] for array, offset in sources]
    n0, n1, n2, n3 = views
    # Away from the edges a pixel is unanimous when its 4 neighbours agree.
    varied = n0 != n1
    scratch = np.empty(size, bool)
    varied |= np.not_equal(n0, n2, out=scratch)
    varied |= np.not_equal(n0, n3, out=scratch)
    varied.reshape(ny, row)[:, nx:] = False  # slots past a row's end hold no pixel
    out = n0.copy()  # a unanimous pixel's label
    edge, absent = geometry.edges()
    if edge.size:
        near = np.stack([v[edge] for v in views])
        edge_key = raw_keys(*near) | (absent << np.uint16(6))
        single = tables.raw_m[edge_key] == 1
        varied[edge] = ~single
        out[edge[single]] = near[tables.raw_perm[edge_key[single], 0], np.flatnonzero(single)]  # its one candidate
    choose = np.flatnonzero(varied)
    if not choose.size:
        return Prepared(geometry, varied, out, choose, None, None, None, [])
    nc = choose.size
    nb = np.empty((4, nc), out.dtype)  # the neighbours of the pixels to choose
    key = np.empty(nc, np.uint16)
    rows = tables.raw_context[group(geometry.kind, geometry.d)]
    contexts = np.empty(nc, rows.dtype)
    # The pixels to choose with an absent neighbour: their places in `choose`, in order, and their keys.
    kept = np.flatnonzero(varied[edge]) if edge.size else edge
    kept = kept[np.argsort(edge[kept])]
    edge_at = np.searchsorted(choose, edge[kept])
    edge_key = edge_key[kept] if edge.size else edge

    def gather(first: int, stop: int) -> None:
        for start in range(first, stop, CHUNK):  # in chunks: temporaries stay in cache
            end = min(stop, start + CHUNK)
            for j, view in enumerate(views):
                np.take(view, choose[start:end], out=nb[j, start:end], mode="clip")  # "clip": `out` unbuffered
            key[start:end] = raw_keys(*nb[:, start:end])
            np.take(rows, key[start:end], out=contexts[start:end], mode="clip")  # keys < 1024: in range
        i0, i1 = np.searchsorted(edge_at, (first, stop))  # at the edges, keys also mark the absent neighbours
        key[edge_at[i0:i1]] = edge_key[i0:i1]
        contexts[edge_at[i0:i1]] = rows.take(edge_key[i0:i1])

    if pool is None or nc < SPLIT_MIN:
        gather(0, nc)
        blocks = [(0, nc, None)]
    else:
        blocks = []
        for start in range(0, nc, SPLIT_MIN):
            stop = min(nc, start + SPLIT_MIN)
            blocks.append((start, stop, pool.submit(gather, start, stop)))
    return Prepared(geometry, varied, out, choose, nb, key, contexts, blocks)


def read_pass(symbols: Symbols, p: Prepared) -> Read:
    """A pass's part of the stream, in order: escape count and gaps, choices, escape ranks; checked as read."""
    tables = code_tables()
    geometry = p.geometry
    name = f"pass {geometry.kind} of step {geometry.d}"
    group_ = group(geometry.kind, geometry.d)
    unanimous = geometry.ny * geometry.nx - p.choose.size
    unanimous_escapes = p.choose[:0]
    if unanimous:
        count = int(symbols.integers(np.array([CTX_COUNT]), (CTX_COUNT,))[0])
        if count > unanimous:
            raise StreamLengthError(f"{name} lists {count} escapes among its {unanimous} unanimous pixels")
        if count:
            gaps = symbols.integers(np.full(count, CTX_GAP + group_), (CTX_GAP + group_,))
            at = np.cumsum(gaps + 1) - 1
            if at[-1] >= unanimous:
                raise SymbolRangeError(f"{name}: escape gap reaches pixel {int(at[-1])} of {unanimous} unanimous pixels")
            unanimous_escapes = unanimous_slots(at, p.varied, geometry)
    p.varied = None  # free what is no longer needed as soon as possible: fewer fresh pages later
    read = Read(unanimous_escapes, None, p.choose[:0], p.choose[:0], None, slice(None), slice(None), None)
    if p.choose.size:
        symbol = np.empty(p.choose.size, np.uint8)
        for start, stop, gathered in p.blocks:
            if gathered is not None:
                gathered.result()
            symbol[start:stop] = symbols.decoder.decode(p.contexts[start:stop], choice_contexts(group_))
        p.contexts = None
        read.pick = tables.raw_pick.take((p.key << 3) | symbol)
        read.escaped = np.flatnonzero(read.pick > 3)
    if unanimous_escapes.size or read.escaped.size:
        read_escapes(symbols, group_, name, p, read)
    return read


def finish_pass(p: Prepared, read: Read, escapes: EscapeOrder, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """The pass's labels from what was read: named candidates, then escapes (spec §11.5).

    With a `pool`, both steps work in two halves on two threads.
    """
    out = p.out
    nc = p.choose.size
    pick = read.pick

    def copy_named(first: int, stop: int) -> None:
        for start in range(first, stop, CHUNK):
            end = min(stop, start + CHUNK)
            chunk = np.bitwise_and(pick[start:end], np.uint8(3))  # the neighbour to copy; an escape's reference
            at = np.multiply(chunk, nc, dtype=np.intp)
            at += np.arange(start, end)
            out[p.choose[start:end]] = p.nb.reshape(-1).take(at)

    in_halves(pool, copy_named, nc)
    unanimous, escaped, chosen = read.unanimous, read.escaped, read.chosen
    if read.labels is not None:  # K > 256
        slots = np.empty(read.labels.size, np.intp)
        if unanimous.size:
            slots[read.at_u] = unanimous
        if chosen.size:
            slots[read.at_c] = chosen
        out[slots] = read.labels
    elif read.ranks is not None:
        if unanimous.size:
            out[unanimous] = escapes.ranked_labels(read.ranks[read.at_u], out.take(unanimous), [], [])
        if chosen.size:
            ranks = read.ranks[read.at_c]
            in_halves(pool, lambda first, stop: _rank_chosen(p, escaped[first:stop], chosen[first:stop], ranks[first:stop], escapes), chosen.size)
    return out.reshape(p.geometry.ny, p.geometry.row)[:, : p.geometry.nx]


def _rank_chosen(p: Prepared, escaped: np.ndarray, chosen: np.ndarray, ranks: np.ndarray, escapes: EscapeOrder) -> None:
    """The labels of escapes among the pixels to choose (K <= 256): `escaped` into `choose`, at slots `chosen`."""
    keys = p.key.take(escaped)
    others = [row.take(escaped) for row in p.nb]
    repeat = [gone.take(keys) for gone in code_tables().raw_repeat]
    if escapes.mean:  # spec §11.13; bits 6-9 of a key mark the absent neighbours
        absent = keys >> np.uint16(6)
        ref = escapes.mean_refs(others, [(absent >> np.uint16(j) & 1) == 0 for j in range(4)] if absent.any() else None)
    else:
        ref = p.out.take(chosen)  # candidate 0
    p.out[chosen] = escapes.ranked_labels(ranks, ref, others, repeat)


def unanimous_slots(at: np.ndarray, varied: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The slots of the unanimous pixels numbered `at` (in raster order)."""
    ny, nx, row = geometry.ny, geometry.nx, geometry.row
    pixels = np.flatnonzero(~varied.reshape(ny, row)[:, :nx])[at]
    return pixels + (pixels // nx) * (row - nx)


def read_escapes(symbols: Symbols, group_: int, name: str, p: Prepared, read: Read) -> None:
    """Read a pass's escape ranks (spec §11.5) into `read`, checked.

    Unanimous escapes have 1 candidate; an escape among the pixels to choose has
    those its key names. Their ranks come in raster order, both kinds mixed.
    """
    unanimous, escaped = read.unanimous, read.escaped
    chosen = read.chosen = p.choose.take(escaped)
    m_chosen = code_tables().raw_m.take(p.key.take(escaped)).astype(np.int64) if escaped.size else None
    if unanimous.size and chosen.size:
        # Two sorted runs of distinct slots: each slot's place in the merged order.
        read.at_u = np.arange(unanimous.size) + np.searchsorted(chosen, unanimous)
        read.at_c = np.arange(chosen.size) + np.searchsorted(unanimous, chosen)
        m = np.ones(unanimous.size + chosen.size, np.int64)
        m[read.at_c] = m_chosen
    else:
        m = m_chosen if chosen.size else np.ones(unanimous.size, np.int64)
    base = CTX_ESCAPE + 4 * group_
    read.ranks = symbols.integers(base + m - 1, tuple(range(base, base + 4)))
    escapes = symbols.escapes
    if escapes.ranked:
        escapes.check(ranks=read.ranks, m=m, where=name)
        return
    # K > 256: each label is its candidate 0 plus a difference, checked now (in stream order).
    ref = np.empty(m.size, p.out.dtype)
    if unanimous.size:
        ref[read.at_u] = p.out.take(unanimous)
    if chosen.size:
        ref[read.at_c] = p.nb.reshape(-1).take(code_tables().raw_perm[p.key[escaped], 0] * p.choose.size + escaped)
    read.labels = escapes.labels(read.ranks, ref, name)


def read_padded(reader: rans.Reader, alphabet: int, name: str) -> np.ndarray:
    """A frequency table widened to the token alphabet, so all contexts share one lookup layout."""
    freqs = rans.read_table(reader, alphabet, name)
    out = np.zeros(rans.TOKENS, np.int64)
    out[:alphabet] = freqs
    return out
