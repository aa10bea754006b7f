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
# The same for a few thousand colours at a time (nearest_few): 2 MB, in cache.
FEW_BLOCK = 1 << 19
# Outputs per BLAS call (see matmul_thin).
BLAS_BLOCK = 1 << 16
# Above this many (colour, entry) pairs the grid search is faster.
BRUTE_LIMIT = 1 << 21
# Finest grid per channel count: the cell tables stay <= 2**21 entries.
MAX_GRID_BITS = {1: 8, 2: 8, 3: 7, 4: 5}
# (cell, entry) pairs tested at the coarsest level of the grid search.
START_PAIRS = 1 << 16
# Grid cell side ~ typical entry spacing / this.
GRID_SIDE_DIVISOR = 8.0
# Label whole cells at once when colours fill at least this share of them.
DENSE_FILL = 0.25
# Colours per chunk in the grid search's per-colour passes.
GRID_CHUNK = 1 << 18


def matmul_thin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a thin inner dimension (C <= 4), in single-threaded blocks.

    OpenBLAS runs a product on one thread while m*n*k <= 262144; with k <= 4,
    blocks of at most ``BLAS_BLOCK`` outputs stay below that. Threads only
    cost time on such thin products, and far more on a busy machine.
    """
    n, m = a.shape[0], b.shape[1]
    out = np.empty((n, m), dtype=np.result_type(a, b))
    rows = max(1, BLAS_BLOCK // max(1, m))
    for i in range(0, n, rows):
        np.matmul(a[i : i + rows], b, out=out[i : i + rows])
    return out


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
    if colours.shape[1] == 3 and k >= 32 and n * k > BRUTE_LIMIT:
        return _nearest_grid(colours, palette)
    return _nearest_brute(colours, palette)


def nearest_few(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Exact nearest entry of each colour, ties to the lowest index, for up to some 10**4 colours.

    Brute force in blocks that stay in cache: for so few colours the grid
    search's set-up costs more than it saves. One float32 product gives the
    score ``|p|^2 - 2 x.p`` (exact, as in the module docstring): each colour
    gets a last coordinate 1 and the palette a row of ``|p|^2``. The coding-1
    decoder searches its new mean colours this way (spec §11.13).
    """
    n, c = colours.shape
    p = palette.astype(np.float32)
    table = np.vstack([-2.0 * p.T, np.einsum("ij,ij->i", p, p)[None, :]]).astype(np.float32)
    labels = np.empty(n, np.int64)
    rows = max(1, FEW_BLOCK // palette.shape[0])
    x = np.ones((min(rows, n), c + 1), np.float32)
    for i in range(0, n, rows):
        part = colours[i : i + rows]
        x[: len(part), :c] = part
        labels[i : i + len(part)] = np.argmin(matmul_thin(x[: len(part)], table), axis=1)
    return labels


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
        score = matmul_thin(x, neg2pt)
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
        score = matmul_thin(xi, neg2ct)
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


def _coarsen(cells: np.ndarray, bits: int, to_bits: int, c: int) -> np.ndarray:
    """Keys at ``to_bits`` per channel of the cells with keys at ``bits``."""
    mask = (1 << bits) - 1
    shift = bits - to_bits
    out = np.zeros_like(cells)
    for i in range(c):
        out <<= to_bits
        out |= ((cells >> (bits * (c - 1 - i))) & mask) >> shift
    return out


def _cell_boxes(cells: np.ndarray, bits: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive integer corners (lo, hi), (n, C) each, of grid cells."""
    mask = (1 << bits) - 1
    side = 1 << (8 - bits)
    idx = np.stack([(cells >> (bits * (c - 1 - i))) & mask for i in range(c)], axis=1)
    lo = (idx * side).astype(np.int32)
    return lo, lo + np.int32(side - 1)


def _candidates(final_cells: np.ndarray, bits_final: int, pal: np.ndarray):
    """Per-cell candidate lists (CSR) for the occupied cells of the final grid.

    Entry p is dropped from a cell's list when some entry q is strictly nearer
    than p at every point of the cell's box. q is the entry whose farthest box
    corner is nearest; ``|x-p|^2 - |x-q|^2`` is linear in x, so its minimum over
    the box is at the corner picked per channel by the sign of ``q - p``. Lists
    are built coarse to fine, each cell testing only its parent's list, and
    stay in ascending entry order.

    Returns
    -------
    cells : (m,) int64 sorted cell keys; starts, counts : (m,) int64; entries : (pairs,) int64
    """
    k, c = pal.shape
    pal = pal.astype(np.int32)  # every quantity below is < 2**21
    pp = np.einsum("ij,ij->i", pal, pal)
    bits0 = int(np.clip(int(np.log2(START_PAIRS / k) // c), 1, bits_final))
    cells = np.unique(_coarsen(final_cells, bits_final, bits0, c))
    pair_cell = np.repeat(np.arange(cells.size, dtype=np.int32), k)
    pair_entry = np.tile(np.arange(k, dtype=np.int32), cells.size)
    counts = np.full(cells.size, k)
    starts = np.arange(cells.size) * k
    for bits in range(bits0, bits_final + 1):
        if bits > bits0:
            # Expand each parent's list to its occupied children.
            child = final_cells if bits == bits_final else np.unique(_coarsen(final_cells, bits_final, bits, c))
            parent = np.searchsorted(cells, _coarsen(child, bits, bits - 1, c))
            lengths = counts[parent]
            offsets = np.repeat(starts[parent] - np.cumsum(lengths) + lengths, lengths)
            pair_entry = pair_entry[offsets + np.arange(offsets.size)]
            pair_cell = np.repeat(np.arange(child.size, dtype=np.int32), lengths)
            cells = child
            counts = lengths
            starts = np.cumsum(counts) - counts
        lo, hi = _cell_boxes(cells, bits, c)
        plo = lo[pair_cell]
        phi = hi[pair_cell]
        p = pal[pair_entry]
        far = np.maximum(p - plo, phi - p)
        dmax = np.einsum("ij,ij->i", far, far)
        best = np.minimum.reduceat(dmax, starts)
        first = np.flatnonzero(dmax == best[pair_cell])
        first = first[np.r_[True, pair_cell[first[1:]] != pair_cell[first[:-1]]]]
        q = pair_entry[first][pair_cell]
        v = pal[q] - p
        corner = np.where(v >= 0, plo, phi)
        gap = pp[pair_entry] - pp[q] + 2 * np.einsum("ij,ij->i", corner, v)
        keep = gap <= 0
        pair_cell = pair_cell[keep]
        pair_entry = pair_entry[keep]
        counts = np.bincount(pair_cell, minlength=cells.size)
        starts = np.cumsum(counts) - counts
    return cells, starts, counts, pair_entry


def _grid_bits(k: int, c: int) -> int:
    spacing = 256.0 / k ** (1.0 / c)  # typical distance between entries
    side = max(1.0, spacing / GRID_SIDE_DIVISOR)
    return int(np.clip(8 - int(np.floor(np.log2(side))), 1, MAX_GRID_BITS[c]))


def _nearest_grid(colours: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest entry via per-cell candidate lists on a colour grid.

    Each occupied grid cell gets the entries that can be nearest somewhere in
    it (:func:`_candidates`); lists are in ascending entry order, so scanning
    with a strict ``<`` keeps the lowest index among ties. Sparse colours test
    their cell's list one by one; when the colours fill much of their cells
    (noise), every colour of each cell is labelled at once into a lookup table.
    """
    n, c = colours.shape
    k = palette.shape[0]
    pal = palette.astype(np.int64)
    bits = _grid_bits(k, c)
    occupied = np.zeros(1 << (c * bits), dtype=bool)
    for i in range(0, n, GRID_CHUNK):
        occupied[_cell_keys(colours[i : i + GRID_CHUNK], bits)] = True
    final_cells = np.flatnonzero(occupied).astype(np.int64)
    del occupied
    cells, starts, counts, entries = _candidates(final_cells, bits, pal)
    if n >= DENSE_FILL * cells.size * (1 << (c * (8 - bits))):
        return _label_dense(colours, pal, bits, cells, starts, counts, entries)
    position = np.zeros(1 << (c * bits), dtype=np.int32)
    position[cells] = np.arange(cells.size, dtype=np.int32)
    labels = np.empty(n, dtype=np.int64)
    sq_dist = np.empty(n, dtype=np.int64)
    pal32 = pal.astype(np.int32)
    for i in range(0, n, GRID_CHUNK):
        x = colours[i : i + GRID_CHUNK].astype(np.int32)
        pos = position[_cell_keys(colours[i : i + GRID_CHUNK], bits)]
        st = starts[pos]
        ct = counts[pos]
        best = entries[st]
        diff = x - pal32[best]
        bestd = np.einsum("ij,ij->i", diff, diff)
        # Colours in buckets of list length (1, 2], (2, 4], (4, 8], ...: each
        # bucket scans its lists padded (last entry repeated) to the bucket's width.
        lo_width = 1
        while np.any(ct > lo_width):
            hi_width = 2 * lo_width
            sel = np.flatnonzero((ct > lo_width) & (ct <= hi_width))
            if sel.size:
                xs, sts, last = x[sel], st[sel], ct[sel] - 1
                bs, bd = best[sel], bestd[sel]
                for j in range(1, min(hi_width, int(last.max()) + 1)):
                    e = entries[sts + np.minimum(j, last)]
                    diff = xs - pal32[e]
                    d = np.einsum("ij,ij->i", diff, diff)
                    better = d < bd
                    bd[better] = d[better]
                    bs[better] = e[better]
                best[sel] = bs
                bestd[sel] = bd
            lo_width = hi_width
        labels[i : i + GRID_CHUNK] = best
        sq_dist[i : i + GRID_CHUNK] = bestd
    return labels, sq_dist


def _label_dense(colours, pal, bits, cells, starts, counts, entries):
    """Label every colour of every occupied cell into a lookup table, then gather."""
    from ._histogram import pack_keys

    lut = _fill_lut(pal, bits, cells, starts, counts, entries)
    labels = np.empty(colours.shape[0], dtype=np.int64)
    sq_dist = np.empty(colours.shape[0], dtype=np.int64)
    pal32 = pal.astype(np.int32)
    for i in range(0, colours.shape[0], GRID_CHUNK):
        chunk = colours[i : i + GRID_CHUNK]
        lab = lut[pack_keys(chunk)]
        diff = chunk.astype(np.int32) - pal32[lab]
        labels[i : i + GRID_CHUNK] = lab
        sq_dist[i : i + GRID_CHUNK] = np.einsum("ij,ij->i", diff, diff)
    return labels, sq_dist


def nearest_lut(keys: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Lookup table over all 2**24 RGB keys, exact for every key listed in ``keys``.

    For images with millions of distinct colours: labels whole grid cells at
    once (:func:`_fill_lut`) instead of colour by colour. Entries of keys not
    listed are unspecified. The table is uint8 for k <= 256, else uint16.
    """
    k, c = palette.shape
    pal = palette.astype(np.int64)
    bits = _grid_bits(k, c)
    occupied = np.zeros(1 << (c * bits), dtype=bool)
    shift = 8 - bits
    for i in range(0, keys.size, GRID_CHUNK):
        kk = keys[i : i + GRID_CHUNK]
        cell = (kk >> (16 + shift)) << (2 * bits)
        cell |= ((kk >> (8 + shift)) & ((1 << bits) - 1)) << bits
        cell |= (kk >> shift) & ((1 << bits) - 1)
        occupied[cell] = True
    final_cells = np.flatnonzero(occupied).astype(np.int64)
    del occupied
    return _fill_lut(pal, bits, *_candidates(final_cells, bits, pal))


def _fill_lut(pal, bits, cells, starts, counts, entries):
    """Label every colour of every listed cell into a 2**(8C) lookup table.

    Cells are grouped by list length m; for a group the scores of all its
    colours against list slot j form one (colours per cell, cells) float32
    matrix product, exact as in the module docstring.
    """
    c = pal.shape[1]
    k = pal.shape[0]
    side = 1 << (8 - bits)
    grid = np.indices((side,) * c).reshape(c, -1).T  # (S, C) offsets in a cell
    off_keys = grid @ (1 << (8 * np.arange(c - 1, -1, -1)))
    lo, _ = _cell_boxes(cells, bits, c)
    base_keys = lo @ (1 << (8 * np.arange(c - 1, -1, -1)))
    dtype = np.uint8 if k <= 256 else np.uint16
    lut = np.zeros(1 << (8 * c), dtype=dtype)
    one = np.flatnonzero(counts == 1)
    step = max(1, BLOCK // 4 // grid.shape[0])
    for g0 in range(0, one.size, step):
        # One candidate: the whole cell takes it.
        g = one[g0 : g0 + step]
        lut[(base_keys[g][:, None] + off_keys[None, :]).reshape(-1)] = np.repeat(
            entries[starts[g]].astype(dtype), grid.shape[0]
        )
    palf = pal.astype(np.float32)
    pp = np.einsum("ij,ij->i", palf, palf)
    gridf = grid.astype(np.float32)
    many = np.flatnonzero(counts > 1)
    step = max(1, BLOCK // 4 // grid.shape[0])
    order = many[np.argsort(counts[many], kind="stable")]
    for g0 in range(0, order.size, step):
        g = order[g0 : g0 + step]
        m = int(counts[g].max())
        last = counts[g] - 1
        los = lo[g].astype(np.float32)
        best = None
        for j in range(m):
            e = entries[starts[g] + np.minimum(j, last)]
            pe = palf[e]  # (G, C)
            # score (S, G) = |p|^2 - 2 (lo + off).p
            score = matmul_thin(gridf, -2.0 * pe.T)
            score += pp[e] - 2.0 * np.einsum("ij,ij->i", los, pe)
            if best is None:
                best, bestd = np.broadcast_to(e, score.shape).copy(), score
            else:
                better = score < bestd
                np.copyto(bestd, score, where=better)
                np.copyto(best, np.broadcast_to(e, score.shape), where=better)
        lut[(base_keys[g][None, :] + off_keys[:, None]).reshape(-1)] = best.reshape(-1)
    return lut
