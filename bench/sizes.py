"""Coding 1 against the formats a user would pick instead, on the same palette and labels.

For each image and K, kmcodec fits the palette once; that palette and those
labels are then stored as .kmq coding 0 and coding 1, PNG-8 (Pillow, optimize),
PNG-8 through oxipng (pyoxipng, level 2), WebP lossless (Pillow, method 6) and
JPEG XL lossless (pillow-jxl-plugin, effort 7). It prints sizes and ratios, the
coding-stage encode time against JPEG XL's and WebP's encodes, decode times to
an RGB array, and peak RSS (VmHWM) of decode and of a whole `kmq encode -z`, each
in a fresh process. Times are medians over --repeats runs, timed the same way
for every format (imports and file reads outside the timer).

    pip install -e ".[bench]"
    python bench/sizes.py                 # all images (12 MP ones take a few minutes)
    python bench/sizes.py --quick         # small images only
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


# ------------------------------------------------------------------ images


def _photo(name: str, size: tuple[int, int], quality: int = 92) -> np.ndarray:
    """A public-domain scikit-image photo, smoothly resampled, with mild JPEG noise (as a camera gives)."""
    from skimage import data

    base = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.LANCZOS)
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def _logo(size: int = 500) -> np.ndarray:
    """Flat shapes with anti-aliased edges and a word: a logo or UI graphic."""
    s = 4
    im = Image.new("RGB", (size * s, size * s), (255, 255, 255))
    d = ImageDraw.Draw(im)
    u = size * s / 500
    d.ellipse([40 * u, 40 * u, 300 * u, 300 * u], fill=(220, 40, 40))
    d.rectangle([200 * u, 180 * u, 460 * u, 420 * u], fill=(30, 90, 200))
    d.polygon([(60 * u, 460 * u), (250 * u, 320 * u), (300 * u, 480 * u)], fill=(250, 200, 20))
    d.ellipse([330 * u, 40 * u, 470 * u, 160 * u], outline=(20, 20, 20), width=int(12 * u))
    d.text((60 * u, 200 * u), "LOGO", fill=(0, 0, 0), font_size=int(60 * u))
    return np.asarray(im.resize((size, size), Image.LANCZOS))


def _screenshot(width: int = 1280, height: int = 800) -> np.ndarray:
    """A UI-like screen: a title bar, panels, buttons and many lines of text."""
    rng = np.random.default_rng(0)
    im = Image.new("RGB", (width, height), (246, 246, 248))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, width, 36], fill=(40, 44, 52))
    d.text((12, 10), "kmcodec - bench/sizes.py - screenshot", fill=(230, 230, 230), font_size=16)
    d.rectangle([0, 36, 220, height], fill=(232, 234, 238))
    for i in range(24):
        d.text((16, 50 + 28 * i), f"item {i:02d}  folder", fill=(60, 60, 70), font_size=14)
    words = "the quick brown fox jumps over the lazy dog while the codec counts bits".split()
    for i in range(34):
        line = " ".join(rng.choice(words, 9))
        d.text((240, 50 + 21 * i), f"{i + 1:3d}  {line}", fill=tuple(int(v) for v in rng.integers(0, 120, 3)), font_size=14)
    for i in range(5):
        x = 260 + 190 * i
        d.rounded_rectangle([x, height - 60, x + 170, height - 24], 8, fill=(60, 120, 220))
        d.text((x + 30, height - 52), f"Button {i}", fill=(255, 255, 255), font_size=15)
    return np.asarray(im)


CASES = {
    "photo_astronaut_12mp": lambda: _photo("astronaut", (4000, 3000)),
    "photo_coffee_12mp": lambda: _photo("coffee", (4000, 3000)),
    "photo_chelsea_0.14mp": lambda: _photo("chelsea", (451, 300)),
    "photo_rocket_0.27mp": lambda: _photo("rocket", (640, 427)),
    "logo_0.25mp": _logo,
    "screenshot_1mp": _screenshot,
}
QUICK = ("photo_chelsea_0.14mp", "photo_rocket_0.27mp", "logo_0.25mp", "screenshot_1mp")


def image(name: str) -> np.ndarray:
    path = IMAGES / f"sizes_{name}.png"
    if not path.exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        Image.fromarray(CASES[name]()).save(path, compress_level=1)
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------ formats


def png8(palette: np.ndarray, labels: np.ndarray) -> bytes:
    p = Image.fromarray(labels.astype(np.uint8), "P")
    p.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    p.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def webp(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", lossless=True, method=6, quality=100)
    return buf.getvalue()


def jxl(rgb: np.ndarray) -> bytes:
    import pillow_jxl  # noqa: F401  (registers the JXL plugin)

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JXL", lossless=True, effort=7)
    return buf.getvalue()


def decode_pillow(data: bytes) -> np.ndarray:
    import pillow_jxl  # noqa: F401

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_rss(code: str) -> float:
    """VmHWM in MB of a fresh interpreter running `code`."""
    probe = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


# ------------------------------------------------------------------ one case


def run_case(name: str, k: int, repeats: int, speed: bool) -> dict:
    import kmcodec

    rgb = image(name)
    fit = kmcodec.encode_detailed(rgb, k, seed=0).fit
    palette, labels = fit.palette, fit.labels
    decoded = palette[labels]
    raw = kmcodec.pack(palette, labels)
    t_code, coded = timed(lambda: kmcodec.pack(palette, labels, compress=True), repeats if speed else 1)
    assert np.array_equal(kmcodec.decode(coded).labels, labels)
    png = png8(palette, labels) if palette.shape[0] <= 256 else None
    row = {
        "image": name,
        "pixels": labels.size,
        "k": int(palette.shape[0]),
        "raw": len(raw),
        "coded": len(coded),
        "coding": coded[6],
        "method": coded[24 + palette.size] if coded[6] == 1 else None,  # spec §11.11: 1 = one Zstandard frame
        "png8": len(png) if png else None,
        "mse": fit.mse,
    }
    import oxipng

    row["oxipng"] = len(oxipng.optimize_from_memory(png, level=2)) if png else None
    t_webp, webp_data = timed(lambda: webp(decoded), repeats if speed else 1)
    t_jxl, jxl_data = timed(lambda: jxl(decoded), repeats if speed else 1)
    row.update(webp=len(webp_data), jxl=len(jxl_data))
    if speed:
        row["encode_s"] = {"kmq_coding": t_code, "webp_m6": t_webp, "jxl_e7": t_jxl}
        row["decode_s"] = {
            "kmq_coded": timed(lambda: kmcodec.decode(coded).to_array(), repeats)[0],
            "kmq_raw": timed(lambda: kmcodec.decode(raw).to_array(), repeats)[0],
            "png8": timed(lambda: decode_pillow(png), repeats)[0] if png else None,
            "webp": timed(lambda: decode_pillow(webp_data), repeats)[0],
            "jxl": timed(lambda: decode_pillow(jxl_data), repeats)[0],
        }
        with tempfile.TemporaryDirectory() as tmp:
            kmq_path, png_path = Path(tmp) / "x.kmq", Path(tmp) / "x.png"
            kmq_path.write_bytes(coded)
            Image.fromarray(rgb).save(png_path, compress_level=1)
            row["rss_mb"] = {
                "decode_coded": peak_rss(f"import kmcodec; kmcodec.read({str(kmq_path)!r}, max_pixels=None).to_array()"),
                "encode_compress": peak_rss(
                    "from kmcodec import cli; cli.main(['encode', %r, '-k', '%d', '-z', '-o', %r, '--force', '-q'])"
                    % (str(png_path), k, str(Path(tmp) / "e.kmq"))
                ),
            }
    return row


def small_file_processes(repeats: int) -> dict:
    """A 512 x 512 decode as a whole process: the first run after install and the warm median, both codings."""
    import kmcodec

    rgb = _photo("astronaut", (512, 512))
    fit = kmcodec.encode_detailed(rgb, 16, seed=0).fit
    codings = {"coding0": False, "coding1": True}
    times: dict[str, list[float]] = {coding: [] for coding in codings}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {}
        for coding, compress in codings.items():
            path = Path(tmp) / f"{coding}.kmq"
            path.write_bytes(kmcodec.pack(fit.palette, fit.labels, compress=compress))
            commands[coding] = [sys.executable, "-c", f"import kmcodec; kmcodec.read({str(path)!r}).to_array()"]
        # The warm runs alternate between the codings, so a busy spell on this
        # noisy machine slows both rather than one.
        for _ in range(repeats + 1):
            for coding, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, check=True)
                times[coding].append(time.perf_counter() - start)
    return {coding: {"first": t[0], "warm": statistics.median(t[1:])} for coding, t in times.items()}


# ------------------------------------------------------------------ report


def ratio(a, b):
    return None if not a or not b else a / b


def report(rows: list[dict], small: dict | None) -> str:
    lines = ["## Sizes (bytes; same palette and labels in every format)", ""]
    lines.append("| image | K | .kmq raw | .kmq coded | method | PNG-8 | oxipng | WebP ll | JXL ll e7 | coded/WebP | coded/JXL | coded/oxipng |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {r['image']} | {r['k']} | {r['raw']} | {r['coded']} | {r.get('method', '-')} | {r['png8']} | {r['oxipng']} | {r['webp']} | {r['jxl']}"
            f" | {f(ratio(r['coded'], r['webp']))} | {f(ratio(r['coded'], r['jxl']))} | {f(ratio(r['coded'], r['oxipng']))} |"
        )
    for peer in ("webp", "jxl", "oxipng"):
        values = [ratio(r["coded"], r[peer]) for r in rows if r[peer]]
        lines.append(f"\nmedian coded/{peer}: {statistics.median(values):.3f}   max: {max(values):.3f}   ({len(values)} cases)")
    timed_rows = [r for r in rows if "encode_s" in r]
    if timed_rows:
        lines += ["", "## Speed (median seconds) and peak RSS (MB, fresh process)", ""]
        lines.append("| image | K | kmq coding-stage encode | WebP m6 encode | JXL e7 encode | kmq coded decode | kmq raw decode | PNG-8 decode | WebP decode | JXL decode | decode RSS | encode -z RSS |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in timed_rows:
            e, d, m = r["encode_s"], r["decode_s"], r["rss_mb"]
            g = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(
                f"| {r['image']} | {r['k']} | {g(e['kmq_coding'])} | {g(e['webp_m6'])} | {g(e['jxl_e7'])} | {g(d['kmq_coded'])}"
                f" | {g(d['kmq_raw'])} | {g(d['png8'])} | {g(d['webp'])} | {g(d['jxl'])} | {m['decode_coded']:.0f} | {m['encode_compress']:.0f} |"
            )
    if small:
        lines += ["", "## 512 x 512 decode as a whole process (s)", ""]
        for coding, t in small.items():
            lines.append(f"- {coding}: first run {t['first']:.3f}, warm median {t['warm']:.3f}")
        lines.append(f"- warm coding 1 / coding 0: {small['coding1']['warm'] / small['coding0']['warm']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small images only")
    ap.add_argument("--only", nargs="*", help="image names to run")
    ap.add_argument("--ks", nargs="*", type=int, default=[16, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-speed", action="store_true", help="sizes only")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "sizes.json")
    args = ap.parse_args()
    names = args.only or (QUICK if args.quick else list(CASES))
    rows = []
    for name in names:
        for k in args.ks:
            print(f"{name} k={k} ...", file=sys.stderr, flush=True)
            rows.append(run_case(name, k, args.repeats, speed=not args.no_speed and ("12mp" in name or args.quick)))
    small = None if args.no_speed else small_file_processes(args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "small": small}, indent=2, default=float))
    print(report(rows, small))


if __name__ == "__main__":
    main()
