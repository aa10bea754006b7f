"""What users hand the encoder (Pillow images, numpy arrays) -> an H x W x C uint8 array.

C is 1 (grey), 3 (RGB) or 4 (RGBA). Each conversion that changes the data is
described in a short note, so the CLI summary can say what was done.

Arrays and wide Pillow modes (I;16, I, F) reach 8 bits by these rules (README,
"Scientific and high-bit-depth input"):

- shape (H, W) is grey; (H, W, 1|3|4) is grey, RGB or RGBA; any other shape is refused;
- uint8 as it is; bool False/True -> 0/255;
- integers: values in 0..255 as they are, values in 0..65535 scaled by
  255/65535 and rounded; negative values or values above 65535 are refused;
- floats: data in [0, 1] (min >= 0 and max <= 1) is scaled by 255; any other
  data is mapped from its own range min..max onto 0..255; both rounded. A
  constant image outside [0, 1] becomes 0. NaN or inf is refused.

When the rule loses precision, `Pixels.source` keeps the user's values with the
linear map to the 0..255 scale, so errors can be measured against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ._mapped import iter_row_bands
from .errors import ImageInputError

# Pillow modes stored as grey, as RGB and as RGBA; anything else is converted to RGB.
GREY_MODES = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # read as arrays, then the array rules
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}  # Pillow converts La to nothing but LA
# Sample layouts of files with 16-bit samples that Pillow reads into an 8-bit mode (no wide colour modes exist).
NARROWED_LAYOUTS = {"L", "LA", "RGB", "RGBA", "RGBX"}
ORIENTATION = 0x0112  # the EXIF tag number
# Rows per chunk when scanning or measuring an array: bounds the float temporaries.
SCAN_PIXELS = 1 << 18


@dataclass(frozen=True)
class Pixels:
    """An image ready for the palette stage, and what was done to get it there.

    `source` is set only when the 8-bit conversion lost precision: the user's
    values (H, W, C) in their own dtype, which ``(source - offset) * scale``
    maps onto the 0..255 scale of `array` without rounding.
    """

    array: np.ndarray  # (height, width, channels) uint8, C-contiguous
    notes: tuple[str, ...] = ()
    source: np.ndarray | None = None
    offset: float = 0.0
    scale: float = 1.0

    @property
    def height(self) -> int:
        return self.array.shape[0]

    @property
    def width(self) -> int:
        return self.array.shape[1]

    @property
    def channels(self) -> int:
        return self.array.shape[2]

    @property
    def exact(self) -> bool:
        """Whether `array` holds the user's values exactly (no precision lost on the way to 8 bits)."""
        return self.source is None

    def source_cost(self, palette: np.ndarray, labels: np.ndarray) -> float:
        """SSE of the decoded image against the user's values on the 0..255 scale (the k-means cost when exact)."""
        values = self.array if self.source is None else self.source
        pal = palette.astype(np.float64)
        flat_labels = labels.reshape(-1)
        rows = max(1, SCAN_PIXELS // self.width)
        total = 0.0
        for y, band in iter_row_bands(values, rows):
            band = band.reshape(-1, self.channels).astype(np.float64)
            if self.source is not None:
                band = (band - self.offset) * self.scale
            band -= pal[flat_labels[y * self.width : (y + rows) * self.width]]
            total += float(np.einsum("ij,ij->", band, band))
        return total


def as_channels_last(array: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, 1|3|4) as it is; anything else is refused naming shape and dtype."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        hint = "; channels first? use numpy.moveaxis(a, 0, -1)" if array.ndim == 3 and array.shape[0] in (1, 3, 4) else ""
        raise ImageInputError(
            f"array shape {array.shape} dtype {array.dtype}: expected (height, width) or (height, width, 1|3|4){hint}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageInputError(f"array shape {array.shape} dtype {array.dtype}: width and height must be at least 1")
    return array


def describe(array: np.ndarray, mode: str | None = None) -> str:
    """How an error names the input: its Pillow mode and size for an image, its shape and dtype for an array."""
    if mode is not None:
        return f"mode {mode} image {array.shape[1]}x{array.shape[0]} ({array.dtype})"
    return f"array shape {array.shape} dtype {array.dtype}"


def value_range(array: np.ndarray, mode: str | None = None) -> tuple[float, float]:
    """(min, max) of an array, scanned in row bands; refuses NaN and inf with their first place."""
    lo, hi = np.inf, -np.inf
    floating = array.dtype.kind == "f"
    for y, band in iter_row_bands(array, max(1, SCAN_PIXELS // max(1, array.shape[1]))):
        if floating and not np.isfinite(band).all():
            raise _non_finite(array, band, y, mode)
        lo = min(lo, float(band.min()))
        hi = max(hi, float(band.max()))
    return lo, hi


def _non_finite(array: np.ndarray, band: np.ndarray, y0: int, mode: str | None) -> ImageInputError:
    y, x = (int(i) for i in np.argwhere(~np.isfinite(band))[0][:2])
    return ImageInputError(
        f"{describe(array, mode)} holds NaN or infinity, the first at (x={x}, y={y0 + y});"
        " replace them before encoding"
    )


@dataclass(frozen=True)
class Rule:
    """One array's map to 8 bits: ``rint((v - offset) * scale)``, and the note that says so (None: as it is)."""

    offset: float
    scale: float
    note: str | None

    def apply(self, values: np.ndarray) -> np.ndarray:
        if self.note is None:
            return values.astype(np.uint8, copy=False)
        if values.dtype == np.bool_:
            return values.astype(np.uint8) * np.uint8(255)
        scaled = (values.astype(np.float64) - self.offset) * self.scale
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def rule_for(array: np.ndarray, mode: str | None = None) -> Rule:
    """The documented 8-bit rule (module docstring) for this array's dtype and values; `mode` names a Pillow source."""
    kind, name = array.dtype.kind, f"{array.dtype}"
    if array.dtype == np.uint8:
        return Rule(0.0, 1.0, None)
    if kind == "b":
        return Rule(0.0, 255.0, "bool mapped to 0/255")
    if kind in "ui":
        lo, hi = value_range(array, mode)
        if lo < 0 or hi > 65535:
            raise ImageInputError(f"{describe(array, mode)} holds {lo:g}..{hi:g}; integer images must lie in 0..65535")
        if hi <= 255:
            return Rule(0.0, 1.0, None if kind == "u" and array.itemsize == 1 else f"{name} values in 0..255 kept as 8-bit")
        return Rule(0.0, 255 / 65535, f"{name} scaled from 0..65535 to 8 bits (max {hi:g})")
    if kind == "f":
        lo, hi = value_range(array, mode)
        if lo >= 0 and hi <= 1:
            return Rule(0.0, 255.0, f"{name} data in [0, 1] scaled by 255 to 8 bits")
        if hi == lo:
            return Rule(lo, 0.0, f"{name} constant {lo:g} (outside [0, 1]) mapped to 0")
        return Rule(lo, 255 / (hi - lo), f"{name} data range {lo:g}..{hi:g} mapped to 0..255")
    raise ImageInputError(f"{describe(array, mode)}: expected uint8, bool, integers in 0..65535 or finite floats")


def from_array(array: np.ndarray, notes: tuple[str, ...] = (), *, mode: str | None = None) -> Pixels:
    """Accept the shapes and dtypes of the module docstring; any layout (views, Fortran order) is copied to C order.

    `mode` names the Pillow mode the array came from, for the note.
    """
    if not isinstance(array, np.ndarray):
        raise ImageInputError(f"expected a numpy array or a PIL image, got {type(array).__name__}")
    array = as_channels_last(array)
    rule = rule_for(array, mode)
    pixels = np.ascontiguousarray(rule.apply(array))
    if rule.note is None:
        return Pixels(pixels, notes)
    notes = notes + ((f"{mode} image: " if mode else "") + rule.note,)
    if array.dtype == np.bool_ or _converts_exactly(array, pixels, rule):
        return Pixels(pixels, notes)
    return Pixels(pixels, notes + ("error measured against the original values",), array, rule.offset, rule.scale)


def _converts_exactly(array: np.ndarray, pixels: np.ndarray, rule: Rule) -> bool:
    """Whether every value lands on its 8-bit integer (so nothing was lost), checked in bands."""
    rows = max(1, SCAN_PIXELS // array.shape[1])
    for y, band in iter_row_bands(array, rows):
        if not np.array_equal((band.astype(np.float64) - rule.offset) * rule.scale, pixels[y : y + rows]):
            return False
    return True


def from_pil(image: Image.Image) -> Pixels:
    """Convert any Pillow image: apply EXIF orientation, then pick grey, RGB or RGBA.

    Grey modes stay grey (one channel, no 3x waste); an alpha channel is kept
    unless every pixel is opaque; palette images keep transparency as alpha.
    Wide grey modes (I;16, I, F) follow the array rules. A file of 16-bit
    colour or grey+alpha samples, which Pillow narrows on reading, is noted.
    """
    narrowed, maxval = narrowed_layout(image), ppm_maxval(image)
    notes = [f"16-bit {narrowed} file: Pillow reads the high byte of each sample"] if narrowed else []
    if maxval is not None:
        notes.append(f"16-bit RGB file: Pillow scales each sample from 0..{maxval} to 0..255")
    image.load()
    if narrowed == "LA" and image.mode == "RGBA":
        image = image.convert("LA")  # Pillow widened the grey to R = G = B; the conversion gets it back exactly
    if image.mode in PREMULTIPLIED:
        image = image.convert(PREMULTIPLIED[image.mode])
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
            notes.append(f"EXIF orientation {orientation} applied")
    except Exception:  # a broken EXIF block should not stop an encode
        pass
    mode = image.mode
    if mode in WIDE_MODES:
        return from_array(np.asarray(image), tuple(notes), mode=mode)
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA"
        target = "RGBA" if has_alpha else "RGB"
    elif mode in GREY_MODES or mode in ("LA", "La") and image.getextrema()[1][0] == 255:
        target = "L"  # grey with an alpha channel that is opaque everywhere stays one channel
    elif mode in ALPHA_MODES:
        target = "RGBA"
    else:
        target = "RGB"
    if mode != target:
        image = image.convert(target)
        notes.append(f"{mode} converted to {target}" + (" (alpha opaque everywhere)" if mode in ("LA", "La") and target == "L" else ""))
    array = np.asarray(image)
    if target == "RGBA" and bool((array[:, :, 3] == 255).all()):
        array = array[:, :, :3]
        notes.append("alpha dropped: every pixel is opaque")
    return Pixels(from_array(np.ascontiguousarray(array)).array, tuple(notes))


def narrowed_layout(image: Image.Image) -> str | None:
    """The sample layout (RGB, RGBA, LA, ...) of a file of 16-bit samples that Pillow reads at 8 bits, else None.

    Pillow has no 16-bit colour modes: it keeps the high byte of each sample of a
    48-bit RGB or 64-bit RGBA PNG, and reads 16-bit grey+alpha as RGBA. Only the
    tile of an image not yet loaded still names the file's samples ("RGB;16B").
    """
    tile = getattr(image, "tile", None)
    if not tile or image.mode in WIDE_MODES:
        return None
    args = tile[0][3]
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
    if not isinstance(rawmode, str):
        return None
    layout, _, bits = rawmode.partition(";")
    return layout if layout in NARROWED_LAYOUTS and bits[:2] == "16" else None


def ppm_maxval(image: Image.Image) -> int | None:
    """The maxval of a PPM colour file of 16-bit samples (maxval above 255), which Pillow reads at 8 bits, else None.

    Pillow rounds each sample from 0..maxval to 0..255 into an RGB image; a
    16-bit grey PGM becomes mode I instead and follows the array rules. As in
    `narrowed_layout`, only the tile of an image not yet loaded tells.
    """
    tile = getattr(image, "tile", None)
    if not tile or image.mode in WIDE_MODES or tile[0][0] not in ("ppm", "ppm_plain"):
        return None
    args = tile[0][3]
    maxval = args[-1] if isinstance(args, tuple) and args else None
    return maxval if isinstance(maxval, int) and maxval > 255 else None


def to_pixels(image: "np.ndarray | Image.Image") -> Pixels:
    """Dispatch on the input type; the one entry point the codec uses."""
    if isinstance(image, Image.Image):
        return from_pil(image)
    return from_array(image)
