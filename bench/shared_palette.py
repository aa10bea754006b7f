"""Shared palettes at dataset scale: the fit, its memory, and Dask against local processes.

Images: ``--count`` (default 200) crops of the bench photo (``make_images.photo``
at 4000x3000), each resampled by a seeded factor in 0.8..1.25 (LANCZOS) to
1-4 MP, written once as PNG into the git-ignored ``bench/images/shared/``.

Reports, as markdown on stdout (progress on stderr):

1. the shared fit over the whole set (``fit_shared_palette``) against one fit
   on the pooled pixels (``fit_palette`` on all pixels concatenated): same
   palette, or the cost difference;
2. peak RSS (VmHWM, each in a fresh process) of ``fit_shared_palette`` on the
   first 50, 100 and 200 images;
3. the whole pipeline (map, reduce, fit, label + write) in one process, with
   ``--jobs 2`` (a local process pool) and on a Dask ``LocalCluster`` of 2
   worker processes, with seconds per stage.

Usage: ``python bench/shared_palette.py [--count 200] [--k 16] [--quick]``
(``--quick``: 24 images of 0.25-1 MP, RSS at 6/12/24). Needs the ``bench``
extra (scikit-image, for the photo) and the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kmcodec  # noqa: E402
from kmcodec import batch  # noqa: E402
from kmcodec.batch import EncodeOptions, output_paths  # noqa: E402
from kmcodec.choose_k import FitSettings  # noqa: E402
from kmcodec.palette import fit_palette  # noqa: E402
from kmcodec.shared_batch import finish_fit, map_reduce_local  # noqa: E402

SOURCE = (4000, 3000)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_set(out: Path, count: int, mp_range: tuple[float, float]) -> list[Path]:
    """`count` seeded crops + resamples of the bench photo, made once (module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"shared_{i:04d}.png" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    if not missing:
        return paths
    from make_images import photo

    source = Image.fromarray(photo(*SOURCE))
    rng = np.random.default_rng(0)
    plan = []
    for _ in range(count):
        mp = rng.uniform(*mp_range) * 1e6
        scale = rng.uniform(0.8, 1.25)
        aspect = rng.uniform(0.6, 1.6)
        w = int(min(SOURCE[0], max(64, (mp / scale**2 * aspect) ** 0.5)))
        h = int(min(SOURCE[1], max(64, mp / scale**2 / w)))
        x, y = int(rng.integers(0, SOURCE[0] - w + 1)), int(rng.integers(0, SOURCE[1] - h + 1))
        plan.append((x, y, w, h, scale))
    for i, (path, (x, y, w, h, scale)) in enumerate(zip(paths, plan)):
        if path.exists():
            continue
        crop = source.crop((x, y, x + w, y + h)).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        crop.save(path, compress_level=1)
        if i % 20 == 0:
            log(f"made {i + 1}/{count} images")
    return paths


def megapixels(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        with Image.open(p) as im:
            total += im.width * im.height
    return total / 1e6


def rss_of_fit(paths: list[Path], k: int) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of fit_shared_palette on `paths`, in a fresh process."""
    code = (
        "import sys, time, json, kmcodec; from pathlib import Path\n"
        "paths = [Path(p) for p in json.load(sys.stdin)]\n"
        "t = time.perf_counter(); kmcodec.fit_shared_palette(paths, int(sys.argv[1])); s = time.perf_counter() - t\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps([int(hwm) / 1024, s]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(k)], input=json.dumps([str(p) for p in paths]), capture_output=True, text=True, check=True
    )
    return tuple(json.loads(result.stdout))  # type: ignore[return-value]


def pipeline_local(paths: list[Path], k: int, workers: int, out: Path) -> dict[str, float]:
    """Map, reduce, fit, label + write with `workers` local processes (1: this process)."""
    settings = FitSettings()
    started = time.perf_counter()
    total, errors, seconds = map_reduce_local(paths, frames=False, workers=workers)
    shared = finish_fit(total, errors, seconds, k, settings)
    t = time.perf_counter()
    options = EncodeOptions(palette=shared.fit.palette, palette_source="bench", force=True)
    outcomes = batch.run(output_paths(paths, out), options, workers=workers)
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes if o.error][:3]
    return {**shared.seconds, "label": time.perf_counter() - t, "total": time.perf_counter() - started, "palette": shared.fit.palette}


def pipeline_dask(paths: list[Path], k: int, workers: int, out: Path) -> dict[str, float]:
    """The same on the LocalCluster of `workers` processes `--scheduler local` makes (start-up not counted)."""
    from kmcodec import dask_shared

    client = dask_shared.connect("local", workers=workers)  # what `--scheduler local` makes
    try:
        client.run(lambda: __import__("kmcodec"))  # warm the workers' imports, as a long-lived cluster would be
        started = time.perf_counter()
        shared = dask_shared.fit_files(client, paths, k, FitSettings())
        t = time.perf_counter()
        options = EncodeOptions(palette=shared.fit.palette, palette_source="bench", force=True)
        outcomes = dask_shared.runner(client)(output_paths(paths, out), options)
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes if o.error][:3]
        return {**shared.seconds, "label": time.perf_counter() - t, "total": time.perf_counter() - started, "palette": shared.fit.palette}
    finally:
        dask_shared.close(client)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=Path, default=HERE / "images" / "shared")
    ap.add_argument("--skip-pooled", action="store_true", help="skip the pooled-pixels fit (it holds every pixel at once)")
    ap.add_argument("--sections", default="1,2,3", help="which parts to run (default 1,2,3)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each pipeline, interleaved; medians reported")
    args = ap.parse_args()
    count, mp_range, folder = args.count, (1.0, 4.0), args.images
    if args.quick:
        count, mp_range, folder = 24, (0.25, 1.0), folder.with_name("shared_quick")
    paths = make_set(folder, count, mp_range)
    mp = megapixels(paths)
    print(f"# Shared palettes: {count} images, {mp:.0f} MP in all ({mp_range[0]}-{mp_range[1]} MP each), k={args.k}, {os.cpu_count()} CPUs\n")

    sections = set(args.sections.split(","))
    if "1" in sections:
        fit_versus_pooled(paths, args)
    if "2" in sections:
        peak_rss(paths, args.k)
    if "3" in sections:
        pipelines(paths, args.k, args.repeats)


def fit_versus_pooled(paths: list[Path], args: argparse.Namespace) -> None:
    log("shared fit ...")
    t = time.perf_counter()
    hist = kmcodec.shared.accumulate(paths)
    fit = kmcodec.fit_histogram(hist, args.k)
    shared_s = time.perf_counter() - t
    print("## 1. Shared fit vs one fit on the pooled pixels\n")
    print("| fit | seconds | cost (SSE) | palette |")
    print("|---|---|---|---|")
    print(f"| shared (merged histograms, {hist.n_colours} distinct colours) | {shared_s:.1f} | {fit.cost} | - |")
    if not args.skip_pooled:
        log("pooled fit ...")
        pooled = np.concatenate([np.asarray(Image.open(p).convert("RGB")).reshape(-1, 1, 3) for p in paths])
        t = time.perf_counter()
        pfit = fit_palette(pooled, args.k)
        pooled_s = time.perf_counter() - t
        del pooled
        same = np.array_equal(pfit.palette, fit.palette)
        diff = (fit.cost - pfit.cost) / pfit.cost * 100
        print(f"| pooled pixels (fit only, not reading) | {pooled_s:.1f} | {int(pfit.cost)} | {'identical' if same else f'differs; cost {diff:+.3f}%'} |")
    print()



def peak_rss(paths: list[Path], k: int) -> None:
    count = len(paths)
    print("## 2. Peak RSS of fit_shared_palette (fresh process each)\n")
    print("| images | MP | peak RSS (VmHWM) MB | seconds |")
    print("|---|---|---|---|")
    for n in (count // 4, count // 2, count):
        log(f"RSS at {n} images ...")
        rss, s = rss_of_fit(paths[:n], k)
        print(f"| {n} | {megapixels(paths[:n]):.0f} | {rss:.0f} | {s:.1f} |")
    print()



def pipelines(paths: list[Path], k: int, repeats: int) -> None:
    print("## 3. The whole pipeline: one process, --jobs 2, Dask LocalCluster (2 worker processes)\n")
    print("| run | map | reduce | fit | label + write | total s | vs one process |")
    print("|---|---|---|---|---|---|---|")
    configs = (("one process", pipeline_local, 1), ("--jobs 2", pipeline_local, 2), ("Dask LocalCluster(2)", pipeline_dask, 2))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        for r in range(repeats):
            for name, fn, workers in configs if r % 2 == 0 else reversed(configs):  # alternate the order against drifting load
                log(f"pipeline {r + 1}/{repeats}: {name} ...")
                out = Path(tmp) / f"{r}_{name.replace(' ', '_').replace('(', '').replace(')', '')}"
                out.mkdir()
                results[name].append(fn(paths, k, workers, out))
                shutil.rmtree(out)
        runs = {name: {key: (rs[0][key] if key == "palette" else float(np.median([x[key] for x in rs]))) for key in rs[0]} for name, rs in results.items()}
        base = runs["one process"]["total"]
        for name, r in runs.items():
            print(
                f"| {name} | {r['map']:.1f} | {r['reduce']:.2f} | {r['fit']:.2f} | {r['label']:.1f} | {r['total']:.1f} | {base / r['total']:.2f}x |"
            )
        same = all(np.array_equal(r["palette"], runs["one process"]["palette"]) for r in runs.values())
        print(f"\nSame palette in all three runs: {'yes' if same else 'NO'}. "
              f"Dask / --jobs 2 wall time: {runs['Dask LocalCluster(2)']['total'] / runs['--jobs 2']['total']:.2f}x "
              f"(target <= 1.3x); medians of {repeats} run(s); cluster start-up not counted.")


if __name__ == "__main__":
    main()
