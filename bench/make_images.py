"""Generate the benchmark images deterministically into ``bench/images/``.

The photo is scikit-image's ``astronaut()`` sample (NASA, public domain),
resampled with Pillow (LANCZOS down, NEAREST up) to each size and given a
little seeded grain so the 12 MP version has roughly 300k distinct colours.
NEAREST up repeats each colour in blocks of about 8 pixels, which flatters
histogram methods, so the largest size also comes as a smooth photo: the same
sample upscaled with BICUBIC and given mild JPEG noise (quality 90), as a
camera would deliver it. The noise image is uniform random RGB. Files are PNG,
git-ignored.

Usage: ``python bench/make_images.py [--quick] [--out bench/images]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZES = {"1mp": (1155, 866), "4mp": (2310, 1732), "12mp": (4000, 3000)}
QUICK_SIZES = {"0.25mp": (577, 433), "1mp": (1155, 866)}
GRAIN_FRACTION = 0.01  # share of samples given +-1 grain; sets the distinct-colour count
JPEG_QUALITY = 90  # the smooth photo's mild compression noise


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """The astronaut sample resampled to width x height with seeded grain.

    LANCZOS to ~35% of the 12 MP linear size, NEAREST up to (width, height),
    then +-1 grain on a seeded ``GRAIN_FRACTION`` of the samples: at 12 MP this
    gives ~300k distinct colours (a direct LANCZOS upscale gives ~850k).
    """
    from skimage import data

    mid = (max(1, round(width * 0.35)), max(1, round(height * 0.35)))
    base = Image.fromarray(data.astronaut()).resize(mid, Image.LANCZOS)
    out = np.asarray(base.resize((width, height), Image.NEAREST)).astype(np.int16)
    rng = np.random.default_rng(seed)
    grain = rng.integers(-1, 2, out.shape, dtype=np.int16)
    grain *= rng.random(out.shape, dtype=np.float32) < GRAIN_FRACTION
    return np.clip(out + grain, 0, 255).astype(np.uint8)


def smooth_photo(width: int, height: int) -> np.ndarray:
    """The astronaut sample upscaled with BICUBIC, then saved and read back as JPEG (quality 90)."""
    import io

    from skimage import data

    up = Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC)
    buf = io.BytesIO()
    up.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Uniform random RGB."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_all(out: Path, quick: bool = False) -> dict[str, Path]:
    """Write every benchmark image that is missing; return name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    sizes = QUICK_SIZES if quick else SIZES
    for name, (w, h) in sizes.items():
        paths[f"photo_{name}"] = out / f"photo_{name}.png"
    big = max(sizes, key=lambda n: sizes[n][0] * sizes[n][1])
    paths[f"photo_smooth_{big}"] = out / f"photo_smooth_{big}.png"
    paths[f"noise_{big}"] = out / f"noise_{big}.png"
    for key, path in paths.items():
        if path.exists():
            continue
        kind, size = key.rsplit("_", 1)
        w, h = sizes[size]
        arr = {"photo": photo, "photo_smooth": smooth_photo, "noise": noise}[kind](w, h)
        Image.fromarray(arr).save(path, compress_level=1)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "images")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for key, path in make_all(args.out, args.quick).items():
        arr = np.asarray(Image.open(path))
        keys = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
        print(f"{key}: {path} {arr.shape} distinct={np.unique(keys).size}")


if __name__ == "__main__":
    main()
