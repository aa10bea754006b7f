"""Sweeps: encode one image at many k and measure each result.

One colour histogram serves every k (see :mod:`kmcodec.choose_k`). Each row is
a real encode: the fit is packed into a .kmq file and its size is the file's,
which the size formula predicts exactly.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from . import layout
from .choose_k import FitSettings
from .codec import pack, psnr
from .errors import ParameterError
from .palette import PaletteFit, colour_histogram
from .pixels import Pixels

# "2-10", "2,4,8", "2-16:2" (every second k), or a mix: "2-8,16,32".
_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*(?::\s*(\d+)\s*)?)?$")


def parse_ks(text: str) -> list[int]:
    """The k values of a sweep spec, sorted and distinct; `ValueError` on bad syntax or range."""
    ks: set[int] = set()
    for part in str(text).split(","):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"bad k list {text!r}: expected e.g. 2-10, 2,4,8 or 2-16:2")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        step = int(match.group(3)) if match.group(3) else 1
        if last < first or step < 1:
            raise ValueError(f"bad k range {part.strip()!r}: expected low-high with low <= high and step >= 1")
        if first < layout.MIN_K or last > layout.MAX_K:
            raise ValueError(f"bad k range {part.strip()!r}: k must be in {layout.MIN_K}..{layout.MAX_K}")
        ks.update(range(first, last + 1, step))
    return sorted(ks)


@dataclass(frozen=True)
class SweepRow:
    """One k of a sweep: the file's numbers, the fit's quality and the time it took."""

    requested_k: int
    fit: PaletteFit = field(repr=False)
    data: bytes = field(repr=False)
    seconds: float
    coded_bytes: int = 0  # the file with compress=True: coding 1 when smaller, else the raw file
    source_mse: float | None = None  # against the user's values, when the 8-bit conversion lost precision

    @property
    def k(self) -> int:
        return self.fit.k

    @property
    def size(self) -> layout.SizeFormula:
        h, w = self.fit.labels.shape
        return layout.size_formula(w, h, self.fit.k, self.fit.palette.shape[1])

    @property
    def mse(self) -> float:
        """MSE against the image the user gave."""
        return self.fit.mse if self.source_mse is None else self.source_mse

    @property
    def psnr(self) -> float:
        return psnr(self.mse)

    @property
    def psnr_8bit(self) -> float:
        return psnr(self.fit.mse)

    def as_dict(self) -> dict[str, object]:
        return {
            "k": self.k,
            "requested_k": self.requested_k,
            "bits_per_pixel": self.size.bits_per_pixel,
            "bytes": len(self.data),
            "formula_bytes": self.size.total_bytes,
            "coded_bytes": self.coded_bytes,
            "cost": self.fit.cost,
            "mse": self.mse,
            "psnr": None if math.isinf(self.psnr) else self.psnr,
            "mse_8bit": self.fit.mse,
            "psnr_8bit": None if math.isinf(self.psnr_8bit) else self.psnr_8bit,
            "seconds": self.seconds,
        }


def sweep(
    pixels: np.ndarray,
    ks: Iterable[int],
    settings: FitSettings = FitSettings(),
    *,
    on_row: Callable[[SweepRow], None] | None = None,
    source: Pixels | None = None,
) -> list[SweepRow]:
    """Fit and pack `pixels` (H x W x C uint8) at each k, raw and coded; the histogram is built once.

    Each row's `seconds` is its own fit and pack; the shared histogram is not
    counted in any row. With `source` (the `Pixels` that `pixels` came from)
    whose conversion lost precision, each row's MSE is also measured against
    the original values.
    """
    ks = list(ks)
    if not ks:
        raise ParameterError("sweep: no k values given")
    hist = colour_histogram(pixels)
    rows = []
    for k in ks:
        started = time.perf_counter()
        fit = settings.fit(hist, k)
        data = pack(fit.palette, fit.labels)
        coded = len(pack(fit.palette, fit.labels, compress=True))
        seconds = time.perf_counter() - started
        source_mse = None
        if source is not None and not source.exact:
            source_mse = source.source_cost(fit.palette, fit.labels) / fit.labels.size / fit.palette.shape[1]
        row = SweepRow(requested_k=k, fit=fit, data=data, seconds=seconds, coded_bytes=coded, source_mse=source_mse)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


COLUMNS = ("k", "bits_per_pixel", "bytes", "coded_bytes", "cost", "mse", "psnr", "seconds")
# Added when the input lost precision on its way to 8 bits (mse/psnr are then against the original).
COLUMNS_8BIT = ("mse_8bit", "psnr_8bit")


def table(rows: list[SweepRow]) -> str:
    """The sweep as an aligned text table, one row per k, headed by the JSON key names."""
    inexact = any(row.source_mse is not None for row in rows)
    columns = COLUMNS + COLUMNS_8BIT if inexact else COLUMNS
    lines = [columns]
    for row in rows:
        k_text = str(row.k) if row.k == row.requested_k else f"{row.k} ({row.requested_k})"
        line = (
            k_text,
            str(row.size.bits_per_pixel),
            str(len(row.data)),
            str(row.coded_bytes),
            f"{row.fit.cost:.0f}",
            f"{row.mse:.2f}",
            _db(row.psnr),
            f"{row.seconds:.3f}",
        )
        lines.append(line + ((f"{row.fit.mse:.2f}", _db(row.psnr_8bit)) if inexact else ()))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"
