"""The colour histogram that k-means runs on, built in O(N) passes over the pixels.

An image of N pixels has U distinct colours, usually U << N. The palette stage
only ever needs the distinct colours, how many pixels have each, and, at the
very end, a way back from pixels to colours. This module computes those once,
so a caller fitting many K on one image pays for the pixel passes only once.

Colours are packed into uint32 keys, channel 0 in the highest used byte:

=========  ================================  ====================================
channels   key                               distinct-colour search
=========  ================================  ====================================
1          ``v``                             256-entry table
3          ``r << 16 | g << 8 | b``          2**24-entry uint8 table (16 MB)
4          ``r << 24 | g << 16 | b << 8 | a``  sort (``np.unique``)
=========  ================================  ====================================

For 1 or 3 channels, counting (U <= ``MAX_COUNTED``) then goes through a
uint32 colour -> index table (64 MB for RGB, freed at once) and one
``np.bincount`` per chunk; no int64 table of 2**24 entries is ever made.

When U exceeds ``max_points`` (noisy images, huge photos) k-means runs on a
reduction instead: pixels are grouped into cells of a colour grid with
``bits`` bits per channel (6, or fewer while there are still too many occupied
cells) and each cell becomes one point at its pixels' mean colour, weighted by
its pixel count. Lloyd's centroid update uses the cells' exact channel sums,
so a cell contributes exactly what its pixels would; only the assignment is
per cell rather than per pixel. The final labels are still exact per colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._mapped import iter_row_bands

# Rows of pixels per chunk in the pixel passes: bounds the temporaries
# (keys, gathers) to a few MB whatever the image size.
CHUNK_PIXELS = 1 << 18
# Above this many distinct colours k-means runs on grid cells (module docstring).
MAX_POINTS = 1 << 15
# Up to this many distinct colours (1 or 3 channels) each is counted exactly
# even when k-means runs on the reduction: it makes the cost a dot product.
MAX_COUNTED = 1 << 22
# Grid for the reduction: start here and go coarser while too many cells.
REDUCE_BITS = 6
# Grid of the coarse set that cheap restarts run on.
COARSE_BITS = 5
COARSE_MAX_POINTS = 1 << 14
COARSE_MIN_POINTS = 1 << 12


def pack_keys(pixels: np.ndarray) -> np.ndarray:
    """Pack an (..., C) uint8 array into uint32 keys, channel 0 most significant."""
    c = pixels.shape[-1]
    keys = pixels[..., 0].astype(np.uint32)
    for i in range(1, c):
        keys <<= 8
        keys |= pixels[..., i]
    return keys.reshape(-1)


def unpack_keys(keys: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pack_keys`: (U,) keys -> (U, C) uint8 colours."""
    keys = np.asarray(keys, dtype=np.uint32)
    out = np.empty((keys.size, channels), dtype=np.uint8)
    for i in range(channels):
        out[:, i] = keys >> np.uint32(8 * (channels - 1 - i))
    return out


def iter_pixel_chunks(pixels: np.ndarray):
    """Yield (start, flat (n, C) chunk) over the pixels in row order, no copies.

    A memory-mapped image's pages are released after each chunk, so a pass
    over an image larger than memory stays small (:mod:`kmcodec._mapped`).
    """
    h, w, c = pixels.shape
    rows = max(1, CHUNK_PIXELS // max(1, w))
    for y, block in iter_row_bands(pixels, rows):
        yield y * w, block.reshape(-1, c)


def cell_keys(colours: np.ndarray, bits: int) -> np.ndarray:
    """Grid cell of each (n, C) colour (uint8 or float in 0..255) at ``bits``/channel."""
    c = colours.shape[-1]
    shift = 8 - bits
    if colours.dtype != np.uint8:
        colours = np.clip(colours, 0, 255).astype(np.uint8)  # floor
    keys = (colours[:, 0] >> shift).astype(np.int64)
    for i in range(1, c):
        keys <<= bits
        keys |= colours[:, i] >> shift
    return keys


@dataclass(frozen=True, eq=False)
class ImageHistogram:
    """The distinct colours of one image and the weighted points k-means runs on.

    Build it with :func:`colour_histogram`; pass it to
    :func:`kmcodec.palette.fit_palette` in place of the pixels to fit several K
    without redoing the pixel passes. It keeps the image, to label its pixels
    at the end; the mergeable counts of a set of images, with no image, are
    :class:`kmcodec.ColourHistogram`.

    Attributes
    ----------
    pixels : ndarray, (H, W, C) uint8
        The image itself (a reference, not a copy; do not modify it).
    keys : ndarray, (U,) uint32
        The distinct colours, packed (module docstring) and sorted.
    counts : ndarray, (U,) int64 or None
        Pixels per distinct colour; None when U > ``MAX_COUNTED`` for 1 or 3
        channels (not counted, to bound memory on noise-like images).
    points : ndarray, (M, C) float64
        The points k-means runs on: the distinct colours, or cell means.
    weights : ndarray, (M,) float64
        Pixels per point (integers stored as float for ``np.bincount``).
    sums : ndarray, (M, C) float64
        Exact channel sums of each point's pixels (``points * weights``).
    bits : int or None
        Grid bits per channel of the reduction, None when exact.
    cell_of : ndarray, (U,) int32 or None
        For a reduction of counted colours, the point (cell) of each colour.
    """

    pixels: np.ndarray
    keys: np.ndarray
    counts: np.ndarray | None
    points: np.ndarray
    weights: np.ndarray
    sums: np.ndarray
    bits: int | None
    cell_of: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def n_pixels(self) -> int:
        return self.pixels.shape[0] * self.pixels.shape[1]

    @property
    def n_colours(self) -> int:
        """U, the number of distinct colours in the image."""
        return self.keys.size

    @property
    def is_reduced(self) -> bool:
        return self.bits is not None

    @property
    def colours(self) -> np.ndarray:
        """The distinct colours, (U, C) uint8, in key order."""
        return unpack_keys(self.keys, self.channels)

    def coarse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points, weights, sums) on a coarser grid, for cheap restarts.

        Cells of ``COARSE_BITS`` bits per channel (fewer while there are more
        than ``COARSE_MAX_POINTS``); the points themselves when there are at
        most ``COARSE_MIN_POINTS``.
        """
        if self.points.shape[0] <= COARSE_MIN_POINTS:
            return self.points, self.weights, self.sums
        bits = COARSE_BITS
        while True:
            pts, w, s = _group(cell_keys(self.points, bits), self.weights, self.sums)
            if pts.shape[0] <= COARSE_MAX_POINTS or bits == 1:
                return pts, w, s
            bits -= 1


def _group(cells: np.ndarray, weights: np.ndarray, sums: np.ndarray):
    """Merge points that share a cell: (points, weights, sums) per occupied cell."""
    uniq, inv = np.unique(cells, return_inverse=True)
    m = uniq.size
    w = np.bincount(inv, weights=weights, minlength=m)
    s = np.empty((m, sums.shape[1]))
    for i in range(sums.shape[1]):
        s[:, i] = np.bincount(inv, weights=sums[:, i], minlength=m)
    return s / w[:, None], w, s


def _present(table: np.ndarray) -> np.ndarray:
    """Sorted uint32 indices of the non-zero entries of a presence table."""
    # In slices, so the int64 index array never exceeds one slice.
    step = 1 << 20
    return np.concatenate(
        [np.flatnonzero(table[i : i + step]).astype(np.uint32) + np.uint32(i) for i in range(0, table.size, step)]
    )


def _distinct_by_table(pixels: np.ndarray, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the 2**(8C) presence table they came from, C in (1, 3)."""
    table = np.zeros(1 << (8 * pixels.shape[2]), dtype=dtype)
    for _, chunk in iter_pixel_chunks(pixels):
        table[pack_keys(chunk)] = 1
    return _present(table), table


def distinct_keys(pixels: np.ndarray) -> np.ndarray:
    """Sorted packed keys of the distinct colours of an (H, W, C) uint8 image."""
    if pixels.shape[2] in (1, 3):
        return _distinct_by_table(pixels)[0]
    return np.unique(pack_keys(pixels))


def _reduce_colours(colours: np.ndarray, counts: np.ndarray, max_points: int):
    """Grid reduction from the counted distinct colours."""
    bits = REDUCE_BITS
    while True:
        uniq, inv = np.unique(cell_keys(colours, bits), return_inverse=True)
        if uniq.size <= max_points or bits == 1:
            break
        bits -= 1
    w = np.bincount(inv, weights=counts, minlength=uniq.size)
    s = np.empty((uniq.size, colours.shape[1]))
    for i in range(colours.shape[1]):
        s[:, i] = np.bincount(inv, weights=counts * colours[:, i], minlength=uniq.size)
    return s / w[:, None], w, s, bits, inv.astype(np.int32)


def _reduce_pixels(pixels: np.ndarray, max_points: int):
    """Grid reduction straight from the pixels, when counting each colour would cost too much memory (C in 1, 3)."""
    c = pixels.shape[2]
    bits = REDUCE_BITS
    while True:
        ncells = 1 << (bits * c)
        w = np.zeros(ncells)
        s = np.zeros((ncells, c))
        for _, chunk in iter_pixel_chunks(pixels):
            ck = cell_keys(chunk, bits)
            w += np.bincount(ck, minlength=ncells)
            for i in range(c):
                s[:, i] += np.bincount(ck, weights=chunk[:, i], minlength=ncells)
        occ = np.flatnonzero(w)
        w, s = w[occ], s[occ]
        if w.size <= max_points or bits == 1:
            return s / w[:, None], w, s, bits
        bits -= 1


def count_colours(pixels: np.ndarray, *, max_counted: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted packed keys of the distinct colours and their pixel counts.

    For 1 or 3 channels the counts are None when there are more than
    ``max_counted`` distinct colours (None: always counted).
    """
    c = pixels.shape[2]
    if c not in (1, 3):
        return np.unique(pack_keys(pixels), return_counts=True)
    # A uint8 presence table first (a uint32 one is slower to scatter
    # into and scan), then a uint32 colour -> index table for counting.
    keys, _ = _distinct_by_table(pixels)
    u = keys.size
    if max_counted is not None and u > max_counted:
        return keys, None
    index = np.zeros(1 << (8 * c), dtype=np.uint32)
    index[keys] = np.arange(u, dtype=np.uint32)
    counts = np.zeros(u, dtype=np.int64)
    for _, chunk in iter_pixel_chunks(pixels):
        counts += np.bincount(index[pack_keys(chunk)], minlength=u)
    return keys, counts


def colour_histogram(pixels: np.ndarray, *, max_points: int | None = MAX_POINTS) -> ImageHistogram:
    """Count the distinct colours of an image (the O(N) part of palette fitting).

    Parameters
    ----------
    pixels : ndarray, (H, W, C) uint8, C in {1, 3, 4}
        The image.
    max_points : int or None, default 2**17
        Above this many distinct colours k-means runs on a colour-grid
        reduction (module docstring); None never reduces.

    Returns
    -------
    ImageHistogram
    """
    keys, counts = count_colours(pixels, max_counted=None if max_points is None else MAX_COUNTED)
    return histogram_from_counts(pixels, keys, counts, max_points=max_points)


def histogram_from_counts(
    pixels: np.ndarray, keys: np.ndarray, counts: np.ndarray | None, *, max_points: int | None = MAX_POINTS
) -> ImageHistogram:
    """The :class:`ImageHistogram` of ``pixels`` from its :func:`count_colours`."""
    c = pixels.shape[2]
    cell_of = None
    if max_points is None or keys.size <= max_points:
        points = unpack_keys(keys, c).astype(np.float64)
        weights = counts.astype(np.float64)
        sums = points * weights[:, None]
        bits = None
    elif counts is not None:
        points, weights, sums, bits, cell_of = _reduce_colours(unpack_keys(keys, c), counts, max_points)
    else:
        points, weights, sums, bits = _reduce_pixels(pixels, max_points)
    for a in (keys, points, weights, sums):
        a.flags.writeable = False
    return ImageHistogram(pixels, keys, counts, points, weights, sums, bits, cell_of)
