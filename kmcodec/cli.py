"""The `kmq` command: encode, decode and inspect .kmq files.

Data goes to stdout (`--json`, `info`); the summary and errors go to stderr.
Exit codes: 0 success, 1 bad input or failed write (`kmq: error: ...`), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path
from typing import Sequence

from PIL import Image

from . import __version__, layout
from .codec import PILLOW_LIMIT, decode, encode_detailed
from .container import parse_header
from .errors import KmqError, OutputError
from .files import atomic_write, load_image, read_bytes, write_bytes

CHANNEL_NAMES = {1: "grey", 3: "RGB", 4: "RGBA"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmq", description="The .kmq k-means palette image codec.")
    parser.add_argument("--version", action="version", version=f"kmq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = commands.add_parser("encode", help="encode an image as .kmq", description="Encode an image Pillow reads as .kmq.")
    enc.add_argument("input", metavar="IN", help="input image (any format Pillow reads)")
    enc.add_argument("-k", type=int, required=True, help=f"palette size, 1..{layout.MAX_K}")
    enc.add_argument("-o", "--output", metavar="OUT", help="output file (default: IN with suffix .kmq)")
    enc.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical bytes (default 0)")
    enc.add_argument("--n-init", type=int, default=4, help="k-means restarts, best kept (default 4)")
    enc.add_argument("--max-iter", type=int, default=100, help="Lloyd iterations per restart at most (default 100)")
    enc.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    enc.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    enc.set_defaults(run=run_encode)

    dec = commands.add_parser("decode", help="decode .kmq to an image", description="Decode .kmq to any format Pillow writes.")
    dec.add_argument("input", metavar="IN", help="input .kmq file")
    dec.add_argument("-o", "--output", metavar="OUT", help="output image; format from its extension (default: IN with suffix .png)")
    dec.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    dec.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default: Pillow's limit)")
    dec.set_defaults(run=run_decode)

    info = commands.add_parser("info", help="show header, byte breakdown and size formula", description="Inspect a .kmq file.")
    info.add_argument("input", metavar="FILE", help=".kmq file")
    info.add_argument("--json", action="store_true", help="print one JSON document")
    info.set_defaults(run=run_info)
    return parser


def formula_text(size: layout.SizeFormula) -> str:
    """The size formula with this file's numbers, e.g. '8*3*16 + 19200*4 = 77184 bits'."""
    return (
        f"8*{size.channels}*{size.k} + {size.width * size.height}*{size.bits_per_pixel} = {size.content_bits} bits"
        f" -> {size.palette_bytes} + {size.label_bytes} bytes + {size.overhead_bytes} overhead = {size.total_bytes} bytes"
    )


def run_encode(args: argparse.Namespace) -> int:
    source = Path(args.input)
    output = Path(args.output) if args.output else source.with_suffix(".kmq")
    if not args.force and output.exists():
        raise OutputError(f"output exists: {output} (use --force to overwrite)")
    started = time.perf_counter()
    pixels = load_image(source)
    result = encode_detailed(pixels.array, args.k, seed=args.seed, n_init=args.n_init, max_iter=args.max_iter)
    write_bytes(output, result.data, overwrite=args.force)
    seconds = time.perf_counter() - started
    size = result.size
    written = output.stat().st_size
    raw = size.width * size.height * size.channels
    summary = {
        "input": str(source),
        "output": str(output),
        "width": size.width,
        "height": size.height,
        "channels": size.channels,
        "k": size.k,
        "requested_k": result.requested_k,
        "bits_per_pixel": size.bits_per_pixel,
        "bytes": written,
        "formula_bits": size.content_bits,
        "formula_bytes": size.total_bytes,
        "formula_holds": written == size.total_bytes,
        "raw_bytes": raw,
        "ratio": raw / written,
        "cost": result.fit.cost,
        "mse": result.mse,
        "psnr": None if math.isinf(result.psnr) else result.psnr,
        "seconds": seconds,
        "notes": list(pixels.notes),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        k_text = f"k={size.k}" + ("" if size.k == result.requested_k else f" (asked {result.requested_k}: the image has only {size.k} colours)")
        psnr_text = "lossless" if math.isinf(result.psnr) else f"PSNR {result.psnr:.2f} dB"
        notes = "".join(f"; {note}" for note in pixels.notes)
        print(
            f"{source} -> {output}: {written} bytes, {k_text}, {size.bits_per_pixel} bits/pixel,"
            f" formula {size.content_bits} bits + {size.overhead_bytes} B = {size.total_bytes} B"
            f" ({'matches' if summary['formula_holds'] else 'MISMATCH'}),"
            f" {raw / written:.2f}x smaller than raw {8 * size.channels}-bit, MSE {result.mse:.2f}, {psnr_text},"
            f" {seconds:.2f} s{notes}",
            file=sys.stderr,
        )
    return 0


def pillow_format(path: Path) -> str:
    """The Pillow format that writes `path`'s extension, or an error naming the extension."""
    extensions = Image.registered_extensions()
    fmt = extensions.get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise OutputError(f"cannot write {path}: no image format for extension {path.suffix or '(none)'!r}")
    return fmt


def run_decode(args: argparse.Namespace) -> int:
    source = Path(args.input)
    output = Path(args.output) if args.output else source.with_suffix(".png")
    fmt = pillow_format(output)
    if not args.force and output.exists():
        raise OutputError(f"output exists: {output} (use --force to overwrite)")
    limit = args.max_pixels if args.max_pixels is not None else PILLOW_LIMIT
    image = decode(read_bytes(source), max_pixels=limit)
    picture = image.to_pil()
    atomic_write(output, lambda handle: picture.save(handle, format=fmt), overwrite=args.force)
    print(f"{source} -> {output}: {image.width}x{image.height} {image.mode}, k={image.k}", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    source = Path(args.input)
    data = read_bytes(source)
    header = parse_header(data)
    size = header.size
    body_end = size.total_bytes - layout.CHECK_SIZE
    check = None
    if len(data) == size.total_bytes:
        check = int.from_bytes(data[body_end:], "little") == zlib.crc32(memoryview(data)[:body_end])
    problem = None
    try:
        decode(data, max_pixels=None)
    except KmqError as exc:
        problem = str(exc)
    report = {
        "file": str(source),
        "version": header.version,
        "coding": header.coding,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "k": header.k,
        "bits_per_pixel": header.bits_per_pixel,
        "bytes": {
            "header": layout.HEADER_SIZE,
            "palette": size.palette_bytes,
            "labels": size.label_bytes,
            "check": layout.CHECK_SIZE,
            "total": size.total_bytes,
            "file": len(data),
        },
        "formula_bits": size.content_bits,
        "formula_bytes": size.total_bytes,
        "formula_holds": len(data) == size.total_bytes,
        "check_valid": check,
        "valid": problem is None,
        "error": problem,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        b = report["bytes"]
        lines = [
            f"file            {source}",
            f"format          .kmq version {header.version}, coding {header.coding} (raw bit-packed)",
            f"width           {header.width}",
            f"height          {header.height}",
            f"channels        {header.channels} ({CHANNEL_NAMES.get(header.channels, '?')})",
            f"k               {header.k}",
            f"bits_per_pixel  {header.bits_per_pixel}",
            f"bytes           header {b['header']} + palette {b['palette']} + labels {b['labels']} + check {b['check']}"
            f" = {b['total']} (file has {b['file']})",
            f"formula         {formula_text(size)}",
            f"formula holds   {'yes' if report['formula_holds'] else 'no'}",
            f"check           {'CRC-32 valid' if check else 'CRC-32 INVALID' if check is False else 'not checked (wrong length)'}",
            f"valid           {'yes' if problem is None else 'no: ' + problem}",
        ]
        print("\n".join(lines))
    if problem is not None:
        print(f"kmq: error: {problem}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KmqError as exc:
        print(f"kmq: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("kmq: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kmq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
