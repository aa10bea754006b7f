"""The `kmq` command: encode, decode, inspect, sweep and view .kmq files.

Data goes to stdout (`--json`, `info`, the `sweep` table); summaries, progress
bars and errors go to stderr. Exit codes: 0 success, 1 bad input or failed
write (`kmq: error: ...`, one line per failure), 2 usage.

``--json`` prints one document:

- ``encode`` with one input: the summary of `batch.summary`; with several
  inputs: ``{"files": [summary, ...], "errors": [{"input", "output", "error"}],
  "totals": {"files", "encoded", "failed", "bytes", "raw_bytes", "ratio", "cost", "seconds"}}``.
- ``info``: the header fields, the byte breakdown and the checks (`run_info`).
- ``sweep``: the image's size and one row per k (`sweep.SweepRow.as_dict`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from . import __version__, layout, progress, shared_cli, view
from .batch import EncodeOptions, Job, Outcome, encode_file, output_paths, run
from .choose_k import AUTO_KS, FitSettings
from .codec import PILLOW_LIMIT, decode, recode
from .container import check_values, parse_header
from .errors import KmqError, OutputError
from .files import atomic_write, check_output, load_image, read_bytes, write_bytes
from .outputs import (
    PLOT_EXTRA,
    check_free,
    contact_sheet,
    image_format,
    label_map,
    mask_paths,
    save_image,
    write_masks,
    write_plot,
)
from .palette import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SEED
from .shared_batch import frame_jobs
from .sweep import parse_ks, sweep, table


def k_value(text: str) -> int | str:
    """-k: an integer or 'auto' (range checks are the codec's, exit 1 like any bad input)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def k_list(text: str) -> list[int]:
    try:
        return parse_ks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="random seed; the same seed gives identical bytes (default %(default)s)"
    )
    parser.add_argument("--n-init", type=int, default=DEFAULT_N_INIT, help="k-means restarts, best kept (default %(default)s)")
    parser.add_argument(
        "--max-iter", type=int, default=DEFAULT_MAX_ITER, help="Lloyd iterations per restart at most (default %(default)s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmq", description="The .kmq k-means palette image codec.")
    parser.add_argument("--version", action="version", version=f"kmq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = commands.add_parser(
        "encode",
        help="encode images as .kmq",
        description="Encode images Pillow reads as .kmq. Give exactly one of -k, --psnr, --max-bytes.",
    )
    enc.add_argument("input", metavar="IN", nargs="+", help="input images (any format Pillow reads)")
    choice = enc.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        "-k", type=k_value, metavar="K", help=f"palette size 1..{layout.MAX_K}, or 'auto': the elbow of the cost curve over k=2..16"
    )
    choice.add_argument("--psnr", type=float, metavar="DB", help="the smallest k whose result reaches this PSNR")
    choice.add_argument("--max-bytes", type=int, metavar="N", help="the best quality whose file fits N bytes")
    enc.add_argument("-o", "--output", metavar="OUT", help="output file, one input only (default: IN with suffix .kmq)")
    enc.add_argument("--out-dir", metavar="DIR", help="write each output into DIR (made if missing) instead of beside its input")
    enc.add_argument("-z", "--compress", action="store_true",
                     help="write coded labels (coding 1) when smaller: same palette and labels, within the size formula")
    enc.add_argument("--dither", action="store_true", help="map onto the palette with Floyd-Steinberg dithering (grey/RGB, k <= 256)")
    enc.add_argument("--jobs", type=int, default=1, metavar="N", help="encode N files at once in worker processes; 0: one per CPU (default 1)")
    shared_cli.add_encode_options(enc, choice)
    add_fit_options(enc)
    enc.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    enc.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    enc.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summaries or totals; errors still print")
    enc.set_defaults(run=run_encode, usage=enc)

    dec = commands.add_parser(
        "decode",
        help="decode .kmq to an image, label map or masks",
        description="Decode .kmq to any format Pillow writes. With --labels or --masks the image is written only if -o is given.",
    )
    dec.add_argument("input", metavar="IN", nargs="+", help="input .kmq files")
    dec.add_argument("-o", "--output", metavar="OUT", help="output image, one input only; format from its extension (default: IN with suffix .png)")
    dec.add_argument("--out-dir", metavar="DIR", help="write each IN's .png into DIR (made if missing) instead of beside it")
    dec.add_argument("--labels", metavar="PATH", help="write the label map: grey values = labels, 8-bit if k <= 256 else 16-bit")
    dec.add_argument("--masks", metavar="DIR", help="write one black-and-white mask per palette entry, mask_INDEX_COLOUR.png")
    dec.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    dec.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default: Pillow's limit)")
    dec.set_defaults(run=run_decode, usage=dec)

    rec = commands.add_parser(
        "recode",
        help="convert a .kmq file between codings, losslessly",
        description="Rewrite a .kmq file in coding 1 (--compress, when smaller) or coding 0 (--raw); palette and labels are kept.",
    )
    rec.add_argument("input", metavar="IN", help="input .kmq file")
    rec.add_argument("-o", "--output", metavar="OUT", help="output file (default: replace IN, atomically)")
    how = rec.add_mutually_exclusive_group(required=True)
    how.add_argument("-z", "--compress", action="store_true", help="coded labels (coding 1) when smaller, else raw")
    how.add_argument("--raw", action="store_true", help="raw bit-packed labels (coding 0)")
    rec.add_argument("--force", action="store_true", help="overwrite OUT if it exists (replacing IN itself needs no --force)")
    rec.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default: Pillow's limit)")
    rec.set_defaults(run=run_recode)

    info = commands.add_parser("info", help="show header, byte breakdown and size formula", description="Inspect a .kmq file.")
    info.add_argument("input", metavar="FILE", help=".kmq file")
    info.add_argument("--json", action="store_true", help="print one JSON document")
    info.set_defaults(run=run_info)

    swp = commands.add_parser(
        "sweep",
        help="encode one image at many k and tabulate size and quality",
        description="Encode IMG at each k and print k, bits_per_pixel, bytes, cost (SSE), MSE, PSNR and seconds per row.",
    )
    swp.add_argument("input", metavar="IMG", help="input image (any format Pillow reads)")
    swp.add_argument("-k", "--k", dest="ks", type=k_list, default=parse_ks("2-16"), metavar="LIST",
                     help="the k values: 2-10, 2,4,8, 2-64:2 or a mix (default 2-16)")
    swp.add_argument("--plot", metavar="PATH", help=f"draw cost and PSNR against k (needs matplotlib: {PLOT_EXTRA})")
    swp.add_argument("--sheet", metavar="PATH", help="contact sheet: the original and the decoded image at each k")
    add_fit_options(swp)
    swp.add_argument("--force", action="store_true", help="overwrite the plot and sheet if they exist")
    swp.add_argument("--json", action="store_true", help="print the sweep as JSON on stdout instead of the table")
    swp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    swp.set_defaults(run=run_sweep)
    shared_cli.add_palette_command(commands, add_fit_options)
    view.add_parser(commands)
    return parser


def formula_text(size: layout.SizeFormula) -> str:
    """The size formula with this file's numbers, e.g. '8*3*16 + 19200*4 = 77184 bits'."""
    return (
        f"8*{size.channels}*{size.k} + {size.width * size.height}*{size.bits_per_pixel} = {size.content_bits} bits"
        f" -> {size.palette_bytes} + {size.label_bytes} bytes + {size.overhead_bytes} overhead = {size.total_bytes} bytes"
    )


# ---------------------------------------------------------------- encode


def check_encode_usage(args: argparse.Namespace) -> None:
    """Usage rules argparse cannot express; breaking one exits 2 like any usage error."""
    sub = args.usage
    if args.output and len(args.input) > 1:
        sub.error(f"-o names one output but {len(args.input)} inputs were given; use --out-dir DIR")
    if args.output and args.out_dir:
        sub.error("give -o or --out-dir, not both")
    if args.jobs < 0:
        sub.error(f"--jobs must be 0 (one per CPU) or more, got {args.jobs}")
    shared_cli.check_usage(args)


def summary_line(s: dict) -> str:
    k_text = f"k={s['k']}"
    if s["method"] == "k" and s["k"] != s["requested_k"]:
        k_text += f" (asked {s['requested_k']}: {s['reason'].split('; ', 1)[-1]})"
    psnr_text = "lossless" if s["psnr"] is None else f"PSNR {s['psnr']:.2f} dB"
    if s["dither"]:
        before = s["psnr_without_dither"]
        psnr_text += " dithered (" + ("lossless" if before is None else f"{before:.2f} dB") + " without)"
    line = (
        f"{s['input']} -> {s['output']}: {s['bytes']} bytes, {k_text}, {s['bits_per_pixel']} bits/pixel,"
        f" formula {s['formula_bits']} bits + {layout.OVERHEAD} B = {s['formula_bytes']} B"
        f" ({coding_text(s)}),"
        f" {ratio_text(s['ratio'])} raw {8 * s['channels']}-bit, MSE {s['mse']:.2f}, {psnr_text},"
        f" {s['seconds']:.2f} s"
    )
    if not s["input_exact"]:
        line += f" (against the original; against its 8-bit conversion MSE {s['mse_8bit']:.2f}, {_db(s['psnr_8bit'])})"
    line += "".join(f"; {note}" for note in s["notes"])
    if s["method"] != "k":
        line += f"; why k={s['requested_k']}: {s['reason']}"
    return line


def ratio_text(ratio: float) -> str:
    """Raw pixel bytes / file bytes in words: '4.00x smaller than', or for a file past its pixels '10.33x larger than'."""
    return f"{ratio:.2f}x smaller than" if ratio >= 1 else f"{1 / ratio:.2f}x larger than"


def coding_text(s: dict) -> str:
    """Which coding was written and why, against the formula."""
    if s["coding"] == layout.CODING_CODED:
        share = 100 * s["bytes"] / s["formula_bytes"]
        return (
            f"coding 1 ({layout.METHOD_NAMES[s['label_method']]}), coded labels at {s['label_bits_per_pixel']:.3f} bits/pixel:"
            f" {share:.1f}% of the formula,"
            f" within its bound" if s["formula_holds"] else "coding 1 OVER THE BOUND"
        )
    why = "; coding 1 was not smaller" if s.get("compress") else ""
    return f"coding 0, raw: {'matches' if s['formula_holds'] else 'MISMATCH'}{why}"


def _db(value: float | None) -> str:
    return "lossless" if value is None else f"PSNR {value:.2f} dB"


def encode_options(args: argparse.Namespace) -> EncodeOptions:
    return EncodeOptions(
        k=args.k,
        psnr=args.psnr,
        max_bytes=args.max_bytes,
        seed=args.seed,
        n_init=args.n_init,
        max_iter=args.max_iter,
        dither=args.dither,
        force=args.force,
        compress=args.compress,
    )


def run_encode(args: argparse.Namespace) -> int:
    options = encode_options(args)
    inputs = [Path(p) for p in args.input]
    out_dir = Path(args.out_dir) if args.out_dir else None
    if args.output:
        jobs = [Job(inputs[0], Path(args.output))]
    elif args.frames:
        jobs = frame_jobs(inputs, out_dir)
    else:
        jobs = output_paths(inputs, out_dir)
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot make directory {out_dir}: {exc.strerror or exc}") from None
    show_bar = progress.wanted(args.quiet)
    if shared_cli.wanted(args):
        return shared_cli.run_encode(jobs, options, args, show_bar)
    if len(jobs) == 1:
        return encode_one(jobs[0], options, args, show_bar)
    return encode_many(jobs, options, args, show_bar)


def encode_one(job: Job, options: EncodeOptions, args: argparse.Namespace, show_bar: bool) -> int:
    """One file in this process; a k search shows a bar of its trial fits on a terminal."""
    searching = options.psnr is not None or options.k == "auto"
    total = len(AUTO_KS) if options.k == "auto" else None
    with progress.bar(total, f"choosing k for {job.input.name}", enabled=show_bar and searching, unit="fit") as bar:

        def on_trial(trial) -> None:
            bar.update(1)
            bar.set_postfix_str(f"k={trial.k} PSNR {trial.psnr:.2f} dB")

        s = encode_file(job, options, on_trial=on_trial)
    if args.json:
        print(json.dumps(s, indent=2))
    elif not args.quiet:
        print(summary_line(s), file=sys.stderr)
    return 0


def encode_many(jobs: list[Job], options: EncodeOptions, args: argparse.Namespace, show_bar: bool, runner=run) -> int:
    """Many files, `--jobs` at a time; every failure is named and the rest carry on."""
    workers = args.jobs or os.cpu_count() or 1
    started = time.perf_counter()
    with progress.bar(len(jobs), "encoding", enabled=show_bar, unit="file") as bar:

        def on_done(outcome: Outcome) -> None:
            if outcome.error is not None:
                progress.say(bar, f"kmq: error: {outcome.job.input}: {outcome.error}")
            elif not args.quiet and not args.json:
                progress.say(bar, summary_line(outcome.summary))  # type: ignore[arg-type]
            bar.update(1)

        outcomes = runner(jobs, options, workers=workers, on_done=on_done)
    done = [o.summary for o in outcomes if o.summary is not None]
    failed = [o for o in outcomes if o.error is not None]
    written = sum(s["bytes"] for s in done)
    raw = sum(s["raw_bytes"] for s in done)
    totals = {
        "files": len(jobs),
        "encoded": len(done),
        "failed": len(failed),
        "bytes": written,
        "raw_bytes": raw,
        "ratio": raw / written if written else None,
        "cost": sum(s["cost"] for s in done),
        "seconds": time.perf_counter() - started,
    }
    if args.json:
        document = {
            "files": done,
            "errors": [{"input": str(o.job.input), "output": str(o.job.output), "error": o.error} for o in failed],
            "totals": totals,
        }
        print(json.dumps(document, indent=2))
    if args.quiet:
        return 1 if failed else 0
    ratio = f" ({ratio_text(totals['ratio'])} raw)" if written else ""
    print(
        f"kmq: encoded {len(done)} of {len(jobs)} files, {len(failed)} failed: {written} bytes from {raw} raw{ratio},"
        f" {totals['seconds']:.2f} s with {min(workers, len(jobs))} worker{'s' if min(workers, len(jobs)) > 1 else ''}",
        file=sys.stderr,
    )
    return 1 if failed else 0


# ---------------------------------------------------------------- decode


def run_decode(args: argparse.Namespace) -> int:
    """Each input in turn; with several, a failure is named and the rest go on (exit 1)."""
    if len(args.input) > 1 and (args.output or args.labels or args.masks):
        args.usage.error(f"-o, --labels and --masks name one output but {len(args.input)} inputs were given; use --out-dir DIR")
    if args.output and args.out_dir:
        args.usage.error("give -o or --out-dir, not both")
    if args.out_dir:
        try:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot make directory {args.out_dir}: {exc.strerror or exc}") from None
    if len(args.input) == 1:
        return decode_one(Path(args.input[0]), args)
    failed = 0
    for name in args.input:
        try:
            decode_one(Path(name), args)
        except KmqError as exc:
            print(f"kmq: error: {name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def decode_one(source: Path, args: argparse.Namespace) -> int:
    want_image = bool(args.output) or not (args.labels or args.masks)
    output = Path(args.output) if args.output else (Path(args.out_dir) / source.name if args.out_dir else source).with_suffix(".png")
    labels_path = Path(args.labels) if args.labels else None
    # Check every output before decoding, so a bad name costs nothing and writes nothing.
    for path in [output] * want_image + [labels_path] * bool(labels_path):
        check_output(path, overwrite=args.force)
        image_format(path)
    limit = args.max_pixels if args.max_pixels is not None else PILLOW_LIMIT
    image = decode(read_bytes(source), max_pixels=limit)
    if args.masks:
        check_free(mask_paths(image, args.masks), overwrite=args.force)
    written = []
    if want_image:
        picture = image.to_pil()
        fmt = image_format(output)
        atomic_write(output, lambda handle: picture.save(handle, format=fmt), overwrite=args.force)
        written.append(str(output))
    if labels_path is not None:
        save_image(label_map(image.labels, image.k), labels_path, overwrite=args.force)
        written.append(f"labels {labels_path} ({'8' if image.k <= 256 else '16'}-bit)")
    if args.masks:
        masks = write_masks(image, args.masks, overwrite=args.force)
        written.append(f"{len(masks)} masks in {args.masks}")
    print(f"{source} -> {', '.join(written)}: {image.width}x{image.height} {image.mode}, k={image.k}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- recode


def run_recode(args: argparse.Namespace) -> int:
    source = Path(args.input)
    target = Path(args.output) if args.output else source
    replacing = os.path.abspath(target) == os.path.abspath(source)
    if not replacing:
        check_output(target, overwrite=args.force)
    data = read_bytes(source)
    limit = PILLOW_LIMIT if args.max_pixels is None else args.max_pixels
    out = recode(data, compress=args.compress, max_pixels=limit)
    write_bytes(target, out, overwrite=args.force or replacing)
    before, after = parse_header(data).coding, parse_header(out).coding
    note = " (coding 1 was not smaller)" if args.compress and after == layout.CODING_RAW else ""
    print(
        f"{source} -> {target}: coding {before} -> {after}{note}, {len(data)} -> {len(out)} bytes"
        f" (formula bound {parse_header(out).size.total_bytes})",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------- info


def run_info(args: argparse.Namespace) -> int:
    source = Path(args.input)
    data = read_bytes(source)
    header = parse_header(data)
    size = header.size
    coded = header.coding == layout.CODING_CODED
    check = None
    if coded or len(data) == size.total_bytes:
        stored, computed = check_values(data)
        check = stored == computed
    problem = None
    try:
        decode(data, max_pixels=None)
    except KmqError as exc:
        problem = str(exc)
    label_bytes = len(data) - layout.OVERHEAD - size.palette_bytes
    method = layout.label_method(data, header.coding, size.palette_bytes)
    report = {
        "file": str(source),
        "version": header.version,
        "coding": header.coding,
        "coding_name": layout.CODING_NAMES[header.coding],
        "label_method": method,
        "label_method_name": layout.METHOD_NAMES.get(method) if method is not None else None,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "k": header.k,
        "bits_per_pixel": header.bits_per_pixel,
        "bytes": {
            "header": layout.HEADER_SIZE,
            "palette": size.palette_bytes,
            "labels": label_bytes,
            "check": layout.CHECK_SIZE,
            "total": layout.OVERHEAD + size.palette_bytes + label_bytes,
            "file": len(data),
        },
        "label_bits_per_pixel": 8 * label_bytes / header.pixels,
        "formula_bits": size.content_bits,
        "formula_bytes": size.total_bytes,
        "formula_ratio": len(data) / size.total_bytes,
        "formula_holds": len(data) <= size.total_bytes if coded else len(data) == size.total_bytes,
        "check_valid": check,
        "valid": problem is None,
        "error": problem,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        b = report["bytes"]
        rule = "the bound: a coding-1 file is at most this" if coded else "exactly, for coding 0"
        how = "" if method is None else f", {report['label_method_name'] or f'unknown method {method}'}"
        lines = [
            f"file            {source}",
            f"format          .kmq version {header.version}, coding {header.coding} ({layout.CODING_NAMES[header.coding]}{how})",
            f"width           {header.width}",
            f"height          {header.height}",
            f"channels        {layout.channels_text(header.channels)}",
            f"k               {header.k}",
            f"bits_per_pixel  {header.bits_per_pixel} in the formula; labels take {report['label_bits_per_pixel']:.3f} bits/pixel",
            (
                f"bytes           header {b['header']} + palette {b['palette']} + labels {b['labels']} + check {b['check']}"
                f" = {b['total']}"
            ),
            f"formula         {formula_text(size)} ({rule})",
            (
                f"formula holds   {'yes' if report['formula_holds'] else 'no'}: file is {len(data)} bytes,"
                f" {100 * report['formula_ratio']:.1f}% of the formula"
            ),
            f"check           {'CRC-32 valid' if check else 'CRC-32 INVALID' if check is False else 'not checked (wrong length)'}",
            f"valid           {'yes' if problem is None else 'no: ' + problem}",
        ]
        print("\n".join(lines))
    if problem is not None:
        print(f"kmq: error: {problem}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- sweep


def run_sweep(args: argparse.Namespace) -> int:
    source = Path(args.input)
    plot = Path(args.plot) if args.plot else None
    sheet = Path(args.sheet) if args.sheet else None
    # Check the outputs and the plot's extra before the (long) sweep, not after it.
    for path in (plot, sheet):
        if path is not None:
            check_output(path, overwrite=args.force)
    if sheet is not None:
        image_format(sheet)
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise OutputError(f"cannot write {plot}: --plot needs matplotlib; install it with {PLOT_EXTRA}") from None
    pixels = load_image(source)
    h, w, c = pixels.array.shape
    settings = FitSettings(seed=args.seed, n_init=args.n_init, max_iter=args.max_iter)
    with progress.bar(len(args.ks), f"sweeping {source.name}", enabled=progress.wanted(args.quiet), unit="k") as bar:
        rows = sweep(pixels.array, args.ks, settings, source=pixels, on_row=lambda row: (bar.update(1), bar.set_postfix_str(f"k={row.k}")))
    if plot is not None:
        write_plot(
            plot,
            [r.requested_k for r in rows],
            [r.fit.cost for r in rows],
            [r.psnr for r in rows],
            title=f"{source.name}: {w}x{h}, {c} channel{'s' if c > 1 else ''}",
            overwrite=args.force,
        )
    if sheet is not None:
        original = Image.fromarray(pixels.array[:, :, 0] if c == 1 else pixels.array)
        pictures = [original] + [decode(r.data, max_pixels=None).to_pil() for r in rows]
        titles = [f"original, {w * h * c} B raw"] + [
            f"k={r.k}, {len(r.data)} B, " + ("lossless" if math.isinf(r.psnr) else f"{r.psnr:.1f} dB") for r in rows
        ]
        save_image(contact_sheet(pictures, titles), sheet, overwrite=args.force)
    if args.json:
        document = {
            "input": str(source),
            "width": w,
            "height": h,
            "channels": c,
            "raw_bytes": w * h * c,
            "notes": list(pixels.notes),
            "rows": [r.as_dict() for r in rows],
            "plot": str(plot) if plot else None,
            "sheet": str(sheet) if sheet else None,
        }
        print(json.dumps(document, indent=2))
    else:
        print(table(rows))
    notes = "".join(f"; {note}" for note in pixels.notes)
    wrote = "".join(f"; wrote {kind} {path}" for kind, path in (("plot", plot), ("sheet", sheet)) if path)
    print(f"{source}: {w}x{h}, {c} channel{'s' if c > 1 else ''}, {len(rows)} k values{notes}{wrote}", file=sys.stderr)
    return 0


# The path arguments, by direction: kmq has no stdin/stdout mode, so '-' in them is refused (refuse_dash).
INPUT_ARGS = ("input", "palette")
OUTPUT_ARGS = ("output", "out_dir", "labels", "masks", "plot", "sheet")


def refuse_dash(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A usage error for '-' as a path: unrefused, it would read "no such file" or write a file named '-'."""
    sub = getattr(args, "usage", parser)
    for name in OUTPUT_ARGS:
        if getattr(args, name, None) == "-":
            sub.error("'-' is not stdout: kmq writes named files only (./- names a file called '-')")
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        if "-" in (value if isinstance(value, list) else [value]) and not os.path.lexists("-"):
            sub.error("'-' is not stdin: kmq reads named files only")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_dash(args, parser)
    if args.command == "encode":
        check_encode_usage(args)
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
    except BrokenPipeError:
        # The reader of stdout went away (`kmq info x.kmq | head -1`): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
