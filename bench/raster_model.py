"""What a compiled per-pixel model would save: the C prototype against method 2, same labels.

    python bench/raster_model.py [--only NAME ...]

Compiles `raster_model.c` with the system C compiler into a temporary folder,
loads it through ctypes, codes each `sizes.py` case's labels (K = 16 and 256),
checks that they decode back, and prints bytes and one-core decode times
(median of 3) next to the label bytes kmcodec writes now. A measurement only: the format
has no such method (bench/README.md, "How coding 1 was chosen").
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sizes  # noqa: E402  (the same images and palettes as the size table)

OVERHEAD = 28  # header and check bytes of a .kmq file, outside the label stream


def build(folder: Path) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("raster_model: no C compiler (cc or gcc) on PATH")
    lib = folder / "raster_model.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(HERE / "raster_model.c")], check=True)
    dll = ctypes.CDLL(str(lib))
    p, i = ctypes.c_void_p, ctypes.c_int
    dll.encode.restype, dll.encode.argtypes = ctypes.c_size_t, [p, i, i, i, i, p, p]
    dll.decode.restype, dll.decode.argtypes = ctypes.c_int, [p, ctypes.c_size_t, i, i, i, i, p, p]
    return dll


def measure(dll: ctypes.CDLL, palette: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """Prototype bytes and the median decode time; raises if the labels do not come back."""
    lab = np.ascontiguousarray(labels, np.int32)
    pal = np.ascontiguousarray(palette, np.uint8)
    (h, w), (k, c) = lab.shape, pal.shape
    out = np.empty(2 * lab.size + 1024, np.uint8)
    n = dll.encode(lab.ctypes.data, h, w, k, c, pal.ctypes.data, out.ctypes.data)
    back = np.empty_like(lab)
    times = []
    for _ in range(3):
        back.fill(-1)
        start = time.perf_counter()
        status = dll.decode(out.ctypes.data, n, h, w, k, c, pal.ctypes.data, back.ctypes.data)
        times.append(time.perf_counter() - start)
        if status != 0 or not np.array_equal(back, lab):
            raise AssertionError("raster_model: the labels did not decode back")
    return int(n), statistics.median(times)


def main() -> None:
    import kmcodec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(sizes.CASES), help="these images only")
    args = parser.parse_args()
    print("| labels of | K | kmcodec now (method) | C prototype | change | prototype decode (one core) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        dll = build(Path(tmp))
        for name in args.only or sizes.CASES:
            rgb = sizes.image(name)
            for k in (16, 256):
                fit = kmcodec.encode_detailed(rgb, k, seed=0).fit
                coded = kmcodec.pack(fit.palette, fit.labels, compress=True)
                ours = len(coded) - OVERHEAD - fit.palette.size
                method = f"method {coded[24 + fit.palette.size]}" if coded[6] == 1 else "raw"  # as sizes.py reads it (spec §11)
                size, seconds = measure(dll, fit.palette, fit.labels)
                print(f"| {name} | {fit.palette.shape[0]} | {ours} ({method}) | {size} | {size / ours - 1:+.1%} | {seconds * 1e3:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
