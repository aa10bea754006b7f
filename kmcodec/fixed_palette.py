"""Encoding against a given palette: exact nearest entry, no k-means, every entry kept.

``kmcodec.encode(image, palette=P)`` comes here. Each pixel gets the index of
its nearest entry of P (squared Euclidean distance, ties to the lowest index),
and P is written as given, unused and repeated entries included, so label i
means entry i in every file encoded with P. An image with fewer channels than
P is widened exactly first (grey -> RGB, alpha 255); one with more channels
is refused, naming both counts.
"""

from __future__ import annotations

import numpy as np

from . import _histogram, layout
from .choose_k import Choice
from ._nearest import nearest_exact
from .errors import ParameterError
from .palette import PaletteFit, colour_labeller
from .pixels import Pixels
from .shared import image_pixels, widen_pixels


def check_palette(palette: object, *, name: str = "palette") -> np.ndarray:
    """A palette as (k, C) uint8: k in 1..65536, C in {1, 3, 4}, integer values 0..255."""
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] not in layout.CHANNELS:
        raise ParameterError(f"{name}: shape {array.shape}, allowed (k, C) with C in {layout.CHANNELS}")
    if not layout.MIN_K <= array.shape[0] <= layout.MAX_K:
        raise ParameterError(f"{name}: {array.shape[0]} entries, allowed {layout.MIN_K}..{layout.MAX_K}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and np.all(array == np.round(array))):
        raise ParameterError(f"{name}: dtype {array.dtype}, allowed integers 0..255")
    bad = np.argwhere((array < 0) | (array > 255))
    if bad.size:
        i, j = bad[0]
        raise ParameterError(f"{name}: entry {i} channel {j} is {array[i, j]}, allowed 0..255")
    return np.ascontiguousarray(array, dtype=np.uint8)


def match_channels(pixels: Pixels, channels: int, *, palette_name: str = "the palette", image_name: str = "the image") -> Pixels:
    """Widen the image to the palette's channels, or refuse one with more channels than the palette."""
    c = pixels.channels
    if c == channels:
        return pixels
    if c > channels:
        raise ParameterError(
            f"{palette_name} has {layout.channels_text(channels)} channels but {image_name} has {layout.channels_text(c)}:"
            f" a palette needs at least the image's channels"
        )
    note = f"{layout.channels_text(c)} widened to {layout.channels_text(channels)} channels to match the palette"
    return Pixels(widen_pixels(pixels.array, channels), pixels.notes + (note,))


def label_with_palette(pixels: np.ndarray, palette: np.ndarray) -> PaletteFit:
    """Exact nearest-entry labels of an (H, W, C) image against a (k, C) palette, and the exact SSE."""
    keys, counts = _histogram.count_colours(pixels)
    colour_labels, sq = nearest_exact(_histogram.unpack_keys(keys, pixels.shape[2]), palette)
    # A copy: the labeller makes its palette read-only, and this one may be the caller's array.
    return colour_labeller(keys, palette.copy(), colour_labels, float(counts @ sq)).fit(pixels)


def encode_with_palette(image: object, palette: object, *, compress: bool = False):
    """The `Encoded` result of labelling ``image`` against ``palette`` (module docstring)."""
    from .codec import Encoded, pack  # the codec imports this module lazily

    pal = check_palette(palette)
    pixels = match_channels(image_pixels(image), pal.shape[1])  # type: ignore[arg-type]
    fit = label_with_palette(pixels.array, pal)
    return Encoded(data=pack(fit.palette, fit.labels, compress=compress), fit=fit, pixels=pixels, requested_k=pal.shape[0])


def palette_choice(pixels: Pixels, palette: np.ndarray, source: str, image_name: object) -> tuple[Pixels, Choice]:
    """What `kmq encode --palette` reports for one image: the (widened) pixels and a `Choice`."""
    pixels = match_channels(pixels, palette.shape[1], palette_name=f"palette {source}", image_name=f"image {image_name}")
    fit = label_with_palette(pixels.array, palette)
    return pixels, Choice(method="palette", k=palette.shape[0], reason=f"palette from {source}", fit=fit)
