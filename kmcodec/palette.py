"""The palette stage: fit K colours to an image by k-means, and label every pixel.

Pure functions on arrays, no I/O. An image is an (H, W, C) uint8 array with C
in {1, 3, 4}; all channels are treated alike as one point in C-dimensional
colour space, and the objective is the total squared error (SSE) over all
pixels and channels, in 0..255 units.

How :func:`fit_palette` works
-----------------------------
1. Histogram (:func:`colour_histogram`): the U distinct colours and their
   pixel counts, in O(N) vectorised passes over the pixels. Above
   ``MAX_POINTS`` (2**15) distinct colours k-means runs on 6-bit colour-grid
   cells (``kmcodec._histogram``). Build it once and pass it instead of the
   pixels to fit many k without redoing the pixel passes.
2. If U <= k the palette is exactly the U colours (lossless, cost 0).
3. Restarts: ``n_init`` candidates on a coarse 5-bit grid of the histogram
   (at most 2**14 weighted points): Wu's variance-cut quantiser (cumulative
   colour moments) for the first, weighted greedy k-means++
   (:func:`kmeans_plusplus`) for the others, each run through Lloyd.
4. Refinement: the candidates are ranked by coarse SSE; the best few (as many
   as ``REFINE_BUDGET`` allows, so several at small k) run Lloyd on the full
   histogram and the lowest SSE wins. Then up to ``MAX_SWAPS`` swap moves
   (:func:`improve_by_swaps`) move the centre cheapest to remove into the
   cluster of largest SSE, kept only when the SSE falls: they leave the poor
   local minima that seeding alone finds on large photos. With up to ``MAX_EXACT_LLOYD`` colours
   a reduced histogram then gets Lloyd steps on the exact colours.
5. Lloyd (:func:`lloyd`) uses float32 distances and Hamerly's bounds, so after
   the first iterations only points near a Voronoi boundary are searched.
   Empty clusters are re-seeded at the point contributing the most error. It
   stops at ``max_iter``, when the squared centre shifts sum below ``tol``
   times the mean channel variance (scikit-learn's rule; a quarter of that
   in the exact-colour step, ``EXACT_TOL_SHARE``), or when no label changes.
6. Palette = centres rounded and clipped to 0..255, duplicates merged, sorted
   (:data:`PALETTE_ORDER`). For k >= ``POLISH_MIN_K``, up to
   ``POLISH_STEPS`` Lloyd steps with rounded centres on the exact histogram
   follow, kept only while the exact integer cost falls. Every distinct colour gets its exact nearest entry (ties to the
   lowest index, ``kmcodec._nearest``); unused entries are dropped, so
   k_out <= k. The cost is summed exactly in integers.

Matrix products here are thin (inner dimension C <= 4) and run in blocks that
OpenBLAS keeps on one thread (``_nearest.matmul_thin``): threads cost time on
such products, several times more on a busy machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._histogram import (
    ImageHistogram,
    colour_histogram,
    distinct_keys,
    iter_pixel_chunks,
    pack_keys,
    unpack_keys,
)
from ._nearest import matmul_thin, nearest_exact, nearest_lut, two_nearest
from .errors import ImageInputError, ParameterError
from .layout import CHANNELS, MAX_K, MIN_K

__all__ = [
    "DEFAULT_MAX_ITER",
    "DEFAULT_N_INIT",
    "DEFAULT_SEED",
    "DEFAULT_TOL",
    "PALETTE_ORDER",
    "ImageHistogram",
    "Labeller",
    "PaletteFit",
    "assign_labels",
    "colour_histogram",
    "fit_labeller",
    "fit_palette",
    "kmeans_plusplus",
    "sort_palette",
]

PALETTE_ORDER = (
    "ascending integer luma 299*R + 587*G + 114*B (the value itself for grey), "
    "then channel 0, 1, ... ascending"
)
# Defaults of the k-means settings wherever they are taken (fit_palette, encode,
# write_banded, the shared-palette fits, the CLI flags): set here only.
DEFAULT_SEED = 0
DEFAULT_N_INIT = 4
DEFAULT_MAX_ITER = 100
DEFAULT_TOL = 1e-4
# Hamerly's inter-centre bound needs a k x k distance matrix; above this k
# only the second-nearest bound is used.
MAX_K_PAIRWISE = 2048
# Lloyd steps with rounded centres on the exact histogram at the end (_labeller).
POLISH_STEPS = 3
# ... only from this k: below, rounding is a negligible share of the SSE.
POLISH_MIN_K = 64
# Refine the best few coarse candidates on the full set while
# k * points * candidates stays under this budget (at most MAX_REFINE).
REFINE_BUDGET = 1 << 23
MAX_REFINE = 3
# Swap moves (improve_by_swaps) after the refinement: at most MAX_SWAPS, fewer
# while k * points * moves would pass SWAP_BUDGET.
MAX_SWAPS = 4
SWAP_BUDGET = 1 << 23
# Up to this many distinct colours, Lloyd ends on the exact colours even when
# the histogram is reduced (the cells only speed up the early iterations).
MAX_EXACT_LLOYD = 1 << 18
# Iterations there: at least EXACT_MIN_ITER, more while k * U * iterations
# stays under EXACT_BUDGET (small images converge fully).
EXACT_MIN_ITER = 3
EXACT_BUDGET = 1 << 27
# The exact-colour step stops at this share of the cells' tolerance: with
# Hamerly's bounds its late iterations are cheap, and the last hundredths of
# a percent of SSE are what separates us from full-data k-means.
EXACT_TOL_SHARE = 0.25


@dataclass(frozen=True)
class PaletteFit:
    """A fitted palette, the exact nearest-entry label of every pixel, and the SSE.

    Attributes
    ----------
    palette : ndarray, (k_out, C) uint8
        Distinct entries, each used by at least one pixel, in
        :data:`PALETTE_ORDER`. ``k_out <= k``.
    labels : ndarray, (H, W) uint8 if k_out <= 256 else uint16
        Index of the nearest palette entry of each pixel (exact squared
        Euclidean distance, ties to the lowest index).
    cost : float
        SSE over all pixels and channels, ``sum((pixel - palette[label])**2)``
        in 0..255 units, summed exactly in integers.
    """

    palette: np.ndarray
    labels: np.ndarray
    cost: float

    @property
    def k(self) -> int:
        """k_out, the number of palette entries."""
        return self.palette.shape[0]

    @property
    def mse(self) -> float:
        """Mean squared error per sample: cost / (H * W * C)."""
        return self.cost / max(1, self.labels.size * self.palette.shape[1])


# --------------------------------------------------------------------------- checks


def _check_pixels(pixels) -> np.ndarray:
    if not isinstance(pixels, np.ndarray):
        raise ImageInputError(f"pixels: expected a numpy array, got {type(pixels).__name__}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in CHANNELS:
        raise ImageInputError(f"pixels: shape {pixels.shape}, allowed (H, W, C) with C in {CHANNELS}")
    if pixels.dtype != np.uint8:
        raise ImageInputError(f"pixels: dtype {pixels.dtype}, allowed uint8")
    if pixels.size == 0:
        raise ImageInputError(f"pixels: shape {pixels.shape} has no pixels")
    return pixels


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name}: expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ParameterError(f"{name}: {value}, allowed {allowed}")
    return int(value)


# --------------------------------------------------------------------------- ordering


def sort_palette(palette: np.ndarray) -> np.ndarray:
    """Distinct rows of ``palette`` in :data:`PALETTE_ORDER`."""
    keys = np.unique(pack_keys(palette))
    pal = unpack_keys(keys, palette.shape[1])
    if pal.shape[1] >= 3:
        luma = pal[:, :3].astype(np.int64) @ np.array([299, 587, 114])
    else:
        luma = pal[:, 0].astype(np.int64)
    order = np.lexsort([pal[:, i] for i in reversed(range(pal.shape[1]))] + [luma])
    return pal[order]


# --------------------------------------------------------------------------- seeding


def kmeans_plusplus(
    points: np.ndarray,
    k: int,
    *,
    weights: np.ndarray | None = None,
    seed: int | np.random.Generator = DEFAULT_SEED,
    n_local_trials: int | None = None,
) -> np.ndarray:
    """Choose k initial centres among ``points`` by greedy weighted k-means++.

    Like scikit-learn's ``kmeans_plusplus``: the first centre is drawn with
    probability proportional to weight, each next one among
    ``n_local_trials`` draws with probability proportional to weight times
    squared distance to the nearest chosen centre, keeping the draw that
    lowers the weighted SSE most.

    Parameters
    ----------
    points : ndarray, (n, C)
    k : int
        Number of centres, 1 <= k <= number of distinct points with weight > 0.
    weights : ndarray, (n,), optional
        Non-negative point weights (pixel counts); default all 1.
    seed : int or numpy.random.Generator, default 0
    n_local_trials : int, optional
        Draws per centre; default ``2 + int(log(k))``.

    Returns
    -------
    centres : ndarray, (k, C)
        k distinct rows of ``points``, same dtype.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ParameterError(f"points: shape {points.shape}, allowed (n, C) with n >= 1")
    n = points.shape[0]
    k = _check_int("k", k, 1, n)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(w >= 0) or not w.sum() > 0:
        raise ParameterError(f"weights: shape {w.shape}, allowed ({n},) non-negative, not all 0")
    rng = np.random.default_rng(seed)
    trials = n_local_trials if n_local_trials is not None else 2 + int(math.log(k))
    # float64 throughout: distances of near-duplicate points must not round to
    # zero and make an already chosen point drawable again.
    x = points.astype(np.float64)
    xx = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(k, dtype=np.int64)
    cum = np.cumsum(w)
    chosen[0] = min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), n - 1)
    d2 = ((x - x[chosen[0]]) ** 2).sum(axis=1)
    for i in range(1, k):
        pot = w * d2
        cum = np.cumsum(pot)
        total = cum[-1]
        if not total > 0:
            raise ParameterError(f"k: {k}, allowed at most {i} (distinct points with weight > 0)")
        cand = np.searchsorted(cum, rng.random(trials) * total, side="right")
        cand = np.minimum(cand, n - 1)
        # A draw can land on a zero-potential point only through rounding.
        cand = cand[pot[cand] > 0] if np.any(pot[cand] > 0) else np.flatnonzero(pot)[:1]
        c = x[cand]
        dc = matmul_thin(x, -2.0 * c.T)
        dc += xx[:, None]
        dc += np.einsum("ij,ij->i", c, c)
        np.maximum(dc, 0.0, out=dc)
        dc[cand, np.arange(cand.size)] = 0.0
        np.minimum(dc, d2[:, None], out=dc)
        best = int(np.argmin(np.einsum("i,ij->j", w, dc)))
        chosen[i] = cand[best]
        d2 = dc[:, best]
    return points[chosen].copy()


def wu_centres(points: np.ndarray, weights: np.ndarray, k: int, *, bits: int = 5) -> np.ndarray:
    """Wu's quantiser: split colour-grid boxes by variance, return box means.

    Cumulative moments (weight, channel sums, sum of squares) on a
    ``2**bits`` grid per channel make each box's statistics an O(2**C)
    inclusion-exclusion; the box of largest SSE is cut where the two halves'
    SSE is least, until k boxes or no box can be cut. May return fewer than
    k centres.
    """
    c = points.shape[1]
    side = 1 << bits
    cells = np.clip(points, 0, 255).astype(np.int64) >> (8 - bits)
    flat = np.ravel_multi_index(tuple(cells.T), (side,) * c)
    shape = (side + 1,) * c
    x = points.astype(np.float64)
    mom = [np.bincount(flat, weights=weights, minlength=side**c)]
    for i in range(c):
        mom.append(np.bincount(flat, weights=weights * x[:, i], minlength=side**c))
    mom.append(np.bincount(flat, weights=weights * np.einsum("ij,ij->i", x, x), minlength=side**c))
    cum = np.zeros((len(mom),) + shape)
    inner = (slice(None),) + (slice(1, None),) * c
    cum[inner] = np.stack(mom).reshape((len(mom),) + (side,) * c)
    for axis in range(1, c + 1):
        np.cumsum(cum, axis=axis, out=cum)
    corners = np.array(np.meshgrid(*([[0, 1]] * c), indexing="ij")).reshape(c, -1).T
    signs = np.where((c - corners.sum(axis=1)) % 2 == 0, 1.0, -1.0)

    def stats(lo, hi):
        # lo, hi: (c,) or (n, c) exclusive-lo / inclusive-hi corner indices.
        lo = np.atleast_2d(lo)
        hi = np.atleast_2d(hi)
        tot = 0.0
        for corner, sign in zip(corners, signs):
            idx = np.where(corner == 1, hi, lo)
            tot = tot + sign * cum[(slice(None),) + tuple(idx.T)]
        return tot  # (len(mom), n)

    def sse(st):
        w = st[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = st[-1] - (st[1:-1] ** 2).sum(axis=0) / w
        return np.where(w > 0, s, 0.0)

    boxes = [(np.zeros(c, np.int64), np.full(c, side, np.int64))]
    box_stats = [stats(*boxes[0])[:, 0]]
    box_sse = [float(sse(box_stats[0][:, None])[0])]
    best_cut: dict[int, tuple | None] = {}

    def find_cut(b):
        # Lower halves at every cut position on every axis in one gather;
        # upper halves are the box minus the lower half.
        lo, hi = boxes[b]
        his, axes, cuts = [], [], []
        for axis in range(c):
            pos = np.arange(lo[axis] + 1, hi[axis])
            h = np.repeat(hi[None], pos.size, axis=0)
            h[:, axis] = pos
            his.append(h)
            axes.append(np.full(pos.size, axis))
            cuts.append(pos)
        his = np.concatenate(his)
        if his.shape[0] == 0:
            return None
        low = stats(np.repeat(lo[None], his.shape[0], axis=0), his)
        high = box_stats[b][:, None] - low
        ok = (low[0] > 0) & (high[0] > 0)
        if not ok.any():
            return None
        s_low, s_high = sse(low), sse(high)
        tot = np.where(ok, s_low + s_high, np.inf)
        j = int(np.argmin(tot))
        return int(np.concatenate(axes)[j]), int(np.concatenate(cuts)[j]), low[:, j], high[:, j], float(s_low[j]), float(s_high[j])

    while len(boxes) < k:
        b = None
        for cand in np.argsort(box_sse, kind="stable")[::-1]:
            if box_sse[cand] <= 0:
                break
            if cand not in best_cut:
                best_cut[cand] = find_cut(cand)
            if best_cut[cand] is not None:
                b = int(cand)
                break
        if b is None:
            break
        axis, cut, st1, st2, s1, s2 = best_cut.pop(b)
        lo, hi = boxes[b]
        hi1 = hi.copy()
        hi1[axis] = cut
        lo2 = lo.copy()
        lo2[axis] = cut
        boxes[b] = (lo, hi1)
        box_stats[b], box_sse[b] = st1, s1
        boxes.append((lo2, hi))
        box_stats.append(st2)
        box_sse.append(s2)
    st = stats(np.array([bx[0] for bx in boxes]), np.array([bx[1] for bx in boxes]))
    keep = st[0] > 0
    return (st[1:-1][:, keep] / st[0][keep]).T


# --------------------------------------------------------------------------- Lloyd


def _update(labels, sums, weights, k):
    w = np.bincount(labels, weights=weights, minlength=k)
    s = np.empty((k, sums.shape[1]))
    for i in range(sums.shape[1]):
        s[:, i] = np.bincount(labels, weights=sums[:, i], minlength=k)
    return s, w


def _half_separation(centres: np.ndarray) -> np.ndarray:
    k = centres.shape[0]
    if k == 1 or k > MAX_K_PAIRWISE:
        return np.zeros(k)
    c = centres.astype(np.float64)
    cc = np.einsum("ij,ij->i", c, c)
    d = cc[:, None] + cc[None, :] - 2.0 * matmul_thin(c, c.T)
    np.fill_diagonal(d, np.inf)
    return 0.5 * np.sqrt(np.maximum(d.min(axis=1), 0.0))


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    sums: np.ndarray,
    centres: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    stop_on_rounded: bool = False,
    compute_inertia: bool = True,
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, float | None, int]:
    """Weighted Lloyd iterations with Hamerly's bounds.

    Parameters
    ----------
    points : (n, C) float, weights : (n,) float, sums : (n, C) float
        Weighted points and their exact channel sums (``points * weights``
        for single colours; exact pixel sums for grid cells).
    centres : (k, C) float
        Start centres.
    max_iter : int
    tol : float
        Absolute bound on the sum of squared centre shifts.
    stop_on_rounded : bool
        Also stop once the centres rounded to integers stop changing.
    compute_inertia : bool
        Finish with a full assignment to return labels and inertia (else None).
    bounds : (labels, upper, lower), optional
        Valid Hamerly bounds for ``centres`` (labels[i] is the nearest centre,
        upper >= its distance, lower <= the second-nearest distance), to skip
        the first full assignment.

    Returns
    -------
    centres : (k, C) float64
    labels : (n,) int64, nearest centre of each point for those centres
    inertia : float, weighted SSE of the points to ``centres``
    n_iter : int
    """
    x = points.astype(np.float32)
    k = centres.shape[0]
    centres = centres.astype(np.float64)
    if bounds is None:
        a, u, lb = two_nearest(x, centres)
    else:
        a, u, lb = (b.copy() for b in bounds)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        s, w = _update(a, sums, weights, k)
        empty = np.flatnonzero(w == 0)
        new = centres.copy()
        full = w > 0
        new[full] = s[full] / w[full, None]
        if empty.size:
            # Re-seed each empty cluster at a point contributing most error.
            err = weights * ((x - centres[a].astype(np.float32)) ** 2).sum(axis=1)
            far = np.argsort(err, kind="stable")[::-1][: empty.size]
            new[empty[: far.size]] = points[far]
        shift = np.sqrt(((new - centres) ** 2).sum(axis=1))
        rounded_same = stop_on_rounded and np.array_equal(np.rint(new), np.rint(centres))
        centres = new
        if empty.size:
            a, u, lb = two_nearest(x, centres)
            continue
        if (shift**2).sum() <= tol or rounded_same:
            break
        # Hamerly: move the bounds by the centre shifts, recompute only points
        # whose upper bound exceeds max(lower bound, half separation).
        u += shift[a]
        if k > 1:
            j1 = int(np.argmax(shift))
            m1 = shift[j1]
            m2 = np.max(np.delete(shift, j1)) if k > 1 else 0.0
            lb -= np.where(a == j1, m2, m1)
        bound = np.maximum(_half_separation(centres)[a], lb)
        cand = np.flatnonzero(u > bound)
        if cand.size:
            diff = x[cand] - centres[a[cand]].astype(np.float32)
            u[cand] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            cand = cand[u[cand] > bound[cand]]
        changed = 0
        if cand.size:
            ac, uc, lc = two_nearest(x[cand], centres)
            changed = int(np.count_nonzero(ac != a[cand]))
            a[cand] = ac
            u[cand] = uc
            lb[cand] = lc
        if changed == 0:
            break
    if not compute_inertia:
        return centres, None, None, n_iter
    a, d1, _ = two_nearest(x, centres)
    inertia = float(np.einsum("i,i,i->", weights, d1, d1))
    return centres, a, inertia, n_iter


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True, eq=False)
class Labeller:
    """A final palette and the map from colours to labels, to label pixels chunk by chunk.

    Holding this instead of the labels lets a caller label an image band by
    band (:mod:`kmcodec.banded`) with the same result as :func:`fit_palette`.

    Attributes
    ----------
    palette : ndarray, (k_out, C) uint8
        As in :class:`PaletteFit`; every entry is some colour's nearest.
    table : ndarray
        C in (1, 3): label of every packed colour key (2**(8C) entries);
        C == 4: the label of each of ``keys``.
    keys : ndarray or None
        C == 4: the sorted distinct keys ``table`` follows.
    cost : float or None
        Exact SSE, or None when the colours were not counted (the pixel pass
        that labels them must sum it).
    """

    palette: np.ndarray
    table: np.ndarray
    keys: np.ndarray | None
    cost: float | None

    def label(self, chunk: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Labels of an (n, C) uint8 chunk of pixels."""
        packed = pack_keys(chunk)
        if self.keys is None:
            return np.take(self.table, packed, out=out)
        found = self.table[np.searchsorted(self.keys, packed)]
        if out is None:
            return found
        out[:] = found
        return out

    def chunk_cost(self, chunk: np.ndarray, labels: np.ndarray) -> int:
        """Exact SSE of one labelled chunk, in integers."""
        d = chunk.astype(np.int32) - self.palette.astype(np.int32)[labels]
        return int(np.einsum("ij,ij->", d, d, dtype=np.int64))

    def fit(self, pixels: np.ndarray) -> PaletteFit:
        """Label every pixel of an (H, W, C) uint8 image: the :class:`PaletteFit`."""
        h, w, _ = pixels.shape
        labels = np.empty(h * w, dtype=self.table.dtype)
        cost = 0
        for start, chunk in iter_pixel_chunks(pixels):
            lab = self.label(chunk, out=labels[start : start + chunk.shape[0]])
            if self.cost is None:
                cost += self.chunk_cost(chunk, lab)
        return PaletteFit(palette=self.palette, labels=labels.reshape(h, w), cost=float(cost if self.cost is None else self.cost))


def _labeller_uncounted(hist: ImageHistogram, pal: np.ndarray) -> Labeller:
    """For millions of uncounted RGB colours: one lookup table; the cost comes with the pixel pass."""
    lut = nearest_lut(hist.keys, pal)
    used = np.zeros(pal.shape[0], dtype=bool)
    for i in range(0, hist.keys.size, 1 << 20):
        used[lut[hist.keys[i : i + (1 << 20)]]] = True  # every listed colour is some pixel's
    if not used.all():
        lut = (np.cumsum(used) - 1)[lut]
        pal = pal[used]
    lut = lut.astype(np.uint8 if pal.shape[0] <= 256 else np.uint16, copy=False)
    pal.flags.writeable = False
    return Labeller(pal, lut, None, None)


def _labeller(hist: ImageHistogram, palette: np.ndarray, polish: int = 0) -> Labeller:
    """Rounded palette -> sorted distinct entries, exact labels per colour, drop unused, cost.

    With ``polish`` > 0 and counted colours, up to that many Lloyd steps run on
    the exact histogram with rounded centres (exact nearest labels, centroids
    rounded), keeping the palette of lowest exact cost; they stop as soon as
    the rounded palette stops changing. This recovers what the grid
    reduction and the rounding lose.
    """
    pal = sort_palette(palette)
    if hist.counts is None and hist.channels == 3:
        return _labeller_uncounted(hist, pal)
    colours = hist.colours
    colour_labels, sq = nearest_exact(colours, pal)
    cost = int(hist.counts @ sq)
    for _ in range(polish):
        k = pal.shape[0]
        w = np.bincount(colour_labels, weights=hist.counts, minlength=k)
        s = np.stack(
            [np.bincount(colour_labels, weights=hist.counts * colours[:, i], minlength=k) for i in range(pal.shape[1])],
            axis=1,
        )
        used = w > 0
        new = sort_palette(np.clip(np.rint(s[used] / w[used, None]), 0, 255).astype(np.uint8))
        if np.array_equal(new, pal):
            break
        new_labels, new_sq = nearest_exact(colours, new)
        new_cost = int(hist.counts @ new_sq)
        if new_cost >= cost:
            break
        pal, colour_labels, sq, cost = new, new_labels, new_sq, new_cost
    used = np.zeros(pal.shape[0], dtype=bool)
    used[colour_labels] = True
    if not used.all():
        # Dropping unused entries keeps the order, so each colour's lowest
        # tied index stays its label: a renumbering, no new search.
        colour_labels = (np.cumsum(used) - 1)[colour_labels]
        pal = pal[used]
    return colour_labeller(hist.keys, pal, colour_labels, float(cost))


def colour_labeller(keys: np.ndarray, pal: np.ndarray, colour_labels: np.ndarray, cost: float | None) -> Labeller:
    """A Labeller from each distinct colour's label: a table over all keys for 1 or 3 channels.

    ``keys`` are the sorted distinct packed colours and ``colour_labels`` their
    labels; ``pal`` becomes read-only, so pass a copy of an array you keep.
    """
    pal.flags.writeable = False
    dtype = np.uint8 if pal.shape[0] <= 256 else np.uint16
    if pal.shape[1] in (1, 3):
        table = np.zeros(1 << (8 * pal.shape[1]), dtype=dtype)
        table[keys] = colour_labels
        return Labeller(pal, table, None, cost)
    return Labeller(pal, colour_labels.astype(dtype), keys, cost)


def fit_palette(
    pixels: np.ndarray | ImageHistogram,
    k: int,
    *,
    seed: int = DEFAULT_SEED,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> PaletteFit:
    """Fit a palette of at most k colours to an image by k-means (module docstring).

    Parameters
    ----------
    pixels : ndarray (H, W, C) uint8, C in {1, 3, 4}, or ImageHistogram
        The image, or its :func:`colour_histogram` to reuse across many k.
    k : int
        Palette size, 1..65536. The result may have fewer entries
        (duplicates after rounding, unused entries, or U < k colours).
    seed : int, default 0
        Seed for ``numpy.random.default_rng``; equal seeds give equal output.
    n_init : int, default 4
        Number of candidate seedings (Wu plus k-means++ restarts) tried on the
        coarse set; the best is refined on the full histogram.
    max_iter : int, default 100
        Lloyd iterations per run.
    tol : float, default 1e-4
        Stop when the sum of squared centre shifts is below
        ``tol * mean channel variance`` (scikit-learn's rule).

    Returns
    -------
    PaletteFit
    """
    hist = pixels if isinstance(pixels, ImageHistogram) else colour_histogram(_check_pixels(pixels))
    return fit_labeller(hist, k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol).fit(hist.pixels)


def fit_labeller(
    hist: ImageHistogram,
    k: int,
    *,
    seed: int = DEFAULT_SEED,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> Labeller:
    """:func:`fit_palette` up to the labels: the palette and a :class:`Labeller` for the pixels."""
    k = _check_int("k", k, MIN_K, MAX_K)
    n_init = _check_int("n_init", n_init, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ParameterError(f"tol: {tol!r}, allowed a number >= 0")
    if hist.n_colours <= k:
        return _labeller(hist, hist.colours)
    rng = np.random.default_rng(seed)
    pts, w, sums = hist.points, hist.weights, hist.sums
    mean = sums.sum(axis=0) / w.sum()
    var = np.einsum("i,ij->j", w, (pts - mean) ** 2) / w.sum()
    tol_abs = tol * float(var.mean())
    if pts.shape[0] <= k:
        # A reduction with no more cells than k (tiny max_points or huge k):
        # every cell mean is an entry; the labels are still exact per colour.
        palette = np.clip(np.rint(pts), 0, 255).astype(np.uint8)
        return _labeller(hist, palette, polish=POLISH_STEPS if k >= POLISH_MIN_K else 0)
    cp, cw, cs = hist.coarse()
    if cp.shape[0] <= k:
        cp, cw, cs = pts, w, sums
    candidates = []
    for r in range(n_init):
        if r == 0 and hist.channels in (1, 3):
            start = wu_centres(cp, cw, k)
            if start.shape[0] < k:
                extra = kmeans_plusplus(cp, k, weights=cw, seed=rng)
                start = np.concatenate([start, extra[: k - start.shape[0]]])
        else:
            start = kmeans_plusplus(cp, k, weights=cw, seed=rng)
        centres, _, inertia, _ = lloyd(cp, cw, cs, start, max_iter=max_iter, tol=tol_abs)
        candidates.append((inertia, r, centres))
    candidates.sort(key=lambda c: (c[0], c[1]))
    centres = candidates[0][2]
    if cp is not pts:
        # The coarse SSE ranks candidates only roughly: when cheap, refine the
        # best few on the full set and keep the best there.
        n_refine = min(len(candidates), max(1, REFINE_BUDGET // (k * pts.shape[0])), MAX_REFINE)
        best = None
        for _, r, start in candidates[:n_refine]:
            centres, _, inertia, _ = lloyd(
                pts, w, sums, start, max_iter=max_iter, tol=tol_abs, compute_inertia=n_refine > 1
            )
            if best is None or (n_refine > 1 and inertia < best[0]):
                best = (inertia, centres)
        centres = best[1]
    n_swaps = min(MAX_SWAPS, SWAP_BUDGET // (k * pts.shape[0]))
    if n_swaps and k > 1:
        centres = improve_by_swaps(pts, w, sums, centres, tries=n_swaps, max_iter=max_iter, tol=tol_abs)
    if hist.cell_of is not None and hist.n_colours <= MAX_EXACT_LLOYD:
        n_exact = max(EXACT_MIN_ITER, EXACT_BUDGET // (k * hist.n_colours))
        centres = _lloyd_exact_colours(hist, centres, max_iter=min(max_iter, n_exact), tol=tol_abs * EXACT_TOL_SHARE)
    palette = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    return _labeller(hist, palette, polish=POLISH_STEPS if k >= POLISH_MIN_K else 0)


def improve_by_swaps(
    points: np.ndarray, weights: np.ndarray, sums: np.ndarray, centres: np.ndarray, *, tries: int, max_iter: int, tol: float
) -> np.ndarray:
    """Escape a poor local minimum: move the centre that is cheapest to remove into the cluster of largest SSE.

    That cluster is split along its principal axis (the two new centres at its
    mean +- 0.8 standard deviations, where a normal cluster's halves have their
    means); Lloyd runs from there and the move is kept only if the SSE falls.
    A failed move tries the cluster of next largest SSE; `tries` moves at most.
    """
    x = points.astype(np.float32)
    k = centres.shape[0]
    a, d1, d2 = two_nearest(x, centres)
    inertia = float(np.einsum("i,i,i->", weights, d1, d1))
    tried: set[int] = set()
    for _ in range(tries):
        sse = np.bincount(a, weights=weights * d1 * d1, minlength=k)
        removal = np.bincount(a, weights=weights * (d2 * d2 - d1 * d1), minlength=k)
        order = [j for j in np.argsort(sse, kind="stable")[::-1] if j not in tried and sse[j] > 0]
        if not order:
            break
        split = int(order[0])
        removal[split] = np.inf
        remove = int(np.argmin(removal))
        members = a == split
        pw, px = weights[members], points[members]
        mean = pw @ px / pw.sum()
        cov = ((px - mean) * pw[:, None]).T @ (px - mean) / pw.sum()
        values, vectors = np.linalg.eigh(cov)
        delta = 0.8 * np.sqrt(max(values[-1], 0.0)) * vectors[:, -1]
        trial = centres.copy()
        trial[split], trial[remove] = mean + delta, mean - delta
        new, new_a, new_inertia, _ = lloyd(points, weights, sums, trial, max_iter=max_iter, tol=tol)
        if new_inertia < inertia:
            centres, inertia = new, new_inertia
            a, d1, d2 = two_nearest(x, centres)
            tried.clear()
        else:
            tried.add(split)
    return centres


def _lloyd_exact_colours(hist: ImageHistogram, centres: np.ndarray, *, max_iter: int, tol: float) -> np.ndarray:
    """Lloyd on the exact colours of a reduced histogram, from the cells' result.

    The cells' assignment seeds Hamerly's bounds: a colour lies within r (its
    cell box's farthest-corner distance from the cell mean) of its cell's
    point, so it inherits the cell's nearest centre with bounds widened by r,
    and only colours of cells near a Voronoi boundary are searched at first.
    """
    cells = hist.cell_of
    a_c, u_c, l_c = two_nearest(hist.points.astype(np.float32), centres)
    side = 1 << (8 - hist.bits)
    lo = np.floor(hist.points / side) * side
    far = np.maximum(hist.points - lo, lo + (side - 1) - hist.points)
    r = np.sqrt(np.einsum("ij,ij->i", far, far))
    a = a_c[cells]
    u = (u_c + r)[cells]
    lb = (l_c - r)[cells]
    x = hist.colours.astype(np.float64)
    w = hist.counts.astype(np.float64)
    unsure = np.flatnonzero(u > lb)
    if unsure.size:
        a[unsure], u[unsure], lb[unsure] = two_nearest(x[unsure].astype(np.float32), centres)
    centres, _, _, _ = lloyd(
        x, w, x * w[:, None], centres, max_iter=max_iter, tol=tol,
        compute_inertia=False, bounds=(a, u, lb),
    )
    return centres


def assign_labels(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Exact nearest palette entry of every pixel (ties to the lowest index).

    Parameters
    ----------
    pixels : ndarray, (H, W, C) uint8
    palette : ndarray, (k, C) uint8, 1 <= k <= 65536

    Returns
    -------
    labels : ndarray, (H, W) uint8 if k <= 256 else uint16
    """
    pixels = _check_pixels(pixels)
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.dtype != np.uint8 or palette.shape[1] != pixels.shape[2]:
        raise ParameterError(
            f"palette: shape {palette.shape} dtype {palette.dtype}, allowed (k, {pixels.shape[2]}) uint8"
        )
    _check_int("k", palette.shape[0], MIN_K, MAX_K)
    keys = distinct_keys(pixels)
    colour_labels, _ = nearest_exact(unpack_keys(keys, pixels.shape[2]), palette)
    return colour_labeller(keys, palette.copy(), colour_labels, 0.0).fit(pixels).labels
