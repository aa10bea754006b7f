"""Shared palettes over files: the per-file map, the local reduce and fit, and frame jobs.

`kmq encode --shared-palette` and `kmq palette` run four stages:

1. map: :func:`file_histogram` per input (all its frames with ``--frames``);
2. reduce: :class:`kmcodec.shared.HistogramSum` adds them as they arrive;
3. fit: :func:`kmcodec.shared.fit_histogram` once;
4. map: every job is labelled against the palette and written
   (:func:`kmcodec.batch.encode_file` with ``EncodeOptions.palette``).

Here stages 1-2 run in a local process pool (``--jobs``) with at most one
histogram per worker in flight; :mod:`kmcodec.dask_shared` runs the same
functions on a Dask cluster. An input whose histogram fails is named, left
out of the fit, and reported again as that input's failure in stage 4.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from . import batch
from .batch import EncodeOptions, Job, Outcome, error_text, output_paths
from .choose_k import FitSettings
from .errors import KmqError
from .files import load_image
from .shared import ColourHistogram, HistogramFit, HistogramSum, accumulate, fit_histogram

Runner = Callable[..., list[Outcome]]


@dataclass
class SharedFit:
    """The fit stage's result over files: the fit, per-input failures, and seconds per stage."""

    fit: HistogramFit | None
    errors: dict[Path, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def stage_text(self) -> str:
        return ", ".join(f"{stage} {s:.2f} s" for stage, s in self.seconds.items())


def frame_count(path: Path) -> int:
    """Frames in an image file (1 for a still image)."""
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    except Exception:
        load_image(path)  # raises the one-line error for this file
        raise


def file_histogram(path: Path, frames: bool = False) -> ColourHistogram:
    """The colour histogram of an image file: its first frame, or all its frames merged."""
    if not frames:
        return ColourHistogram.from_image(load_image(path))
    return accumulate(load_image(path, i) for i in range(frame_count(path)))


def frame_jobs(inputs: Sequence[Path], out_dir: Path | None) -> list[Job]:
    """One job per frame: NAME_0001.kmq, NAME_0002.kmq, ... in `out_dir` or beside the input."""
    named = []
    for path in inputs:
        try:
            count = frame_count(path)
        except KmqError:
            count = 1  # unreadable: its one job fails in the map stage, named, and the rest go on
        for i in range(count):
            named.append((path, i, path.with_name(f"{path.stem}_{i + 1:04d}{path.suffix}")))
    jobs = output_paths([n for _, _, n in named], out_dir)  # names the outputs, refuses collisions
    return [Job(path, job.output, i) for (path, i, _), job in zip(named, jobs)]


def _histogram_or_error(path: Path, frames: bool) -> tuple[ColourHistogram | None, str | None]:
    try:
        return file_histogram(path, frames), None
    except Exception as exc:  # named per file, as in the batch
        return None, error_text(exc)


def map_reduce_local(paths: Sequence[Path], *, frames: bool, workers: int) -> tuple[ColourHistogram | None, dict[Path, str], dict[str, float]]:
    """Stages 1-2 in this process or a pool of `workers`: (total, failures, seconds)."""
    total = HistogramSum()
    errors: dict[Path, str] = {}
    reduce_seconds = 0.0
    started = time.perf_counter()

    def take(path: Path, result: tuple[ColourHistogram | None, str | None]) -> None:
        nonlocal reduce_seconds
        hist, error = result
        if error is not None:
            errors[path] = error
            return
        t = time.perf_counter()
        total.add(hist)  # type: ignore[arg-type]
        reduce_seconds += time.perf_counter() - t

    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            take(path, _histogram_or_error(path, frames))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
            queue = list(reversed(paths))
            running: dict = {}
            while queue or running:
                while queue and len(running) < workers:  # at most one histogram per worker in flight
                    path = queue.pop()
                    running[pool.submit(_histogram_or_error, path, frames)] = path
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    path = running.pop(future)
                    try:
                        take(path, future.result())
                    except Exception as exc:  # the worker process died
                        errors[path] = error_text(exc)
    t = time.perf_counter()
    merged = total.total()
    reduce_seconds += time.perf_counter() - t
    return merged, errors, {"map": time.perf_counter() - started - reduce_seconds, "reduce": reduce_seconds}


def fit_files(paths: Sequence[Path], k: int, settings: FitSettings, *, frames: bool = False, workers: int = 1) -> SharedFit:
    """Stages 1-3 locally: one palette for every readable input."""
    total, errors, seconds = map_reduce_local(paths, frames=frames, workers=workers)
    return finish_fit(total, errors, seconds, k, settings)


def finish_fit(total: ColourHistogram | None, errors: dict[Path, str], seconds: dict[str, float], k: int, settings: FitSettings) -> SharedFit:
    """Stage 3 on the merged histogram (None when no input could be read)."""
    started = time.perf_counter()
    fit = None
    if total is not None:
        fit = fit_histogram(total, k, seed=settings.seed, n_init=settings.n_init, max_iter=settings.max_iter, tol=settings.tol)
    return SharedFit(fit, errors, {**seconds, "fit": time.perf_counter() - started})


def skipping_failed(errors: dict[Path, str], run: Runner = batch.run) -> Runner:
    """`run` for the jobs whose input was read in the map stage; the others fail with its error."""

    def runner(jobs: Sequence[Job], options: EncodeOptions, *, workers: int = 1, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        for i, job in enumerate(jobs):
            if job.input in errors:
                outcomes[i] = Outcome(job, error=errors[job.input])
                if on_done is not None:
                    on_done(outcomes[i])
        rest = [i for i in range(len(jobs)) if i not in outcomes]
        for i, outcome in zip(rest, run([jobs[i] for i in rest], options, workers=workers, on_done=on_done)):
            outcomes[i] = outcome
        return [outcomes[i] for i in range(len(jobs))]

    return runner
