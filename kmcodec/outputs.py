"""Files the CLI writes besides .kmq: label maps, cluster masks, contact sheets, cost plots.

Each writer goes through `files.atomic_write`, so a failure leaves no partial
file. Formats follow the output's extension, as in `kmq decode`.

============  ======================================================================
output        content
============  ======================================================================
label map     the labels as grey values: mode L (8-bit) when k <= 256, else I;16
mask          one per palette entry, mode 1 (white = the pixels with that label),
              named ``mask_{index}_{colour}.png``: index zero-padded to the width of
              k - 1 (at least 2 digits), colour the entry in hex (2, 6 or 8 digits
              for 1, 3 or 4 channels)
sheet         the original and one decoded image per k in a grid of at most
              `SHEET_COLUMNS` tiles (see `tile_size`), each under a title line;
              mode RGB, alpha composited on a grey checkerboard
plot          cost (SSE) and PSNR against k, with matplotlib (extra ``plot``)
============  ======================================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .codec import KmqImage
from .errors import OutputError
from .files import atomic_write

# Contact sheet layout, in pixels.
SHEET_COLUMNS = 4
SHEET_TILE = 256  # tiles fit in this square
SHEET_MIN_WIDTH = 128  # smaller images are enlarged by a whole factor towards this width
SHEET_GAP = 8
SHEET_TITLE = 16  # height of the title line above each tile
SHEET_BACKGROUND = (255, 255, 255)
PLOT_EXTRA = "pip install 'kmcodec[plot]'"  # the extra that brings matplotlib


def image_format(path: Path) -> str:
    """The Pillow format that writes `path`'s extension, or an `OutputError` naming it."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise OutputError(f"cannot write {path}: no image format for extension {path.suffix or '(none)'!r}")
    return fmt


def save_image(picture: Image.Image, path: "str | os.PathLike[str]", *, overwrite: bool) -> None:
    path = Path(path)
    fmt = image_format(path)
    atomic_write(path, lambda handle: picture.save(handle, format=fmt), overwrite=overwrite)


def label_map(labels: np.ndarray, k: int) -> Image.Image:
    """The label map as an image whose values are the labels: L for k <= 256, else I;16."""
    if k <= 256:
        return Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), "L")
    return Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint16))  # uint16 -> I;16


def mask_name(index: int, colour: np.ndarray, k: int) -> str:
    digits = max(2, len(str(k - 1)))
    return f"mask_{index:0{digits}d}_{bytes(np.asarray(colour, np.uint8)).hex()}.png"


def mask_paths(image: KmqImage, directory: "str | os.PathLike[str]") -> list[Path]:
    """The path of each palette entry's mask in `directory`, in index order."""
    return [Path(directory) / mask_name(i, image.palette[i], image.k) for i in range(image.k)]


def check_free(paths: Sequence[Path], *, overwrite: bool) -> None:
    """Raise `OutputError` for the first path that exists, unless `overwrite`."""
    if not overwrite:
        for path in paths:
            if path.exists():
                raise OutputError(f"output exists: {path} (use --force to overwrite)")


def write_masks(image: KmqImage, directory: "str | os.PathLike[str]", *, overwrite: bool) -> list[Path]:
    """One black-and-white PNG per palette entry in `directory` (made if missing); returns the paths.

    Every name is checked before anything is written, so an existing mask
    without `overwrite` leaves the directory untouched.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"cannot write masks to {directory}: it is not a directory")
    paths = mask_paths(image, directory)
    check_free(paths, overwrite=overwrite)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make directory {directory}: {exc.strerror or exc}") from None
    labels = image.labels
    # One stable sort groups the pixels by label, so all k masks cost O(N log N), not O(N k).
    order = np.argsort(labels, axis=None, kind="stable")
    bounds = np.searchsorted(labels.reshape(-1)[order], np.arange(image.k + 1))
    for i, path in enumerate(paths):
        mask = np.zeros(labels.size, bool)
        mask[order[bounds[i] : bounds[i + 1]]] = True
        picture = Image.fromarray(mask.reshape(labels.shape))  # bool -> mode 1
        atomic_write(path, lambda handle, picture=picture: picture.save(handle, format="PNG"), overwrite=overwrite)
    return paths


def _checkerboard(size: tuple[int, int], square: int = 8) -> Image.Image:
    yy, xx = np.indices((size[1], size[0]))
    light = ((yy // square + xx // square) % 2 == 0)
    return Image.fromarray(np.where(light, 204, 153).astype(np.uint8), "L").convert("RGB")


def _as_rgb(picture: Image.Image) -> Image.Image:
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        background = _checkerboard(rgba.size)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return picture.convert("RGB")


def sheet_layout(count: int, tile: tuple[int, int]) -> tuple[int, int, int]:
    """(columns, width, height) of a sheet of `count` tiles of size `tile` (after scaling)."""
    columns = min(count, SHEET_COLUMNS)
    rows = math.ceil(count / columns)
    width = columns * (tile[0] + SHEET_GAP) + SHEET_GAP
    height = rows * (tile[1] + SHEET_TITLE + SHEET_GAP) + SHEET_GAP
    return columns, width, height


def tile_size(width: int, height: int) -> tuple[int, int]:
    """The size an image is drawn at on the sheet.

    Large images shrink to fit `SHEET_TILE`; small ones grow by a whole factor
    (pixels stay sharp squares) towards `SHEET_MIN_WIDTH`, so the title fits.
    """
    longest = max(width, height)
    if longest > SHEET_TILE:
        scale = SHEET_TILE / longest
        return max(1, round(width * scale)), max(1, round(height * scale))
    factor = max(1, min(-(-SHEET_MIN_WIDTH // width), SHEET_TILE // longest))
    return width * factor, height * factor


def contact_sheet(pictures: Sequence[Image.Image], titles: Sequence[str]) -> Image.Image:
    """A grid of same-sized pictures, each under its title (module docstring)."""
    if not pictures or len(pictures) != len(titles):
        raise ValueError("contact_sheet needs one title per picture, and at least one picture")
    tile = tile_size(*pictures[0].size)
    columns, width, height = sheet_layout(len(pictures), tile)
    sheet = Image.new("RGB", (width, height), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (picture, title) in enumerate(zip(pictures, titles)):
        x = SHEET_GAP + (i % columns) * (tile[0] + SHEET_GAP)
        y = SHEET_GAP + (i // columns) * (tile[1] + SHEET_TITLE + SHEET_GAP)
        draw.text((x, y + 2), _fit_text(draw, font, title, tile[0]), fill=(0, 0, 0), font=font)
        scaled = _as_rgb(picture.resize(tile, Image.Resampling.NEAREST))  # checkerboard at sheet scale
        sheet.paste(scaled, (x, y + SHEET_TITLE))
    return sheet


def _fit_text(draw: ImageDraw.ImageDraw, font: object, text: str, width: int) -> str:
    """`text`, cut short and ended with "..." if it is wider than `width` pixels."""
    if draw.textlength(text, font=font) <= width:  # type: ignore[arg-type]
        return text
    while len(text) > 1 and draw.textlength(text + "...", font=font) > width:  # type: ignore[arg-type]
        text = text[:-1]
    return text + "..."


def write_plot(path: "str | os.PathLike[str]", ks: Sequence[int], costs: Sequence[float], psnrs: Sequence[float], *, title: str, overwrite: bool) -> None:
    """Cost (SSE, left axis) and PSNR (right axis) against k; needs matplotlib."""
    path = Path(path)
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        raise OutputError(f"cannot write {path}: --plot needs matplotlib; install it with {PLOT_EXTRA}") from None
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    left = figure.add_subplot()
    left.plot(ks, costs, "o-", color="tab:blue", label="cost (SSE)")
    left.set_xlabel("k (palette size)")
    left.set_ylabel("k-means cost (SSE)", color="tab:blue")
    left.set_yscale("log" if min(costs, default=0) > 0 else "linear")
    right = left.twinx()
    finite = [(k, p) for k, p in zip(ks, psnrs) if math.isfinite(p)]
    if finite:
        right.plot(*zip(*finite), "s--", color="tab:red", label="PSNR")
    right.set_ylabel("PSNR (dB)", color="tab:red")
    left.set_title(title)
    left.grid(True, alpha=0.3)
    figure.tight_layout()
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in figure.canvas.get_supported_filetypes():
        raise OutputError(f"cannot write {path}: matplotlib has no format for extension {path.suffix or '(none)'!r}")
    atomic_write(path, lambda handle: figure.savefig(handle, format=fmt), overwrite=overwrite)
