"""k-means quality on large photos: kmcodec's MSE against scikit-learn, OpenCV and the best known.

Images (generated here, deterministic; cached as .npy in ``bench/out/quality``):

- ``astronaut_{1,4,12}mp``: the bench photos of ``bench/make_images.py``
  (astronaut, LANCZOS down, NEAREST up, grain);
- ``coffee_12mp``, ``rocket_12mp``, ``chelsea_12mp``: scikit-image's public-domain
  samples resampled smoothly (BICUBIC) to 4000x3000, then a JPEG round trip at
  quality 90 for mild, photo-like noise.

For each image and K (default 16 and 64) it runs ``kmcodec.palette.fit_palette``
(seed 0, default n_init), scikit-learn ``KMeans(n_init=1)`` and ``cv2.kmeans``
(k-means++, 1 attempt, criteria EPS + MAX_ITER (10, 1.0) as bench/run.py), and
``KMeans(n_init=--best-inits)`` as the best-known optimum. Every result is
scored alike: centres rounded to 8 bits, each method's own labels, MSE per
sample. The table gives ``ours / best-known`` and ``ours / best peer`` (best of
scikit-learn n_init=1 and cv2; <= 1 means we match or beat both), and the time
of ours and of scikit-learn.

Peer results are cached in ``bench/out/quality/peers.json`` (they take minutes
at 12 MP); ``--fresh`` recomputes them.

Usage: ``python bench/quality.py [--images ...] [--ks 16 64] [--best-inits 10] [--fresh]``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "quality"
CV2_CRITERIA = (10, 1.0)
SIZE_12MP = (4000, 3000)


def astronaut(size: str) -> np.ndarray:
    sys.path.insert(0, str(HERE))
    from make_images import SIZES, photo

    return photo(*SIZES[size])


def resampled(name: str, size=SIZE_12MP, quality: int = 90) -> np.ndarray:
    """A scikit-image sample, BICUBIC to `size`, then a JPEG round trip for mild photo-like noise."""
    from skimage import data

    big = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


IMAGES = {
    "astronaut_1mp": lambda: astronaut("1mp"),
    "astronaut_4mp": lambda: astronaut("4mp"),
    "astronaut_12mp": lambda: astronaut("12mp"),
    "coffee_12mp": lambda: resampled("coffee"),
    "rocket_12mp": lambda: resampled("rocket"),
    "chelsea_12mp": lambda: resampled("chelsea"),
}


def load(name: str) -> np.ndarray:
    path = OUT / f"{name}.npy"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        np.save(path, IMAGES[name]())
    return np.load(path)


def score(img: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> float:
    """MSE per sample of the image drawn with rounded centres and the method's own labels."""
    pal = np.clip(np.rint(centres), 0, 255).astype(np.int32)
    total = 0
    flat = img.reshape(-1, 3)
    for i in range(0, flat.shape[0], 1 << 20):
        d = flat[i : i + (1 << 20)].astype(np.int32) - pal[labels[i : i + (1 << 20)]]
        total += int(np.einsum("ij,ij->", d, d, dtype=np.int64))
    return total / img.size


def ours(img: np.ndarray, k: int) -> tuple[float, float]:
    from kmcodec.palette import fit_palette

    started = time.perf_counter()
    fit = fit_palette(img, k, seed=0)
    seconds = time.perf_counter() - started
    return fit.cost / img.size, seconds


def sklearn_kmeans(img: np.ndarray, k: int, n_init: int) -> tuple[float, float]:
    from sklearn.cluster import KMeans

    x = img.reshape(-1, 3).astype(np.float32)
    started = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(x)
    seconds = time.perf_counter() - started
    return score(img, km.cluster_centers_, km.labels_), seconds


def cv2_kmeans(img: np.ndarray, k: int) -> tuple[float, float]:
    import cv2

    cv2.setRNGSeed(0)
    x = img.reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, *CV2_CRITERIA)
    started = time.perf_counter()
    _, labels, centres = cv2.kmeans(x, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    seconds = time.perf_counter() - started
    return score(img, centres, labels[:, 0]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--best-inits", type=int, default=10, help="n_init of the best-known scikit-learn run (0: none; best known = best result seen)")
    parser.add_argument("--fresh", action="store_true", help="recompute the cached peer results")
    parser.add_argument("--ours-only", action="store_true", help="skip peers that are not cached")
    args = parser.parse_args()
    cache_path = OUT / "peers.json"
    cache = {} if args.fresh or not cache_path.exists() else json.loads(cache_path.read_text())
    print("| image | K | ours MSE | sklearn n_init=1 | cv2 | best known (sklearn n_init=N) | ours / best known | ours / best peer | ours s | sklearn s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.images:
        img = load(name)
        for k in args.ks:
            mse, seconds = ours(img, k)
            peers = {}
            for method, run in (
                ("sklearn", lambda: sklearn_kmeans(img, k, 1)),
                ("cv2", lambda: cv2_kmeans(img, k)),
                (f"sklearn_n{args.best_inits}", lambda: sklearn_kmeans(img, k, args.best_inits)),
            ):
                key = f"{name}/{k}/{method}"
                if method.startswith("sklearn_n") and args.best_inits == 0:
                    continue
                if key not in cache and not args.ours_only:
                    cache[key] = run()
                    cache_path.write_text(json.dumps(cache, indent=1))
                peers[method] = cache.get(key)
            best_peer = min((p[0] for m, p in peers.items() if p and not m.startswith("sklearn_n")), default=None)
            best = min([mse] + [p[0] for p in peers.values() if p])
            fmt = lambda p: f"{p[0]:.2f}" if p else "-"  # noqa: E731
            sk = peers["sklearn"]
            print(
                f"| {name} | {k} | {mse:.2f} | {fmt(sk)} | {fmt(peers['cv2'])} | {fmt(peers.get(f'sklearn_n{args.best_inits}'))}"
                f" | {mse / best:.4f} | {mse / best_peer:.4f} | {seconds:.2f} | {sk[1]:.1f} | {sk[1] / seconds:.0f}x |"
                if best_peer and sk
                else f"| {name} | {k} | {mse:.2f} | - | - | - | {mse / best:.4f} | - | {seconds:.2f} | - | - |",
                flush=True,
            )
            rows.append({"image": name, "k": k, "ours_mse": mse, "ours_seconds": seconds, "peers": peers})
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
