"""Benchmark kmcodec's palette fit and encode against the quantisers a user would pick instead.

Usage (after ``pip install -e ".[bench]"``)::

    python bench/run.py                 # full run: 1, 4, 12 MP photos, 12 MP smooth photo, 12 MP noise; K = 16, 256
    python bench/run.py --quick         # smoke run: small images, fast peers only
    python bench/run.py --repeats 5 --json bench/out/results.json

Every method runs in its own subprocess (``--worker``), which loads the image
and imports the method's modules, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), runs the method ``repeats`` times (the same number
for every method) and reports the median time, the peak RSS during the runs,
and the MSE/PSNR of its result decoded to RGB against the original, computed
the same way for every method. External programs (pngquant, a cold ``kmq
encode``) report their own peak, VmHWM polled from /proc. Markdown goes to
stdout, JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

METHODS = {
    "ours_fit": "kmcodec fit_palette",
    "ours_encode": "kmcodec.encode",
    "kmq_cold": "`kmq encode` cold process, PNG in, .kmq out (1 run)",
    "sklearn_1k": "sklearn KMeans on 1k sampled pixels + predict all",
    "sklearn_10k": "sklearn KMeans on 10k sampled pixels + predict all",
    "sklearn_full": "sklearn KMeans n_init=1 on all pixels (full data)",
    "cv2_1k": "cv2.kmeans ++ on 1k sampled pixels + nearest centre for all",
    "cv2_10k": "cv2.kmeans ++ on 10k sampled pixels + nearest centre for all",
    "cv2_full": "cv2.kmeans ++, 1 attempt, on all pixels (full data)",
    "pil_mediancut": "Pillow MEDIANCUT",
    "pil_mediancut_kmeans": "Pillow MEDIANCUT + k-means until <= 9 pixels change (kmeans=10)",
    "pngquant": "pngquant --nofs --speed 3 (time includes its PNG decode + deflate)",
}
# Full-data k-means: skipped where one run takes minutes (see _skip_reason).
FULL_DATA = {"sklearn_full", "cv2_full", "pil_mediancut_kmeans"}
CV2_CRITERIA = (10, 1.0)  # max_iter, eps: the OpenCV k-means tutorial's criteria
# Pillow's quantize(kmeans=N) is no iteration count: it repeats k-means passes
# until at most N - 1 pixels change entry (libImaging/Quant.c, k_means threshold).
PIL_KMEANS = 10
SAMPLES = {"1k": 1_000, "10k": 10_000}


# --------------------------------------------------------------------------- methods
# Each returns the reconstruction as an (H, W, 3) uint8 RGB array; the timed part is
# everything from the pixel array to the method's own result (labels + palette, or
# the encoded bytes), the reconstruction for scoring is done outside the timing.


def _ours_fit(img, k, seed):
    from kmcodec.palette import fit_palette

    fit = fit_palette(img, k, seed=seed)
    return lambda: fit.palette[fit.labels]


def _ours_encode(img, k, seed):
    import kmcodec

    data = kmcodec.encode(img, k, seed=seed)
    return lambda: kmcodec.decode(data).to_array()


def _sample(x, n, seed):
    """n distinct pixels drawn at random: the sample the peers' colour-quantisation recipes fit on."""
    rng = np.random.default_rng(seed)
    return x[rng.choice(x.shape[0], size=min(n, x.shape[0]), replace=False)]


def _sklearn(img, k, seed, samples=None):
    """scikit-learn's colour-quantisation example: fit on a random sample, predict every pixel (or fit all)."""
    from sklearn.cluster import KMeans

    x = img.reshape(-1, 3).astype(np.float32)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed)
    if samples is None:
        labels = km.fit(x).labels_
    else:
        labels = km.fit(_sample(x, samples, seed)).predict(x)
    pal = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
    return lambda: pal[labels].reshape(img.shape)


def _nearest_centre(x, centres):
    """Index of the nearest centre for every row of x. OpenCV has no predict; a k-d tree over the
    centres (scipy, which scikit-learn installs) is the fastest generic one we found: at 12 MP about
    3x faster than numpy's matmul-and-argmin and than cv2.batchDistance, on all cores."""
    from scipy.spatial import cKDTree

    return cKDTree(centres).query(x, workers=-1)[1]


def _cv2(img, k, seed, samples=None):
    import cv2

    cv2.setRNGSeed(seed)
    x = img.reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, CV2_CRITERIA[0], CV2_CRITERIA[1])
    fit_on = x if samples is None else _sample(x, samples, seed)
    _, labels, centres = cv2.kmeans(fit_on, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    labels = labels[:, 0] if samples is None else _nearest_centre(x, centres)
    pal = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    return lambda: pal[labels].reshape(img.shape)


def _pil(img, k, seed, kmeans=0):
    from PIL import Image

    q = Image.fromarray(img).quantize(k, method=Image.Quantize.MEDIANCUT, kmeans=kmeans, dither=Image.Dither.NONE)
    return lambda: np.asarray(q.convert("RGB"))


def _run_polled(cmd, stdin=None) -> tuple[bytes, float]:
    """Run an external program; return its stdout and its own peak RSS (VmHWM, MB, polled every ms).

    ru_maxrss of a child can carry the parent's peak across fork and exec, so
    the child's /proc status is read instead.
    """
    import threading

    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]

    def poll():
        while proc.poll() is None:
            try:
                for line in open(f"/proc/{proc.pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.001)

    watcher = threading.Thread(target=poll)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.decode(errors='replace').strip()}")
    return out, peak[0] / 1024


def _pngquant(img, k, seed, png_path, peaks):
    import io

    from PIL import Image

    with open(png_path, "rb") as stdin:
        out, peak = _run_polled(["pngquant", "--nofs", "--speed", "3", str(k), "-"], stdin=stdin)
    peaks.append(peak)
    return lambda: np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))


def _kmq_cold(img, k, seed, png_path, peaks):
    """A fresh interpreter: imports, PNG decode, fit, pack, atomic write: what a user waits for."""
    import kmcodec

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.kmq"
        cmd = [sys.executable, "-m", "kmcodec", "encode", png_path, "-k", str(k), "--seed", str(seed), "-o", str(out), "-q"]
        _, peak = _run_polled(cmd)
        peaks.append(peak)
        data = out.read_bytes()
    return lambda: kmcodec.decode(data).to_array()


def _import_outside_the_timer(method: str) -> None:
    """Load each method's modules before the clock starts, so no repeat pays for imports."""
    import PIL.Image  # noqa: F401

    if method.startswith("ours"):
        import kmcodec  # noqa: F401
        import kmcodec.palette  # noqa: F401
    elif method.startswith("sklearn"):
        import sklearn.cluster  # noqa: F401
    elif method.startswith("cv2"):
        import cv2  # noqa: F401
        import scipy.spatial  # noqa: F401


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(method: str, image: str, k: int, repeats: int, seed: int) -> dict:
    """Run one method on one image in this process; return its measurements."""
    img = np.load(image) if image.endswith(".npy") else None
    if img is None:
        from PIL import Image

        img = np.asarray(Image.open(image).convert("RGB")).copy()
    png_path = image[:-4] + ".png"
    external_peaks: list[float] = []  # pngquant's and the cold process's own peaks
    fn = {
        "ours_fit": _ours_fit,
        "ours_encode": _ours_encode,
        "kmq_cold": lambda i, k, s: _kmq_cold(i, k, s, png_path, external_peaks),
        "sklearn_1k": lambda i, k, s: _sklearn(i, k, s, SAMPLES["1k"]),
        "sklearn_10k": lambda i, k, s: _sklearn(i, k, s, SAMPLES["10k"]),
        "sklearn_full": _sklearn,
        "cv2_1k": lambda i, k, s: _cv2(i, k, s, SAMPLES["1k"]),
        "cv2_10k": lambda i, k, s: _cv2(i, k, s, SAMPLES["10k"]),
        "cv2_full": _cv2,
        "pil_mediancut": _pil,
        "pil_mediancut_kmeans": lambda i, k, s: _pil(i, k, s, kmeans=PIL_KMEANS),
        "pngquant": lambda i, k, s: _pngquant(i, k, s, png_path, external_peaks),
    }[method]
    _import_outside_the_timer(method)
    rss_before = _rss_mb()
    reset = _peak_rss_reset()
    times = []
    recon = None
    for _ in range(repeats):
        t = time.perf_counter()
        recon = fn(img, k, seed)
        times.append(time.perf_counter() - t)
    peak = max(external_peaks) if external_peaks else _peak_rss_mb()
    out = recon()
    d = out.astype(np.int32) - img.astype(np.int32)
    mse = float(np.einsum("ijk,ijk->", d, d, dtype=np.int64)) / img.size
    n_colours = int(np.unique(out.reshape(-1, 3) @ np.array([65536, 256, 1])).size)
    res = {
        "method": method,
        "times": times,
        "time": statistics.median(times),
        "mse": mse,
        "psnr": 10 * np.log10(255**2 / mse) if mse > 0 else float("inf"),
        "k_out": n_colours,
        "peak_rss_mb": peak,
        "rss_before_mb": rss_before,
        "peak_reset": reset,
        "peak_is": "the external program's own VmHWM" if external_peaks else "this worker's VmHWM",
    }
    if method == "ours_encode":
        res.update(_decode_times(img, k, seed, repeats))
    return res


def _decode_times(img, k, seed, repeats) -> dict:
    """.kmq bytes -> RGB array, vs the same palette image as PNG-8 through Pillow."""
    import io

    from PIL import Image

    import kmcodec

    data = kmcodec.encode(img, k, seed=seed)
    arr = kmcodec.decode(data).to_array()
    from kmcodec.palette import fit_palette

    fit = fit_palette(img, k, seed=seed)
    p = Image.fromarray(fit.labels.astype(np.uint8), mode="L") if fit.k <= 256 else None
    png = None
    if p is not None:
        p = p.convert("P")
        pal = np.zeros((256, 3), np.uint8)
        pal[: fit.k] = fit.palette
        p.putpalette(pal.tobytes())
        buf = io.BytesIO()
        p.save(buf, format="PNG", compress_level=6)
        png = buf.getvalue()

    def med(f):
        ts = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    out = {"kmq_bytes": len(data), "decode_kmq": med(lambda: kmcodec.decode(data).to_array())}
    if png is not None:
        out["png8_bytes"] = len(png)
        out["decode_png8"] = med(lambda: np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    assert arr.shape == img.shape
    out["decode_kmq_peak_rss_mb"] = _decode_peak_rss(data)
    if png is not None:
        out["speedup_vs_png8"] = out["decode_png8"] / out["decode_kmq"]
    return out


def _decode_peak_rss(data: bytes) -> float:
    """Peak RSS (VmHWM, MB) of a fresh interpreter that reads this .kmq file and decodes it to an ndarray."""

    with tempfile.NamedTemporaryFile(suffix=".kmq") as f:
        f.write(data)
        f.flush()
        code = (
            "import kmcodec; kmcodec.read(%r, max_pixels=None).to_array()\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])" % f.name
        )
        return int(subprocess.check_output([sys.executable, "-c", code])) / 1024


# --------------------------------------------------------------------------- driver


def _have(method: str) -> bool:
    try:
        if method.startswith("sklearn"):
            import sklearn  # noqa: F401
        if method.startswith("cv2"):
            import cv2  # noqa: F401
        if method == "pngquant":
            return shutil.which("pngquant") is not None
        return True
    except Exception:
        return False


def _skip_reason(method: str, image: str, k: int, quick: bool) -> str | None:
    if method == "sklearn_full" and (k > 64 or "noise" in image):
        return "skipped (minutes per run)"
    if method == "cv2_full" and (k > 64 or "noise" in image):
        return "skipped (minutes per run)"
    if method == "pil_mediancut_kmeans" and (k > 64 or "noise" in image):
        return "skipped (minutes per run)"
    if quick and method in FULL_DATA and k > 64:
        return "skipped (--quick)"
    return None


def run_one(method, npy, k, repeats, seed) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(npy), str(k), str(repeats), str(seed)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        return {"method": method, "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def baseline_rss() -> float:
    code = "import numpy, PIL.Image;\nfor l in open('/proc/self/status'):\n    l.startswith('VmHWM:') and print(int(l.split()[1])/1024)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)


def _peer_images(npys: dict) -> set[str]:
    """The largest nearest-neighbour photo, the smooth photo and the noise image get every peer."""
    photos = [n for n in npys if n.startswith("photo_") and "smooth" not in n]
    return {photos[-1]} | {n for n in npys if "smooth" in n or n.startswith("noise")}


def _fmt_t(r):
    return f"{r['time']:.2f} s" if "time" in r else r.get("skip", r.get("error", "-"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small images, fast peers only")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of every method (median reported)")
    ap.add_argument("--ks", type=int, nargs="+", default=[16, 256])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=HERE / "out" / "results.json")
    ap.add_argument("--images", type=Path, default=HERE / "images")
    ap.add_argument("--only", nargs="+", default=None, help="run only these methods")
    ap.add_argument("--worker", nargs=5, metavar=("METHOD", "IMAGE", "K", "REPEATS", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, image, k, rep, seed = args.worker
        print(json.dumps(worker(m, image, int(k), int(rep), int(seed))))
        return

    from make_images import make_all
    from PIL import Image

    paths = make_all(args.images, quick=args.quick)
    npys = {}
    for name, png in paths.items():
        npy = png.with_suffix(".npy")
        if not npy.exists():
            np.save(npy, np.asarray(Image.open(png).convert("RGB")))
        npys[name] = npy
    base = baseline_rss()
    methods = [m for m in METHODS if (args.only is None or m in args.only)]
    avail = {m: _have(m) for m in methods}
    peer_images = _peer_images(npys)
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "numpy": np.__version__},
        "baseline_rss_mb": base,
        "repeats": args.repeats,
        "images": {},
    }
    print(f"# kmcodec bench ({'quick' if args.quick else 'full'}), baseline RSS (python+numpy+PIL idle) {base:.0f} MB")
    print(f"# every method: {args.repeats} repeats, median time; `kmq encode` cold: 1 run\n")
    for name, npy in npys.items():
        shape = np.load(npy, mmap_mode="r").shape
        for k in args.ks:
            rows = {}
            for m in methods:
                if name not in peer_images and m not in ("ours_fit", "ours_encode"):
                    continue  # smaller photos show how our time scales
                if not avail[m]:
                    rows[m] = {"method": m, "skip": "not available"}
                    continue
                why = _skip_reason(m, name, k, args.quick)
                if why:
                    rows[m] = {"method": m, "skip": why}
                    continue
                print(f"  running {m} on {name} k={k} ...", file=sys.stderr, flush=True)
                rows[m] = run_one(m, npy, k, 1 if m == "kmq_cold" else args.repeats, args.seed)
            results["images"].setdefault(name, {"shape": list(shape)})[str(k)] = rows
            _print_table(name, shape, k, rows, base)
    if "ours_fit" in methods:
        _print_scaling(results, args.ks)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {args.json}")


def _print_table(name, shape, k, rows, base):
    h, w = shape[:2]
    ours = rows.get("ours_encode") if "time" in rows.get("ours_encode", {}) else rows.get("ours_fit", {})
    print(f"\n## {name} ({w}x{h}, {w * h / 1e6:.1f} MP), K={k}\n")
    print("| method | time (median) | MSE | PSNR dB | colours | peak RSS MB (-baseline) | ours faster by |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, r in rows.items():
        if "time" not in r:
            print(f"| {METHODS[m]} | {_fmt_t(r)} | - | - | - | - | - |")
            continue
        ratio = f"{r['time'] / ours['time']:.1f}x" if ours and "time" in ours and not m.startswith(("ours", "kmq")) else ""
        # An external program's peak is its own process, with no Python baseline in it.
        peak = f"{r['peak_rss_mb']:.0f}" + (" (own process)" if "external" in r.get("peak_is", "") else f" ({r['peak_rss_mb'] - base:+.0f})")
        print(f"| {METHODS[m]} | {r['time']:.2f} s | {r['mse']:.2f} | {r['psnr']:.2f} | {r['k_out']} | {peak} | {ratio} |")
    enc = rows.get("ours_encode", {})
    if "decode_kmq" in enc:
        line = (
            f"\nDecode to RGB ndarray: .kmq {enc['decode_kmq'] * 1000:.0f} ms ({enc['kmq_bytes']} B,"
            f" peak RSS {enc['decode_kmq_peak_rss_mb']:.0f} MB in a fresh process)"
        )
        if "decode_png8" in enc:
            line += f", Pillow PNG-8 {enc['decode_png8'] * 1000:.0f} ms ({enc['png8_bytes']} B): .kmq {enc['speedup_vs_png8']:.1f}x faster"
        print(line)


def _print_scaling(results, ks):
    print("\n## Our time vs image size (photo)\n")
    print("| image | MP | " + " | ".join(f"K={k} fit" for k in ks) + " | " + " | ".join(f"K={k} encode" for k in ks) + " |")
    print("|---|---:|" + "---:|" * (2 * len(ks)))
    for name, d in results["images"].items():
        if not name.startswith("photo"):
            continue
        h, w = d["shape"][:2]
        cells = []
        for m in ("ours_fit", "ours_encode"):
            for k in ks:
                r = d.get(str(k), {}).get(m, {})
                cells.append(f"{r['time']:.2f} s ({r['time'] / (w * h / 1e6):.3f} s/MP)" if "time" in r else "-")
        print(f"| {name} | {w * h / 1e6:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
