"""The CLI of shared and given palettes: `kmq palette`, and `kmq encode` with
``--palette FILE``, ``--shared-palette``, ``--frames`` and ``--scheduler``.

`cli.py` registers these options and hands such an encode to :func:`run_encode`,
which finds the palette (a file, or the map-reduce fit of
:mod:`kmcodec.shared_batch`, locally or on Dask) and then runs the usual batch
with every file labelled against it. Summaries name the palette's source.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import batch, layout
from .batch import EncodeOptions, Job
from .choose_k import FitSettings
from .codec import check_k, psnr
from .errors import OutputError
from .files import check_output
from .palette_files import SUFFIXES, read_palette, write_palette
from .shared_batch import SharedFit, fit_files, skipping_failed

DASK_EXTRA = "pip install 'kmcodec[dask]'"


def add_encode_options(enc: argparse.ArgumentParser, choice: argparse._MutuallyExclusiveGroup) -> None:
    choice.add_argument("--palette", metavar="FILE", help=f"label against the palette in FILE ({', '.join(SUFFIXES)}); no k-means")
    enc.add_argument("--shared-palette", action="store_true", help="fit one palette of -k K colours over all inputs, then label each against it")
    enc.add_argument("--frames", action="store_true", help="encode every frame of multi-frame inputs as NAME_0001.kmq, ... with one shared palette")
    enc.add_argument("--scheduler", metavar="ADDRESS", help=f"run the shared-palette stages on Dask: a scheduler address, or 'local' ({DASK_EXTRA})")


def add_palette_command(commands: argparse._SubParsersAction, add_fit_options: Callable[[argparse.ArgumentParser], None]) -> None:
    pal = commands.add_parser(
        "palette",
        help="fit one palette to many images and write it",
        description=f"Fit one k-means palette to all IMAGES and write it to OUT ({', '.join(SUFFIXES)}).",
    )
    pal.add_argument("input", metavar="IMAGES", nargs="+", help="input images (any format Pillow reads)")
    pal.add_argument("-k", type=int, required=True, metavar="K", help=f"palette size 1..{layout.MAX_K}")
    pal.add_argument("-o", "--output", required=True, metavar="OUT", help="palette file; format from its extension")
    pal.add_argument("--frames", action="store_true", help="count every frame of multi-frame inputs (default: the first)")
    pal.add_argument("--jobs", type=int, default=1, metavar="N", help="read N images at once in worker processes; 0: one per CPU")
    pal.add_argument("--scheduler", metavar="ADDRESS", help=f"run on Dask: a scheduler address, or 'local' ({DASK_EXTRA})")
    add_fit_options(pal)
    pal.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    pal.add_argument("--json", action="store_true", help="print the palette and the fit as JSON on stdout")
    pal.set_defaults(run=run_palette)


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.palette or args.shared_palette or args.frames or args.scheduler)


def check_usage(args: argparse.Namespace) -> None:
    """Usage rules of these options (exit 2)."""
    sub = args.usage
    shared = args.shared_palette or (args.frames and not args.palette)
    if shared and not isinstance(args.k, int):
        sub.error("--shared-palette and --frames fit one palette: give -k K (an integer), or --palette FILE")
    if args.shared_palette and args.palette:
        sub.error("give --shared-palette or --palette, not both")
    if args.frames and args.output:
        sub.error("--frames writes NAME_0001.kmq, ...: use --out-dir DIR instead of -o")
    if args.scheduler and not (shared or args.palette):
        sub.error("--scheduler runs the shared-palette stages: give --shared-palette, --frames or --palette")


def connect(scheduler: str, jobs: int):
    """A Dask client (imported only here, so the extra is needed only with --scheduler)."""
    try:
        from . import dask_shared
    except ImportError:
        raise OutputError(f"--scheduler needs dask.distributed; install it with {DASK_EXTRA}") from None
    return dask_shared, dask_shared.connect(scheduler, workers=jobs or os.cpu_count() or 1)


def fit_line(shared: SharedFit, count: int) -> str:
    fit = shared.fit
    assert fit is not None
    value = psnr(fit.mse)
    quality = "lossless" if value == float("inf") else f"PSNR {value:.2f} dB"
    return (
        f"shared palette: k={fit.k} fitted to {count - len(shared.errors)} of {count} inputs ({fit.n_pixels} pixels):"
        f" total cost {fit.cost}, MSE {fit.mse:.2f}, {quality}; {shared.stage_text()}"
    )


def shared_fit(args: argparse.Namespace, paths: list[Path], k: int, settings: FitSettings, client_pair) -> SharedFit:
    check_k(k)  # before reading any input
    if client_pair is None:
        return fit_files(paths, k, settings, frames=args.frames, workers=args.jobs or os.cpu_count() or 1)
    module, client = client_pair
    return module.fit_files(client, paths, k, settings, frames=args.frames)


def run_encode(jobs: list[Job], options: EncodeOptions, args: argparse.Namespace, show_bar: bool) -> int:
    from .cli import encode_many, encode_one  # cli imports this module

    paths = list(dict.fromkeys(job.input for job in jobs))
    if not options.force:  # before the fit, not after it
        taken = [job.output for job in jobs if job.output.exists()]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise OutputError(f"output exists: {taken[0]}{more} (use --force to overwrite)")
    client_pair = connect(args.scheduler, args.jobs) if args.scheduler else None
    try:
        run = batch.run
        if client_pair is not None:
            run = client_pair[0].runner(client_pair[1])
            args.jobs = client_pair[0].worker_count(client_pair[1])
        if args.palette:
            palette = read_palette(args.palette)
            options = replace(options, palette=palette, palette_source=f"{args.palette} ({len(palette)} entries)")
            errors: dict[Path, str] = {}
        else:
            shared = shared_fit(args, paths, args.k, options.settings, client_pair)
            errors = shared.errors
            if shared.fit is None:
                for path, error in errors.items():
                    print(f"kmq: error: {path}: {error}", file=sys.stderr)
                print(f"kmq: error: no input could be read: 0 of {len(paths)}", file=sys.stderr)
                return 1
            if not args.quiet:
                print(f"kmq: {fit_line(shared, len(paths))}", file=sys.stderr)
            options = replace(options, palette=shared.fit.palette, palette_source=f"shared fit over {len(paths) - len(errors)} inputs")
        if len(jobs) == 1 and client_pair is None and not errors:
            return encode_one(jobs[0], options, args, show_bar)
        return encode_many(jobs, options, args, show_bar, runner=skipping_failed(errors, run))
    finally:
        if client_pair is not None:
            client_pair[0].close(client_pair[1])


def run_palette(args: argparse.Namespace) -> int:
    output = Path(args.output)
    check_output(output, overwrite=args.force)
    paths = [Path(p) for p in args.input]
    settings = FitSettings(seed=args.seed, n_init=args.n_init, max_iter=args.max_iter)
    client_pair = connect(args.scheduler, args.jobs) if args.scheduler else None
    try:
        shared = shared_fit(args, paths, args.k, settings, client_pair)
    finally:
        if client_pair is not None:
            client_pair[0].close(client_pair[1])
    for path, error in shared.errors.items():
        print(f"kmq: error: {path}: {error}", file=sys.stderr)
    if shared.fit is None:
        print(f"kmq: error: no input could be read: 0 of {len(paths)}", file=sys.stderr)
        return 1
    write_palette(output, shared.fit.palette, overwrite=args.force)
    if args.json:
        fit = shared.fit
        document = {
            "output": str(output),
            "k": fit.k,
            "channels": int(fit.palette.shape[1]),
            "palette": fit.palette.tolist(),
            "inputs": len(paths),
            "failed": len(shared.errors),
            "pixels": fit.n_pixels,
            "cost": fit.cost,
            "mse": fit.mse,
            "seconds": shared.seconds,
        }
        print(json.dumps(document, indent=2))
    print(f"kmq: {fit_line(shared, len(paths))} -> {output}", file=sys.stderr)
    return 1 if shared.errors else 0
