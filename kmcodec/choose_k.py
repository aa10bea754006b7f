"""Choosing K: a fixed k, a PSNR target, a byte budget, or the elbow of the cost curve.

Pure functions on arrays; the CLI reports the `Choice` they return. Every
search builds the colour histogram once and fits every trial K on it
(:func:`kmcodec.palette.fit_palette` accepts it in place of the pixels), so a
trial costs one k-means on the U distinct colours, not a pass over the pixels.

========== ============================================================================
method     rule
========== ============================================================================
k          the given k.
psnr       the smallest k whose fit reaches the target PSNR. PSNR grows with k, so the
           search doubles k from 1 until the target is met, then bisects between the
           last miss and the first hit: about 2 log2(k) trial fits, each a cheap
           single-restart fit (``n_init=1``). The final fit uses the caller's settings
           and is kept only if it is at least as good as the trial at that k.
max_bytes  the largest k whose exact file size (spec §6) fits the budget; no fit is
           needed to find it. The file can only be smaller: the palette may come out
           with k_out < k entries (and a b-bit label for k_out <= 2**b). With
           ``compress`` the coded size is known only by encoding, so the search starts
           from that k (coding 1 is never larger), doubles k while the coded file
           fits, then bisects: about 2 log2(k) trial fits and trial encodes.
auto       the elbow of the k-means cost over k = 2..16: cost and k are each scaled to
           0..1 and the elbow is the k farthest below the chord from the first point to
           the last (the "Kneedle" rule). The curve uses single-restart fits, made
           non-increasing (a restart can land in a worse local minimum). An image with
           at most 16 colours gets k = its colour count: lossless, and nothing smaller
           is.
========== ============================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import layout
from .codec import check_k, pack, psnr
from .errors import ParameterError
from .palette import (
    DEFAULT_MAX_ITER,
    DEFAULT_N_INIT,
    DEFAULT_SEED,
    DEFAULT_TOL,
    ImageHistogram,
    PaletteFit,
    colour_histogram,
    fit_palette,
)

METHODS = ("k", "psnr", "max_bytes", "auto")
AUTO_KS = range(2, 17)  # the k of the cost curve that `auto` looks for an elbow in
TRIAL_N_INIT = 1  # restarts of a trial fit; the final fit uses the caller's n_init


@dataclass(frozen=True)
class Trial:
    """One trial fit of a search: the k asked, the palette size it gave, and its quality."""

    k: int
    k_out: int
    cost: float
    mse: float
    psnr: float

    def as_dict(self) -> dict[str, object]:
        return {
            "k": self.k,
            "k_out": self.k_out,
            "cost": self.cost,
            "mse": self.mse,
            "psnr": None if math.isinf(self.psnr) else self.psnr,
        }


@dataclass(frozen=True)
class Choice:
    """The k a method chose, why, the trial fits it took, and the final fit."""

    method: str
    k: int
    reason: str
    fit: PaletteFit
    trials: tuple[Trial, ...] = field(default=())


@dataclass(frozen=True)
class FitSettings:
    """The k-means settings of the final fit (the names of `fit_palette`)."""

    seed: int = DEFAULT_SEED
    n_init: int = DEFAULT_N_INIT
    max_iter: int = DEFAULT_MAX_ITER
    tol: float = DEFAULT_TOL

    def fit(self, hist: ImageHistogram, k: int, *, n_init: int | None = None) -> PaletteFit:
        return fit_palette(
            hist, k, seed=self.seed, n_init=self.n_init if n_init is None else n_init, max_iter=self.max_iter, tol=self.tol
        )


OnTrial = Callable[[Trial], None]


def _trial(hist: ImageHistogram, k: int, settings: FitSettings, on_trial: OnTrial | None) -> tuple[Trial, PaletteFit]:
    fit = settings.fit(hist, k, n_init=TRIAL_N_INIT)
    trial = Trial(k=k, k_out=fit.k, cost=fit.cost, mse=fit.mse, psnr=psnr(fit.mse))
    if on_trial is not None:
        on_trial(trial)
    return trial, fit


def _final(hist: ImageHistogram, k: int, settings: FitSettings, trial_fit: PaletteFit | None) -> PaletteFit:
    """The caller's fit at k, or the trial fit at k when that one is better (lower cost)."""
    if trial_fit is not None and settings.n_init == TRIAL_N_INIT:
        return trial_fit
    fit = settings.fit(hist, k)
    if trial_fit is not None and trial_fit.cost < fit.cost:
        return trial_fit
    return fit


def smallest_k_for_psnr(
    hist: ImageHistogram, target: float, settings: FitSettings = FitSettings(), *, on_trial: OnTrial | None = None
) -> Choice:
    """The smallest k whose fit reaches `target` dB (module docstring: doubling, then bisection)."""
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise ParameterError(f"psnr target: {target!r}, allowed a number of dB > 0")
    top = min(hist.n_colours, layout.MAX_K)  # k = U colours is lossless, when U <= MAX_K
    fits: dict[int, PaletteFit] = {}
    trials: list[Trial] = []

    def good(k: int) -> bool:
        trial, fits[k] = _trial(hist, k, settings, on_trial)
        trials.append(trial)
        return trial.psnr >= target

    miss, hit = 0, None
    k = 1
    while True:
        if good(k):
            hit = k
            break
        miss = k
        if k == top:
            break
        k = min(2 * k, top)
    if hit is None:
        best = max(trials, key=lambda t: t.psnr)
        reason = f"PSNR {target:g} dB is out of reach: k={top} (the most this image allows) gives {best.psnr:.2f} dB"
        return Choice("psnr", top, reason, _final(hist, top, settings, fits[top]), tuple(trials))
    while hit - miss > 1:
        mid = (miss + hit) // 2
        if good(mid):
            hit = mid
        else:
            miss = mid
    fit = _final(hist, hit, settings, fits[hit])
    below = f", k={hit - 1} does not" if hit > 1 else ""
    reason = (
        f"smallest k reaching PSNR {target:g} dB: k={hit} gives {_db(psnr(fit.mse))}{below}"
        f" ({len(trials)} trial fits: doubling, then bisection)"
    )
    return Choice("psnr", hit, reason, fit, tuple(trials))


def largest_k_for_bytes(max_bytes: int, width: int, height: int, channels: int) -> int:
    """The largest k whose .kmq file (exact size formula) is at most `max_bytes`.

    The size grows strictly with k, so a bisection over 1..MAX_K finds it.
    Raises `ParameterError` when even k=1 does not fit.
    """
    smallest = layout.size_formula(width, height, 1, channels).total_bytes
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < smallest:
        raise ParameterError(
            f"max_bytes: {max_bytes!r} is below the smallest .kmq file of a {width}x{height} image"
            f" with {channels} channels: {smallest} bytes (k=1)"
        )
    lo, hi = 1, layout.MAX_K  # size(lo) fits; find the last k that fits
    if layout.size_formula(width, height, hi, channels).total_bytes <= max_bytes:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if layout.size_formula(width, height, mid, channels).total_bytes <= max_bytes:
            lo = mid
        else:
            hi = mid
    return lo


def k_for_bytes(hist: ImageHistogram, max_bytes: int, settings: FitSettings = FitSettings()) -> Choice:
    """The best quality within `max_bytes`: the largest k that fits (no trial fits needed)."""
    h, w, c = hist.pixels.shape
    k = largest_k_for_bytes(max_bytes, w, h, c)
    size = layout.size_formula(w, h, k, c).total_bytes
    if hist.n_colours <= k:
        k = hist.n_colours
        fit = settings.fit(hist, k)
        reason = (
            f"the image has {k} colours and k={k} fits {max_bytes} bytes:"
            f" lossless in {layout.size_formula(w, h, fit.k, c).total_bytes} bytes"
        )
        return Choice("max_bytes", k, reason, fit)
    fit = settings.fit(hist, k)
    above = layout.size_formula(w, h, k + 1, c).total_bytes if k < layout.MAX_K else None
    reason = f"largest k whose file fits {max_bytes} bytes: k={k} is {size} bytes by the size formula"
    if above is not None:
        reason += f", k={k + 1} would be {above}"
    if fit.k < k:
        reason += f"; the fit kept {fit.k} distinct colours, so the file is {layout.size_formula(w, h, fit.k, c).total_bytes} bytes"
    return Choice("max_bytes", k, reason, fit)


def k_for_compressed_bytes(
    hist: ImageHistogram, max_bytes: int, settings: FitSettings = FitSettings(), *, on_trial: OnTrial | None = None
) -> Choice:
    """The largest k whose coding-1 file fits `max_bytes`, by trial encodes (module docstring)."""
    h, w, c = hist.pixels.shape
    start = k_for_bytes(hist, max_bytes, settings)
    if start.fit.k < start.k or start.k >= layout.MAX_K:  # already lossless, or nothing larger exists
        return Choice("max_bytes", start.k, start.reason + " (coded)", start.fit)
    trials: list[Trial] = []
    fits: dict[int, tuple[PaletteFit, int]] = {}

    def coded(k: int) -> int:
        if k not in fits:
            trial, fit = _trial(hist, k, settings, on_trial)
            trials.append(trial)
            fits[k] = (fit, len(pack(fit.palette, fit.labels.reshape(h, w), compress=True)))
        return fits[k][1]

    good, bad = start.k, None
    limit = min(layout.MAX_K, hist.n_colours)
    while bad is None and good < limit:
        k = min(2 * good, limit)
        if coded(k) <= max_bytes:
            good = k
        else:
            bad = k
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        if coded(mid) <= max_bytes:
            good = mid
        else:
            bad = mid
    fit = settings.fit(hist, good)
    size = len(pack(fit.palette, fit.labels.reshape(h, w), compress=True))
    if size > max_bytes and good in fits:  # the full fit landed elsewhere; its trial fit is known to fit
        fit, size = fits[good]
    elif size > max_bytes:
        fit, size = start.fit, len(pack(start.fit.palette, start.fit.labels.reshape(h, w), compress=True))
        good = start.k
    reason = f"largest k whose coded file fits {max_bytes} bytes: k={good} is {size} bytes"
    if bad is not None:
        reason += f", k={bad} would be {fits[bad][1]}"
    return Choice("max_bytes", good, reason, fit, tuple(trials))


def elbow(ks: Sequence[int], costs: Sequence[float]) -> int:
    """The k of the elbow of a decreasing cost curve: farthest below its chord, both axes scaled to 0..1.

    Ties go to the smallest k. A flat curve (first cost == last cost) gives the first k.
    """
    x = np.asarray(ks, dtype=np.float64)
    y = np.minimum.accumulate(np.asarray(costs, dtype=np.float64))
    if x.size < 3 or y[0] == y[-1]:
        return int(x[0])
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y[-1]) / (y[0] - y[-1])
    # The chord runs from (0, 1) to (1, 0); a point's distance below it is (1 - xn - yn) / sqrt 2.
    return int(x[int(np.argmax(1.0 - xn - yn))])


def auto_k(hist: ImageHistogram, settings: FitSettings = FitSettings(), *, on_trial: OnTrial | None = None) -> Choice:
    """The elbow of the cost curve over k = 2..16 (module docstring)."""
    if hist.n_colours <= AUTO_KS[-1]:
        k = hist.n_colours
        reason = f"the image has only {k} colour{'s' if k > 1 else ''}: k={k} is lossless"
        return Choice("auto", k, reason, settings.fit(hist, k))
    trials, fits = [], {}
    for k in AUTO_KS:
        trial, fits[k] = _trial(hist, k, settings, on_trial)
        trials.append(trial)
    k = elbow([t.k for t in trials], [t.cost for t in trials])
    fit = _final(hist, k, settings, fits[k])
    reason = (
        f"elbow of the k-means cost over k={AUTO_KS[0]}..{AUTO_KS[-1]} (farthest below the chord of the"
        f" normalised curve): k={k}, PSNR {_db(psnr(fit.mse))}"
    )
    return Choice("auto", k, reason, fit, tuple(trials))


def fixed_k(hist: ImageHistogram, k: int, settings: FitSettings = FitSettings()) -> Choice:
    k = check_k(k)
    fit = settings.fit(hist, k)
    reason = f"k={k} as given"
    if fit.k < k:
        reason += f"; the palette came out with {fit.k} colour{'s' if fit.k > 1 else ''}" + (
            " (the image has no more)" if hist.n_colours <= k else ""
        )
    return Choice("k", k, reason, fit)


def choose(
    pixels: "np.ndarray | ImageHistogram",
    *,
    k: "int | str | None" = None,
    psnr_target: float | None = None,
    max_bytes: int | None = None,
    settings: FitSettings = FitSettings(),
    on_trial: OnTrial | None = None,
    compress: bool = False,
) -> Choice:
    """Pick k by exactly one rule: `k` (an int, or "auto"), `psnr_target` or `max_bytes`.

    `compress` makes `max_bytes` count the coding-1 file instead of the formula.
    """
    given = [name for name, value in (("k", k), ("psnr", psnr_target), ("max_bytes", max_bytes)) if value is not None]
    if len(given) != 1:
        raise ParameterError(f"give exactly one of k, psnr, max_bytes; got {', '.join(given) or 'none'}")
    hist = pixels if isinstance(pixels, ImageHistogram) else colour_histogram(pixels)
    if psnr_target is not None:
        return smallest_k_for_psnr(hist, psnr_target, settings, on_trial=on_trial)
    if max_bytes is not None and compress:
        return k_for_compressed_bytes(hist, max_bytes, settings, on_trial=on_trial)
    if max_bytes is not None:
        return k_for_bytes(hist, max_bytes, settings)
    if k == "auto":
        return auto_k(hist, settings, on_trial=on_trial)
    return fixed_k(hist, k, settings)  # type: ignore[arg-type]


def _db(value: float) -> str:
    return "lossless (PSNR inf)" if math.isinf(value) else f"{value:.2f} dB"
