"""Palette files, both ways: GIMP .gpl, .kmq, PNG-8 and GIF, and JSON.

The format follows the file's extension.

======  =====================================================  ==============
suffix  content                                                channels
======  =====================================================  ==============
.gpl    ``GIMP Palette``, optional ``Name:``/``Columns:``,     RGB
        ``#`` comments, then one ``R G B [name]`` per line
.kmq    a .kmq file; its palette (written: a 1-row image, K    as stored
        pixels, label i at pixel i)
.png    a palette image (PNG-8); its palette, trailing         RGB, or RGBA
.gif    entries no pixel uses dropped (written: 1 row, pixel   with alpha
        i = entry i; at most 256 entries; GIF has no alpha)    (PNG only)
.json   a list of entries, each a list of 1, 3 or 4 integers   as stored
======  =====================================================  ==============

Grey palettes are written to .gpl, PNG and GIF as R = G = B and read back as
RGB, which the encoder matches to grey images by widening them. Every problem
is one line naming the file and what is wrong (:class:`PaletteFileError`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import layout
from .codec import pack
from .errors import FormatError, KmqError, OutputError, PaletteFileError
from .files import atomic_write, read, read_bytes

SUFFIXES = (".gpl", ".kmq", ".png", ".gif", ".json")
MAX_IMAGE_ENTRIES = 256  # PNG-8 and GIF palettes
GPL_COLUMNS = 16


def _format(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PaletteFileError(f"cannot {action} palette {path}: unknown suffix {path.suffix or '(none)'!r}, allowed {', '.join(SUFFIXES)}")
    return suffix


def _checked(path: Path, rows: list[list[int]] | np.ndarray) -> np.ndarray:
    """Rows of integers -> (k, C) uint8, or the one-line error for the first problem."""
    where = f"cannot read palette {path}"
    if len(rows) == 0:
        raise PaletteFileError(f"{where}: no entries, allowed {layout.MIN_K}..{layout.MAX_K}")
    if len(rows) > layout.MAX_K:
        raise PaletteFileError(f"{where}: {len(rows)} entries, allowed {layout.MIN_K}..{layout.MAX_K}")
    array = np.asarray(rows, dtype=np.int64)
    bad = np.argwhere((array < 0) | (array > 255))
    if bad.size:
        i, j = bad[0]
        raise PaletteFileError(f"{where}: entry {i} channel {j} is {array[i, j]}, allowed 0..255")
    return array.astype(np.uint8)


# ---------------------------------------------------------------- reading


def read_palette(path: "str | os.PathLike[str]") -> np.ndarray:
    """The palette a file holds, (k, C) uint8 (module docstring); raises :class:`PaletteFileError`."""
    path = Path(path)
    suffix = _format(path, "read")
    if suffix == ".kmq":
        try:
            return read(path, max_pixels=None).palette
        except FormatError as exc:
            raise PaletteFileError(f"cannot read palette {path}: {exc}") from None
    if suffix in (".png", ".gif"):
        return _read_image(path)
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PaletteFileError(f"cannot read palette {path}: not UTF-8 text (byte {exc.start})") from None
    return _read_gpl(path, text) if suffix == ".gpl" else _read_json(path, text)


def _read_gpl(path: Path, text: str) -> np.ndarray:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "GIMP Palette":
        first = lines[0].strip() if lines else ""
        raise PaletteFileError(f"cannot read palette {path}: line 1: expected 'GIMP Palette', got {first!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.split(":", 1)[0] in ("Name", "Columns"):
            continue
        fields = stripped.split()
        try:
            values = [int(v) for v in fields[:3]]
        except ValueError:
            values = []
        if len(values) != 3:
            raise PaletteFileError(f"cannot read palette {path}: line {number}: expected 'R G B [name]', got {stripped!r}")
        out = [v for v in values if not 0 <= v <= 255]
        if out:
            raise PaletteFileError(f"cannot read palette {path}: line {number}: value {out[0]}, allowed 0..255")
        rows.append(values)
    return _checked(path, rows)


def _read_json(path: Path, text: str) -> np.ndarray:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PaletteFileError(f"cannot read palette {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise PaletteFileError(f"cannot read palette {path}: expected a list of [r, g, b] entries, got {type(data).__name__}")
    width = len(data[0]) if data and isinstance(data[0], list) else None
    for i, entry in enumerate(data):
        ok = isinstance(entry, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in entry)
        if not ok or len(entry) not in layout.CHANNELS or len(entry) != width:
            want = f"{width} integers like entry 0" if width in layout.CHANNELS else "1, 3 or 4 integers"
            raise PaletteFileError(f"cannot read palette {path}: entry {i}: expected {want}, got {json.dumps(entry)[:40]}")
    return _checked(path, data)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "PA"):
                raise PaletteFileError(f"cannot read palette {path}: not a palette image (mode {image.mode}), allowed PNG-8 or GIF")
            labels = np.asarray(image.convert("P") if image.mode == "PA" else image)
            rgb = np.frombuffer(bytes(image.getpalette("RGB") or b""), np.uint8).reshape(-1, 3)
            transparency = image.info.get("transparency")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        read_bytes(path)  # its one-line error for a missing or unreadable file
        raise
    except UnidentifiedImageError:
        raise PaletteFileError(f"cannot read palette {path}: not an image Pillow recognises") from None
    except KmqError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise PaletteFileError(f"cannot read palette {path}: corrupt image ({exc})") from None
    k = min(len(rgb), int(labels.max()) + 1)  # trailing entries no pixel uses are padding
    alpha = np.full(k, 255, np.uint8)
    if isinstance(transparency, int) and transparency < k:
        alpha[transparency] = 0
    elif isinstance(transparency, bytes):
        given = np.frombuffer(transparency, np.uint8)[:k]
        alpha[: given.size] = given
    if (alpha == 255).all():
        return _checked(path, rgb[:k])
    return _checked(path, np.concatenate([rgb[:k], alpha[:, None]], axis=1))


# ---------------------------------------------------------------- writing


def write_palette(path: "str | os.PathLike[str]", palette: np.ndarray, *, overwrite: bool = True) -> None:
    """Write a (k, C) uint8 palette in the format of ``path``'s suffix, atomically."""
    path = Path(path)
    suffix = _format(path, "write")
    palette = np.asarray(palette, np.uint8)
    k, channels = palette.shape
    rgb = np.repeat(palette, 3, axis=1) if channels == 1 else palette[:, :3]
    if suffix == ".json":
        text = "[\n" + ",\n".join("  " + json.dumps(row) for row in palette.tolist()) + "\n]\n"
        atomic_write(path, lambda f: f.write(text.encode()), overwrite=overwrite)
        return
    if suffix == ".kmq":
        data = pack(palette, np.arange(k, dtype=np.uint16).reshape(1, k))
        atomic_write(path, lambda f: f.write(data), overwrite=overwrite)
        return
    if channels == 4 and suffix in (".gpl", ".gif"):
        raise OutputError(f"cannot write {path}: {suffix} holds no alpha, the palette has 4 channels (RGBA); use .png, .json or .kmq")
    if suffix == ".gpl":
        lines = ["GIMP Palette", f"Name: {path.stem}", f"Columns: {GPL_COLUMNS}", "#"]
        lines += [f"{r:3d} {g:3d} {b:3d}\tIndex {i}" for i, (r, g, b) in enumerate(rgb.tolist())]
        text = "\n".join(lines) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()), overwrite=overwrite)
        return
    if k > MAX_IMAGE_ENTRIES:
        raise OutputError(f"cannot write {path}: {suffix} holds at most {MAX_IMAGE_ENTRIES} entries, the palette has {k}; use .json, .gpl or .kmq")
    picture = Image.fromarray(np.arange(k, dtype=np.uint8).reshape(1, k), "P")
    picture.putpalette(np.ascontiguousarray(rgb).tobytes())
    options: dict[str, object] = {}
    if channels == 4:
        options["transparency"] = palette[:, 3].tobytes()
    fmt = "PNG" if suffix == ".png" else "GIF"
    atomic_write(path, lambda f: picture.save(f, format=fmt, optimize=False, **options), overwrite=overwrite)
