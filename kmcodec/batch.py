"""Encoding files: the per-file job `kmq encode` runs, alone or for many files in worker processes.

A job reads one image, chooses k (:mod:`kmcodec.choose_k`), optionally maps the
image onto the palette with Floyd-Steinberg dithering, writes the .kmq file
atomically and returns the summary that `kmq encode` prints (its keys are the
``--json`` keys). `run` spreads jobs over a process pool and keeps going past
failures, each of which is reported with its input.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from . import layout
from .choose_k import Choice, FitSettings, OnTrial, choose
from .codec import pack, psnr
from .container import parse_header
from .errors import ImageInputError, KmqError, OutputError, ParameterError
from .files import check_output, load_image, write_bytes
from .fixed_palette import palette_choice
from .palette import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SEED
from .pixels import Pixels

MAX_DITHER_K = 256  # Pillow's palette images hold at most 256 entries


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode each file: exactly one of k ("auto" or an int), psnr, max_bytes; then the fit settings."""

    k: "int | str | None" = None
    psnr: float | None = None
    max_bytes: int | None = None
    seed: int = DEFAULT_SEED
    n_init: int = DEFAULT_N_INIT
    max_iter: int = DEFAULT_MAX_ITER
    dither: bool = False
    force: bool = False
    compress: bool = False  # write coding 1 when it is smaller (spec §11)
    # A given palette (k x C uint8) replaces the fit; its source is named in the summary.
    palette: "np.ndarray | None" = None
    palette_source: str = ""

    @property
    def settings(self) -> FitSettings:
        return FitSettings(seed=self.seed, n_init=self.n_init, max_iter=self.max_iter)


@dataclass(frozen=True)
class Job:
    input: Path
    output: Path
    frame: int | None = None  # of a multi-frame input; None: the first, noted if there are more


@dataclass(frozen=True)
class Outcome:
    """What became of one job: its summary, or the error that stopped it."""

    job: Job
    summary: dict | None = None
    error: str | None = None


def output_paths(inputs: Sequence[Path], out_dir: Path | None) -> list[Job]:
    """Each input's .kmq path: in `out_dir` when given, else beside the input.

    Two inputs that would write the same file are an error before anything runs.
    """
    jobs = [Job(p, (out_dir / p.name if out_dir is not None else p).with_suffix(".kmq")) for p in inputs]
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = Path(os.path.abspath(job.output))
        if key in seen:
            raise OutputError(f"{seen[key]} and {job.input} would both write {job.output}")
        seen[key] = job.input
    return jobs


def dither_labels(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map pixels onto `palette` with Floyd-Steinberg error diffusion, by Pillow's `quantize`.

    Pillow maps only RGB images onto a palette of at most 256 colours: grey
    images go through RGB with a grey palette; alpha cannot be dithered.
    """
    k, channels = palette.shape
    if channels == 4:
        raise ParameterError("dither: Pillow's palette mapping has no alpha; --dither works on grey and RGB images, this one is RGBA")
    if k > MAX_DITHER_K:
        raise ParameterError(f"dither: Pillow's palette mapping holds at most {MAX_DITHER_K} colours, k is {k}")
    rgb = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels
    target = Image.new("P", (1, 1))
    target.putpalette((np.repeat(palette, 3, axis=1) if channels == 1 else palette).tobytes())
    mapped = Image.fromarray(np.ascontiguousarray(rgb), "RGB").quantize(palette=target, dither=Image.Dither.FLOYDSTEINBERG)
    labels = np.asarray(mapped)
    if labels.max() >= k:  # Pillow pads palettes; an index past ours would be a bug there
        raise KmqError(f"dither: Pillow returned label {labels.max()}, palette has {k} entries")
    return labels


def squared_error(pixels: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> int:
    """Exact SSE over all pixels and channels (the k-means cost of these labels)."""
    diff = (pixels.astype(np.int64) - palette.astype(np.int64)[labels]).reshape(-1)
    return int(diff @ diff)


def encode_file(job: Job, options: EncodeOptions, *, on_trial: OnTrial | None = None) -> dict:
    """Encode one image file to .kmq and return its summary; raises `KmqError` on bad input."""
    check_output(job.output, overwrite=options.force)
    started = time.perf_counter()
    if job.input.suffix.lower() == ".npy":
        return encode_npy(job, options, started)
    pixels = load_image(job.input, job.frame)
    if options.palette is not None:
        pixels, choice = palette_choice(pixels, options.palette, options.palette_source, job.input)
    else:
        choice = choose(
            pixels.array,
            k=options.k,
            psnr_target=options.psnr,
            max_bytes=options.max_bytes,
            settings=options.settings,
            on_trial=on_trial,
            compress=options.compress,
        )
    palette, labels, cost = choice.fit.palette, choice.fit.labels, choice.fit.cost
    psnr_without_dither = None
    if options.dither:
        psnr_without_dither = psnr(source_mse(pixels, palette, labels, cost))
        labels = dither_labels(pixels.array, palette)
        cost = float(squared_error(pixels.array, palette, labels))
    data = pack(palette, labels, compress=options.compress)
    write_bytes(job.output, data, overwrite=options.force)
    mse = source_mse(pixels, palette, labels, cost)
    s = summary(job, data, pixels, choice, cost, mse, psnr_without_dither, time.perf_counter() - started)
    s["compress"] = options.compress
    return s


def encode_npy(job: Job, options: EncodeOptions, started: float) -> dict:
    """A .npy input: memory-mapped and encoded in row bands (kmcodec.banded), so it may exceed memory."""
    from .banded import write_banded  # banded imports files, which this module's importers load first

    if not isinstance(options.k, int) or options.dither:
        raise ParameterError(f"{job.input}: .npy inputs are encoded in bands and take -k N only (no --psnr, --max-bytes, -k auto, --dither)")
    try:
        array = np.load(job.input, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise ImageInputError(f"cannot read {job.input}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ImageInputError(f"cannot read {job.input}: not a numpy .npy array ({exc})") from None
    result = write_banded(
        job.output, array, options.k, seed=options.seed, n_init=options.n_init, max_iter=options.max_iter, overwrite=options.force
    )
    k = result.header.k
    reason = f"k={options.k} as given" + (f"; the palette came out with {k} colours" if k < options.k else "")
    choice = Choice("k", options.k, reason, None)  # type: ignore[arg-type]  # no in-memory fit to keep
    notes = result.pixels.notes + ("memory-mapped .npy encoded in row bands",)
    if options.compress:  # coding 1 interlaces the whole label map, so it cannot be written band by band
        notes += ("coding 0 written: the banded path cannot write coding 1",)
    pixels = Pixels(result.pixels.array, notes, result.pixels.source)
    s = summary(job, result.header.pack(), pixels, choice, result.cost, result.mse, None, time.perf_counter() - started)
    s["compress"] = options.compress
    return s


def source_mse(pixels: Pixels, palette: np.ndarray, labels: np.ndarray, cost: float) -> float:
    """MSE against the image the user gave: the 8-bit cost when exact, else measured on the original values."""
    cost = cost if pixels.exact else pixels.source_cost(palette, labels)
    return cost / pixels.array.size


def summary(
    job: Job,
    data: bytes,
    pixels: Pixels,
    choice: Choice,
    cost: float,
    mse: float,
    psnr_without_dither: float | None,
    seconds: float,
) -> dict:
    """The --json keys; `cost` is the SSE against the 8-bit image, `mse` the error against the user's image."""
    header = parse_header(data)
    size = header.size
    written = job.output.stat().st_size
    raw = size.width * size.height * size.channels
    mse_8bit = cost / (size.width * size.height * size.channels)
    value = psnr(mse)
    return {
        "input": str(job.input),
        "output": str(job.output),
        "width": size.width,
        "height": size.height,
        "channels": size.channels,
        "k": size.k,
        "requested_k": choice.k,
        "bits_per_pixel": size.bits_per_pixel,
        "bytes": written,
        "formula_bits": size.content_bits,
        "formula_bytes": size.total_bytes,
        "formula_holds": written == size.total_bytes if header.coding == layout.CODING_RAW else written <= size.total_bytes,
        "coding": header.coding,
        "label_method": layout.label_method(data, header.coding, size.palette_bytes),
        "label_bytes": written - layout.OVERHEAD - size.palette_bytes,
        "label_bits_per_pixel": 8 * (written - layout.OVERHEAD - size.palette_bytes) / (size.width * size.height),
        "raw_bytes": raw,
        "ratio": raw / written,
        "cost": cost,
        "mse": mse,
        "psnr": None if math.isinf(value) else value,
        "input_exact": pixels.exact,
        "mse_8bit": mse_8bit,
        "psnr_8bit": _finite(psnr(mse_8bit)),
        "dither": psnr_without_dither is not None,
        "psnr_without_dither": _finite(psnr_without_dither),
        "method": choice.method,
        "reason": choice.reason,
        "trials": [t.as_dict() for t in choice.trials],
        "seconds": seconds,
        "notes": list(pixels.notes),
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def error_text(exc: BaseException) -> str:
    """How a failed file is reported: the KmqError's message, else what kind of failure it was."""
    if isinstance(exc, KmqError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"internal error: {type(exc).__name__}: {exc}"


def _run_one(job: Job, options: EncodeOptions) -> Outcome:
    """A job in a worker: every failure becomes an Outcome, so the batch keeps going."""
    try:
        return Outcome(job, summary=encode_file(job, options))
    except Exception as exc:  # a bug must not hide the other files' results
        return Outcome(job, error=error_text(exc))


def run(jobs: Sequence[Job], options: EncodeOptions, *, workers: int = 1, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Encode every job, `workers` at a time in worker processes (1: in this process); results in job order."""
    outcomes: dict[int, Outcome] = {}

    def done(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        if on_done is not None:
            on_done(outcome)

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            done(i, _run_one(job, options))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(_run_one, job, options): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = Outcome(jobs[i], error="worker process died (out of memory?)")
                done(i, outcome)
    return [outcomes[i] for i in range(len(jobs))]
