"""Encoding images larger than memory: a memory-mapped RGB .npy of 0.5 and 1 gigapixel, in row bands.

For each size the script writes a synthetic smooth RGB image (crossed sine
ramps, every channel varying; generated in bands) as a ``.npy`` file in
``bench/out/`` (git-ignored; 3 GB at 1 GP), then encodes it with
``kmcodec.write(path, numpy.load(npy, mmap_mode="r"), k)`` at each K, each in a
fresh process, and deletes the image. It reports seconds, ns per pixel and peak
RSS. The peak is ``VmHWM`` after writing 5 to ``/proc/self/clear_refs`` once the
imports are done (``ru_maxrss`` can carry a parent's peak across fork/exec); it
includes the interpreter and numpy (the "base" column) and the file pages the
pass has mapped and not yet released.

At ``--compare`` megapixels (default 100, where both fit) it also encodes the
same array in memory (``numpy.load`` without mmap, then ``kmcodec.encode``) and
checks that the two files are byte-identical.

Usage: ``python bench/large_image.py [--megapixels 500 1000] [-k 16 256] [--compare 100]``
(Linux only: /proc).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
BAND = 1024  # rows generated at a time, to keep the generator's float temporaries small


def dimensions(megapixels: float) -> tuple[int, int]:
    """Width and height of a 4:3 image with about this many megapixels."""
    height = int(math.sqrt(megapixels * 1e6 * 3 / 4))
    return int(round(megapixels * 1e6 / height)), height


def write_smooth_image(path: Path, width: int, height: int) -> None:
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(height, width, 3))
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    for top in range(0, height, BAND):
        rows = min(BAND, height - top)
        y = np.linspace(top / height, (top + rows) / height, rows, dtype=np.float32)[:, None]
        band = image[top : top + rows]
        band[:, :, 0] = 127.5 + 127.5 * np.sin(6.0 * x + 3.0 * y)
        band[:, :, 1] = 255 * (0.5 * x + 0.5 * y)
        band[:, :, 2] = 127.5 + 127.5 * np.cos(4.0 * y - 2.0 * x * y)
        image.flush()
        # The generator's own mapped pages need not stay resident either.
        from kmcodec._mapped import mapping_of, release

        release(band, mapping_of(image))
    del image


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def phase(args: argparse.Namespace) -> dict:
    import kmcodec

    reset_peak()
    base = status_mb("VmRSS")
    started = time.perf_counter()
    if args.phase == "banded":
        kmcodec.write(args.out, np.load(args.npy, mmap_mode="r"), args.k, seed=0)
    else:  # "memory": the whole array in memory, the reference bytes
        Path(args.out).write_bytes(kmcodec.encode(np.load(args.npy), args.k, seed=0))
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    with open(args.out, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return {"seconds": seconds, "peak_mb": status_mb("VmHWM"), "base_mb": base, "sha256": digest.hexdigest(),
            "bytes": Path(args.out).stat().st_size}


def run_phase(name: str, npy: Path, k: int) -> dict:
    out = npy.with_suffix(f".k{k}.{name}.kmq")
    command = [sys.executable, __file__, "--phase", name, "--npy", str(npy), "--out", str(out), "-k", str(k)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr}")
    out.unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[500, 1000])
    parser.add_argument("-k", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--compare", type=float, default=100, help="megapixels of the banded == in-memory check (0: skip)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--npy", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        args.k = args.k[0]
        print(json.dumps(phase(args)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'MP':>6} {'size':>11} {'K':>4} {'mode':>7} {'seconds':>8} {'ns/px':>6} {'peak RSS MB':>11} {'base MB':>7} {'.kmq MB':>8}")
    sizes = ([args.compare] if args.compare else []) + [mp for mp in args.megapixels if mp != args.compare]
    for mp in sizes:
        width, height = dimensions(mp)
        npy = OUT / f"large_{mp:g}mp.npy"
        started = time.perf_counter()
        write_smooth_image(npy, width, height)
        print(f"# {npy.name}: {width}x{height}, {npy.stat().st_size / 1e9:.2f} GB, written in {time.perf_counter() - started:.0f} s", flush=True)
        try:
            for k in args.k:
                modes = ["banded", "memory"] if mp == args.compare else ["banded"]
                results = {mode: run_phase(mode, npy, k) for mode in modes}
                for mode, r in results.items():
                    pixels = width * height
                    print(
                        f"{mp:6g} {f'{width}x{height}':>11} {k:4d} {mode:>7} {r['seconds']:8.1f} {r['seconds'] / pixels * 1e9:6.1f}"
                        f" {r['peak_mb']:11.0f} {r['base_mb']:7.0f} {r['bytes'] / 1e6:8.1f}",
                        flush=True,
                    )
                    rows.append({"megapixels": mp, "width": width, "height": height, "k": k, "mode": mode, **r})
                if len(results) == 2:
                    same = results["banded"]["sha256"] == results["memory"]["sha256"]
                    print(f"# {mp:g} MP, K={k}: banded file == in-memory file: {'yes' if same else 'NO'}", flush=True)
                    if not same:
                        raise SystemExit(1)
        finally:
            npy.unlink()
    (OUT / "large_image.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
