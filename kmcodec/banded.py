"""Encoding images larger than memory: row bands of a memory-mapped array, streamed to the file.

Coding 0's label stream is row-major with no row padding (spec §4), so the
file can be written as the pixels are read:

1. histogram pass: :func:`kmcodec.palette.colour_histogram` reads the array in
   row chunks and releases each chunk's mapped pages (:mod:`kmcodec._mapped`);
2. fit: :func:`kmcodec.palette.fit_labeller` on the histogram, the very code the
   in-memory encode runs, so the palette is the same for the same seed;
3. labelling pass: each band of rows is labelled, bit-packed and written to the
   temporary output file, with the CRC-32 carried along; the header goes first,
   since the size formula fixes every length in advance.

Bands hold a multiple of 8 rows, so every band but the last packs to whole
bytes and the file is byte-identical to ``kmcodec.encode`` of the same array.
Memory is the histogram tables (at most about 100 MB for RGB) plus a few
bands; the image itself is never resident.

Only coding 0 streams this way: coding 1 interlaces the whole label map, so it
needs every label before its first byte can be written.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import bitpack, layout
from ._histogram import CHUNK_PIXELS
from ._mapped import iter_row_bands, mapping_of
from .codec import check_k
from .container import Header
from .errors import ImageInputError
from .files import atomic_write
from .palette import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SEED, DEFAULT_TOL, colour_histogram, fit_labeller
from .pixels import Pixels, Rule, as_channels_last, rule_for


@dataclass(frozen=True)
class BandedEncode:
    """What a banded encode wrote: the header, the palette and the errors it measured on the way."""

    header: Header
    palette: np.ndarray
    cost: float  # SSE against the 8-bit image (the k-means cost)
    source_cost: float  # SSE against the values given (equal to cost when they were 8-bit)
    pixels: Pixels  # the 8-bit image (a memmap) and the notes of its conversion

    @property
    def mse(self) -> float:
        return self.source_cost / self.pixels.array.size

    @property
    def mse_8bit(self) -> float:
        return self.cost / self.pixels.array.size


def is_mapped(image: object) -> bool:
    """Whether `image` is an array backed by a memory map (the inputs that take the banded path)."""
    return isinstance(image, np.ndarray) and mapping_of(image) is not None


def band_rows_for(width: int, band_rows: int | None) -> int:
    """Rows per band: a multiple of 8, about CHUNK_PIXELS pixels unless given."""
    rows = band_rows if band_rows is not None else max(1, CHUNK_PIXELS // width)
    if rows < 1:
        raise ValueError(f"band_rows must be at least 1, got {rows}")
    return -(-rows // 8) * 8


def write_banded(
    path: "str | os.PathLike[str]",
    image: np.ndarray,
    k: int,
    *,
    seed: int = DEFAULT_SEED,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    band_rows: int | None = None,
    overwrite: bool = True,
) -> BandedEncode:
    """Encode an array (typically a memmap) to a coding-0 .kmq file in row bands (module docstring).

    Arrays that are not uint8 are first converted by the input rules (README)
    into a temporary uint8 .npy beside `path`, band by band.
    """
    k = check_k(k)
    if not isinstance(image, np.ndarray):
        raise ImageInputError(f"expected a numpy array, got {type(image).__name__}")
    original = as_channels_last(image)
    rule = rule_for(original)
    rows = band_rows_for(original.shape[1], band_rows)
    directory = Path(path).parent
    with tempfile.TemporaryDirectory(prefix=".kmq-banded-", dir=directory if str(directory) else ".") as scratch:
        array = original if rule.note is None else _convert(original, rule, Path(scratch) / "pixels.npy", rows)
        exact = rule.note is None or original.dtype == np.bool_
        hist = colour_histogram(array)
        labeller = fit_labeller(hist, k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol)
        palette = labeller.palette
        height, width, channels = array.shape
        header = Header(width=width, height=height, k=palette.shape[0], channels=channels)
        totals = {"cost": 0, "source": 0.0}

        def write(handle) -> None:
            head = header.pack() + palette.tobytes()
            handle.write(head)
            crc = zlib.crc32(head)
            for y, band in iter_row_bands(array, rows):
                flat = band.reshape(-1, channels)
                labels = labeller.label(flat)
                totals["cost"] += labeller.chunk_cost(flat, labels)
                if not exact:
                    totals["source"] += _source_cost(original, rule, y, rows, palette, labels)
                packed = bitpack.pack_labels(labels, header.bits_per_pixel)
                crc = zlib.crc32(packed, crc)
                handle.write(packed)
            handle.write(crc.to_bytes(layout.CHECK_SIZE, "little"))

        atomic_write(path, write, overwrite=overwrite)
        cost = float(totals["cost"])
        notes = () if rule.note is None else (rule.note,)
        source = None if exact else original
        pixels = Pixels(array, notes, source, rule.offset, rule.scale)
        return BandedEncode(header, palette, cost, cost if exact else totals["source"], pixels)


def _convert(original: np.ndarray, rule: Rule, target: Path, rows: int) -> np.ndarray:
    """The 8-bit image of a wide array, written band by band into a uint8 .npy memmap."""
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=original.shape)
    for (y, band), (_, dest) in zip(iter_row_bands(original, rows), iter_row_bands(out, rows)):
        dest[...] = rule.apply(band)
    out.flush()
    return out


def _source_cost(original, rule: Rule, y: int, rows: int, palette: np.ndarray, labels: np.ndarray) -> float:
    """SSE of one band's decoded pixels against the values given, on the rule's 0..255 scale."""
    band = original[y : y + rows]
    values = (band.reshape(-1, band.shape[2]).astype(np.float64) - rule.offset) * rule.scale
    values -= palette.astype(np.float64)[labels]
    return float(np.einsum("ij,ij->", values, values))
