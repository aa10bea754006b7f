"""Time and peak memory of a 100-megapixel encode and decode, each in a fresh process.

The image is synthetic and smooth (crossed sine ramps, every colour channel
varying), generated in memory in bands, so nothing is read from disk. Each phase
runs in its own subprocess and reports its peak RSS from
``resource.getrusage``, so one phase's high-water mark cannot hide another's:

- ``generate``: the image alone, the floor under ``encode``;
- ``encode``: generate, then ``kmcodec.encode``, then write the .kmq;
- ``decode``: ``kmcodec.read`` and ``to_array()``, the whole image in memory;
- ``stream``: ``kmcodec.read`` and ``KmqImage.iter_rows``, one band at a time.

``decode`` and ``stream`` also return the CRC-32 of the pixels, which must agree.
100 MP is over Pillow's default pixel limit (89,478,485), so the decoder runs with
``max_pixels=None``.

Usage: ``python bench/large_image.py [--megapixels 100] [-k 16] [--rows 256] [--keep PATH]``
(POSIX only: ``resource``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

BAND = 512  # rows generated at a time, to keep the generator's float temporaries small


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def dimensions(megapixels: float) -> tuple[int, int]:
    """Width and height of a 4:3 image with about this many megapixels."""
    height = int(math.sqrt(megapixels * 1e6 * 3 / 4))
    return int(round(megapixels * 1e6 / height)), height


def smooth_image(width: int, height: int) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    for top in range(0, height, BAND):
        y = np.linspace(top / height, min(top + BAND, height) / height, min(BAND, height - top), dtype=np.float32)[:, None]
        image[top : top + y.shape[0], :, 0] = 127.5 + 127.5 * np.sin(6.0 * x + 3.0 * y)
        image[top : top + y.shape[0], :, 1] = 255 * (0.5 * x + 0.5 * y)
        image[top : top + y.shape[0], :, 2] = 127.5 + 127.5 * np.cos(4.0 * y - 2.0 * x * y)
    return image


def phase(name: str, args: argparse.Namespace) -> dict:
    import kmcodec

    started = time.perf_counter()
    result: dict = {"phase": name}
    if name in ("generate", "encode"):
        width, height = dimensions(args.megapixels)
        image = smooth_image(width, height)
        result["generate_seconds"] = time.perf_counter() - started
        if name == "encode":
            started = time.perf_counter()
            data = kmcodec.encode(image, args.k, seed=0)
            Path(args.path).write_bytes(data)
            result["bytes"] = len(data)
        result.update(width=width, height=height)
    elif name == "decode":
        image = kmcodec.read(args.path, max_pixels=None)
        pixels = image.to_array()
        result["crc32"] = zlib.crc32(pixels)
    elif name == "stream":
        image = kmcodec.read(args.path, max_pixels=None)
        crc = 0
        for band in image.iter_rows(args.rows):
            crc = zlib.crc32(band, crc)
        result["crc32"] = crc
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_phase(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--phase", name, "--path", args.path, "--megapixels", str(args.megapixels)]
    command += ["-k", str(args.k), "--rows", str(args.rows)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=100)
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--rows", type=int, default=256, help="rows per band in the streaming decode")
    parser.add_argument("--keep", metavar="PATH", help="keep the .kmq here instead of a temporary file")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        args.path = args.keep or str(Path(scratch) / "large.kmq")
        results = {name: run_phase(name, args) for name in ("generate", "encode", "decode", "stream")}
    enc = results["encode"]
    pixels = enc["width"] * enc["height"]
    raw_mb = pixels * 3 / 1e6
    print(f"image: {enc['width']}x{enc['height']} RGB = {pixels / 1e6:.1f} MP, raw {raw_mb:.0f} MB; k={args.k}")
    print(f".kmq: {enc['bytes']:,} bytes ({enc['bytes'] / 1e6:.1f} MB)")
    print(f"{'phase':<10} {'seconds':>8} {'MP/s':>7} {'peak RSS MB':>12}")
    for name, row in results.items():
        seconds = row["generate_seconds"] if name == "generate" else row["seconds"]
        print(f"{name:<10} {seconds:8.2f} {pixels / 1e6 / seconds:7.1f} {row['peak_rss_mb']:12.0f}")
    same = results["decode"]["crc32"] == results["stream"]["crc32"]
    print(f"streamed pixels equal the full decode: {'yes' if same else 'NO'} (bands of {args.rows} rows)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
