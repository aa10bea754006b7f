"""Nearest-centre search: exact for uint8 palettes, bounded memory, float32 BLAS.

For integer colours x and palette entries p (0..255, C <= 4 channels) the
score ``|p|^2 - 2 x.p`` is an integer of magnitude below 2**20, so float32
matrix products compute it exactly: every product and partial sum is an
integer below 2**24. Argmin on exact scores is the exact squared-Euclidean
nearest entry, ties to the lowest index (numpy's argmin returns the first).
"""

from __future__ import annotations

import numpy as np

# Elements of the (points x centres) score block per chunk: 16 MB of float32.
BLOCK = 1 << 22
# Above this many (colour, entry) pairs the grid search is faster.
BRUTE_LIMIT = 1 << 21
# Finest grid per channel count: the cell tables stay <= 2**21 entries.
MAX_GRID_BITS = {1: 8, 2: 8, 3: 7, 4: 5}
# Colours per chunk in the grid search's per-colour passes.
GRID_CHUNK = 1 << 18


def _chunk_rows(k: int) -> int:
    return max(256, BLOCK // max(1, k))


def nearest_exact(colours: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest palette entry of each colour, and the squared distance.

    Brute force for small problems, else the grid search of :func:`_nearest_grid`.

    Parameters
    ----------
    colours : ndarray, (n, C) uint8
    palette : ndarray, (k, C) uint8

    Returns
    -------
    labels : ndarray, (n,) int64
        Index of the nearest entry; ties go to the lowest index.
    sq_dist : ndarray, (n,) int64
        Squared Euclidean distance to that entry, in 0..255 units.
    """
    n = colours.shape[0]
    k = palette.shape[0]
    if k > 8 and n * k > BRUTE_LIMIT:
        return _nearest_grid(colours, palette)
    return _nearest_brute(colours, palette)


def _nearest_brute(colours: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = colours.shape[0]
    k = palette.shape[0]
    labels = np.empty(n, dtype=np.int64)
    sq_dist = np.empty(n, dtype=np.int64)
    if k == 1:
        labels[:] = 0
        diff = colours.astype(np.int32) - palette[0].astype(np.int32)
        np.einsum("ij,ij->i", diff, diff, out=sq_dist, casting="unsafe")
        return labels, sq_dist
    p = palette.astype(np.float32)
    neg2pt = np.ascontiguousarray(-2.0 * p.T)
    pp = np.einsum("ij,ij->i", p, p)
    step = _chunk_rows(k)
    for i in range(0, n, step):
        x = colours[i : i + step].astype(np.float32)
        score = x @ neg2pt
        score += pp
        lab = np.argmin(score, axis=1)
        labels[i : i + step] = lab
        best = np.take_along_axis(score, lab[:, None], axis=1)[:, 0]
        sq_dist[i : i + step] = best.astype(np.int64) + np.einsum("ij,ij->i", x, x).astype(np.int64)
    return labels, sq_dist


def two_nearest(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest distances (float32 Lloyd assignment).

    Parameters
    ----------
    x : ndarray, (n, C) float32
    centres : ndarray, (k, C)

    Returns
    -------
    labels : (n,) int64, d1 : (n,) float64, d2 : (n,) float64
        The nearest index, and the distances (not squared) to the nearest
        and second-nearest centre (inf when k == 1).
    """
    n = x.shape[0]
    k = centres.shape[0]
    c = centres.astype(np.float32)
    neg2ct = np.ascontiguousarray(-2.0 * c.T)
    cc = np.einsum("ij,ij->i", c, c)
    labels = np.empty(n, dtype=np.int64)
    d1 = np.empty(n)
    d2 = np.empty(n)
    step = _chunk_rows(k)
    rows = np.arange(min(step, n))
    for i in range(0, n, step):
        xi = x[i : i + step]
        r = rows[: xi.shape[0]]
        score = xi @ neg2ct
        score += cc
        lab = np.argmin(score, axis=1)
        xx = np.einsum("ij,ij->i", xi, xi)
        labels[i : i + step] = lab
        d1[i : i + step] = score[r, lab] + xx
        if k > 1:
            score[r, lab] = np.inf
            d2[i : i + step] = score.min(axis=1) + xx
        else:
            d2[i : i + step] = np.inf
    np.maximum(d1, 0.0, out=d1)
    np.maximum(d2, 0.0, out=d2)
    return labels, np.sqrt(d1, out=d1), np.sqrt(d2, out=d2)


def _cell_keys(colours: np.ndarray, bits: int) -> np.ndarray:
    shift = 8 - bits
    keys = (colours[:, 0] >> shift).astype(np.int32)
    for i in range(1, colours.shape[1]):
        keys <<= bits
        keys |= colours[:, i] >> shift
    return keys


def _cell_boxes(cells: np.ndarray, bits: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive integer corners (lo, hi), (n, C) each, of grid cells."""
    mask = (1 << bits) - 1
    side = 1 << (8 - bits)
    idx = np.stack([(cells >> (bits * (c - 1 - i))) & mask for i in range(c)], axis=1)
    lo = idx * side
    return lo, lo + (side - 1)


def _nearest_grid(colours: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest entry via per-cell candidate lists on a colour grid.

    Every grid cell occupied by a colour gets the list of entries that can be
    nearest to some point of the cell: those whose distance to the cell's box
    is at most T, the least over entries of the distance to the box's farthest
    corner (any point of the box is within T of that entry). Lists are built
    coarse to fine, each cell testing only its parent's list, and stay in
    ascending entry order, so scanning a list with a strict ``<`` keeps the
    lowest index among ties. Each colour then tests only its cell's list.
    """
    n, c = colours.shape
    k = palette.shape[0]
    pal = palette.astype(np.int32)
    spacing = 256.0 / k ** (1.0 / c)  # typical distance between entries
    side = max(1.0, spacing / 4.0)
    bits_final = int(np.clip(8 - int(np.floor(np.log2(side))), 1, MAX_GRID_BITS[c]))
    bits0 = int(np.clip(int(np.log2(BLOCK / k) // c), 1, bits_final))

    occupied = np.zeros(1 << (c * bits_final), dtype=bool)
    for i in range(0, n, GRID_CHUNK):
        occupied[_cell_keys(colours[i : i + GRID_CHUNK], bits_final)] = True
    final_cells = np.flatnonzero(occupied).astype(np.int64)
    del occupied

    cells = np.unique(final_cells >> (c * (bits_final - bits0)))
    pair_cell = np.repeat(np.arange(cells.size), k)
    pair_entry = np.tile(np.arange(k), cells.size)
    for bits in range(bits0, bits_final + 1):
        if bits > bits0:
            # Expand each parent's list to its occupied children.
            child = np.unique(final_cells >> (c * (bits_final - bits)))
            parent = np.searchsorted(cells, child >> c)
            lengths = counts[parent]
            offsets = np.repeat(starts[parent] - np.cumsum(lengths) + lengths, lengths)
            pair_entry = pair_entry[offsets + np.arange(offsets.size)]
            pair_cell = np.repeat(np.arange(child.size), lengths)
            cells = child
        lo, hi = _cell_boxes(cells, bits, c)
        p = pal[pair_entry]
        plo = lo[pair_cell] - p
        phi = p - hi[pair_cell]
        dmin = (np.maximum(plo, 0) + np.maximum(phi, 0)) ** 2
        dmax = np.maximum(-plo, -phi) ** 2
        dmin = dmin.sum(axis=1)
        dmax = dmax.sum(axis=1)
        counts = np.bincount(pair_cell, minlength=cells.size)
        starts = np.cumsum(counts) - counts
        bound = np.minimum.reduceat(dmax, starts)
        keep = dmin <= bound[pair_cell]
        pair_cell = pair_cell[keep]
        pair_entry = pair_entry[keep]
        counts = np.bincount(pair_cell, minlength=cells.size)
        starts = np.cumsum(counts) - counts

    position = np.zeros(1 << (c * bits_final), dtype=np.int32)
    position[cells] = np.arange(cells.size, dtype=np.int32)
    labels = np.empty(n, dtype=np.int64)
    sq_dist = np.empty(n, dtype=np.int64)
    entries = pair_entry.astype(np.int32)
    for i in range(0, n, GRID_CHUNK):
        x = colours[i : i + GRID_CHUNK].astype(np.int32)
        pos = position[_cell_keys(colours[i : i + GRID_CHUNK], bits_final)]
        st = starts[pos]
        ct = counts[pos]
        best = entries[st]
        diff = x - pal[best]
        bestd = np.einsum("ij,ij->i", diff, diff)
        width = 1
        while True:
            sel = np.flatnonzero(ct > width)
            if sel.size == 0:
                break
            width = min(2 * width, int(ct[sel].max()))
            xs, sts, cts = x[sel], st[sel], ct[sel]
            bs, bd = best[sel], bestd[sel]
            for j in range(1, width):
                e = entries[sts + np.minimum(j, cts - 1)]
                diff = xs - pal[e]
                d = np.einsum("ij,ij->i", diff, diff)
                better = d < bd
                bd = np.where(better, d, bd)
                bs = np.where(better, e, bs)
            best[sel] = bs
            bestd[sel] = bd
            break
        labels[i : i + GRID_CHUNK] = best
        sq_dist[i : i + GRID_CHUNK] = bestd
    return labels, sq_dist
