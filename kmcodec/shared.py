"""One palette for many images: mergeable colour histograms and the fit on them.

A shared palette is a map-reduce over a set of images:

1. map: :meth:`ColourHistogram.from_image` counts each image's distinct colours;
2. reduce: ``h1 + h2`` (or :meth:`ColourHistogram.merge`) adds the counts;
3. fit: :func:`fit_histogram` runs the one k-means of :mod:`kmcodec.palette`
   on the merged counts;
4. map: every image is labelled against the palette
   (``kmcodec.encode(image, palette=P)``, :mod:`kmcodec.fixed_palette`).

The merge is exact (integer counts per packed colour, kept sorted), so it is
associative and commutative: any split of the set, merged in any order, gives
the same histogram and so the same palette for the same seed. A histogram is a
plain value (channels, keys, counts) that pickles, so any engine can run the
map and the reduce; :mod:`kmcodec.dask_shared` is the Dask adapter.

Images of different channel counts merge by widening the narrower one exactly
(grey -> RGB as R = G = B, no alpha -> alpha 255), as the encoder would read
them; a fit on the merged histogram has the widest channel count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image

from . import _histogram
from .errors import ImageInputError, ParameterError
from .layout import channels_text
from .palette import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SEED, DEFAULT_TOL, fit_palette
from .pixels import Pixels, to_pixels

# Channel widening of packed keys (module docstring): (from, to) -> key map.
_WIDEN = {
    (1, 3): lambda k: k * np.uint32(0x010101),
    (1, 4): lambda k: (k * np.uint32(0x01010100)) | np.uint32(0xFF),
    (3, 4): lambda k: (k << np.uint32(8)) | np.uint32(0xFF),
}
# fit_shared_palette merges buffered histograms once they hold as many
# colours as the running total (at least this many): amortised O(total log).
MIN_MERGE_COLOURS = 1 << 20


def _check_widening(channels: int, to: int) -> None:
    """Refuse a channel change that is not an exact widening (_WIDEN): pixels and histograms alike."""
    if (channels, to) not in _WIDEN:
        raise ParameterError(f"cannot widen {channels_text(channels)} channels to {channels_text(to)}")


def image_pixels(image: "np.ndarray | Image.Image | str | os.PathLike[str] | Pixels") -> Pixels:
    """An array, Pillow image, path or Pixels as encoder input (paths read at the edge)."""
    if isinstance(image, Pixels):
        return image
    if isinstance(image, (str, os.PathLike)):
        from .files import load_image  # files imports the codec, which imports this module lazily

        return load_image(image)
    return to_pixels(image)


def widen_pixels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) uint8 widened exactly to ``channels`` (grey -> RGB, alpha 255 added)."""
    c = pixels.shape[2]
    if c == channels:
        return pixels
    _check_widening(c, channels)
    out = np.empty(pixels.shape[:2] + (channels,), np.uint8)
    out[:, :, :3] = pixels[:, :, :1] if c == 1 else pixels[:, :, :3]
    if channels == 4:
        out[:, :, 3] = 255
    return out


@dataclass(frozen=True, eq=False)
class ColourHistogram:
    """Pixel counts per distinct colour of one image or a set of images.

    Build one with :meth:`from_image`, add them with ``+`` (exact, associative
    and commutative), fit a palette with :func:`fit_histogram`. Pickles. It
    holds only counts, no image and no k-means points: those are the one-image
    :class:`kmcodec.palette.ImageHistogram` that the fit builds from it.

    Attributes
    ----------
    channels : int
        1, 3 or 4.
    keys : ndarray, (U,) uint32
        The distinct colours packed channel 0 first (``kmcodec._histogram``), ascending.
    counts : ndarray, (U,) int64
        Pixels of each colour, all > 0.
    """

    channels: int
    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_image(cls, image: "np.ndarray | Image.Image | str | os.PathLike[str] | Pixels") -> "ColourHistogram":
        """Count the colours of an array, a Pillow image or an image file."""
        array = image_pixels(image).array
        keys, counts = _histogram.count_colours(array)
        return cls(array.shape[2], np.array(keys, np.uint32), np.asarray(counts, np.int64))

    @classmethod
    def empty(cls, channels: int) -> "ColourHistogram":
        return cls(channels, np.empty(0, np.uint32), np.empty(0, np.int64))

    @property
    def n_colours(self) -> int:
        return int(self.keys.size)

    @property
    def n_pixels(self) -> int:
        return int(self.counts.sum())

    @property
    def colours(self) -> np.ndarray:
        """(U, C) uint8, in key order."""
        return _histogram.unpack_keys(self.keys, self.channels)

    def widened(self, channels: int) -> "ColourHistogram":
        """The same counts with colours widened to ``channels`` (module docstring)."""
        if channels == self.channels:
            return self
        _check_widening(self.channels, channels)
        return ColourHistogram(channels, _WIDEN[self.channels, channels](self.keys), self.counts)

    @staticmethod
    def merge(histograms: Iterable["ColourHistogram"]) -> "ColourHistogram":
        """The exact sum of one or more histograms, in one sort."""
        hs = list(histograms)
        if not hs:
            raise ParameterError("merge: no histograms, allowed one or more")
        channels = max(h.channels for h in hs)
        hs = [h.widened(channels) for h in hs]
        if len(hs) == 1:
            return hs[0]
        keys = np.concatenate([h.keys for h in hs])
        counts = np.concatenate([h.counts for h in hs])
        if keys.size == 0:
            return ColourHistogram.empty(channels)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return ColourHistogram(channels, keys[starts], np.add.reduceat(counts, starts))

    def __add__(self, other: object) -> "ColourHistogram":
        if not isinstance(other, ColourHistogram):
            return NotImplemented
        return ColourHistogram.merge([self, other])

    def __radd__(self, other: object) -> "ColourHistogram":
        # sum(histograms) starts from 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColourHistogram):
            return NotImplemented
        return (
            self.channels == other.channels
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.counts, other.counts)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ColourHistogram channels={self.channels} colours={self.n_colours} pixels={self.n_pixels}>"


@dataclass(frozen=True)
class HistogramFit:
    """A palette fitted to a histogram, and its k-means cost over every counted pixel.

    ``cost`` is the exact SSE of labelling every pixel of the set with its
    nearest entry: the sum of the costs of encoding each image with ``palette``.
    """

    palette: np.ndarray
    cost: int
    n_pixels: int

    @property
    def k(self) -> int:
        return self.palette.shape[0]

    @property
    def mse(self) -> float:
        return self.cost / max(1, self.n_pixels * self.palette.shape[1])


def fit_histogram(
    hist: ColourHistogram, k: int, *, seed: int = DEFAULT_SEED, n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL,
) -> HistogramFit:
    """Fit at most k colours to a (merged) histogram by :func:`kmcodec.palette.fit_palette`.

    The fit sees exactly what it sees for one image whose pixels are the
    histogram's: the distinct colours become a U x 1 image standing for the
    pixels, weighted by their counts.
    """
    if not isinstance(hist, ColourHistogram):
        raise ParameterError(f"hist: expected a kmcodec.ColourHistogram, got {type(hist).__name__}")
    if hist.n_colours == 0:
        raise ParameterError("hist: no pixels, allowed a histogram of at least one image")
    stand_in = hist.colours.reshape(-1, 1, hist.channels)
    inner = _histogram.histogram_from_counts(stand_in, hist.keys, hist.counts)
    fit = fit_palette(inner, k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol)
    return HistogramFit(palette=fit.palette, cost=int(fit.cost), n_pixels=hist.n_pixels)


class HistogramSum:
    """A running exact sum of histograms in bounded memory.

    Added histograms are buffered and merged once the buffer holds as many
    colours as the total so far, so memory stays within about twice the
    set's distinct colours, whatever the number of histograms, and the merge
    work is amortised O(colours log colours).
    """

    def __init__(self) -> None:
        self._total: ColourHistogram | None = None
        self._pending: list[ColourHistogram] = []
        self._buffered = 0

    def add(self, hist: ColourHistogram) -> None:
        self._pending.append(hist)
        self._buffered += hist.n_colours
        if self._buffered >= max(MIN_MERGE_COLOURS, self._total.n_colours if self._total is not None else 0):
            self._merge()

    def _merge(self) -> None:
        self._total = ColourHistogram.merge(([self._total] if self._total is not None else []) + self._pending)
        self._pending, self._buffered = [], 0

    def total(self) -> ColourHistogram | None:
        """The sum so far; None when nothing was added."""
        if self._pending:
            self._merge()
        return self._total


def accumulate(images: Iterable[object]) -> ColourHistogram:
    """The merged histogram of an iterable of images, consumed once, one image in memory at a time."""
    acc = HistogramSum()
    for image in images:
        acc.add(ColourHistogram.from_image(image))
    total = acc.total()
    if total is None:
        raise ImageInputError("images: none given, allowed one or more")
    return total


def fit_shared_palette(
    images: Iterable[object], k: int, *, seed: int = DEFAULT_SEED, n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL,
) -> np.ndarray:
    """One palette of at most k colours for a set of images (arrays, Pillow images or paths).

    The iterable is consumed once, one image at a time; the k-means cost is the
    total over all images. Any split of the set gives the same palette for the
    same seed (the merge is exact). Returns (k_out, C) uint8, k_out <= k.
    """
    return fit_histogram(accumulate(images), k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol).palette
