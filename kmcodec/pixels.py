"""What users hand the encoder (Pillow images, numpy arrays) -> an H x W x C uint8 array.

C is 1 (grey), 3 (RGB) or 4 (RGBA). Each conversion that changes the data is
described in a short note, so the CLI summary can say what was done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageInputError

# Pillow modes stored as grey, as RGB and as RGBA; anything else is converted to RGB.
GREY_MODES = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
ORIENTATION = 0x0112  # the EXIF tag number


@dataclass(frozen=True)
class Pixels:
    """An image ready for the palette stage, and what was done to get it there."""

    array: np.ndarray  # (height, width, channels) uint8, C-contiguous
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return self.array.shape[0]

    @property
    def width(self) -> int:
        return self.array.shape[1]

    @property
    def channels(self) -> int:
        return self.array.shape[2]


def from_array(array: np.ndarray) -> Pixels:
    """Accept H x W (grey) or H x W x C uint8 with C in {1, 3, 4}."""
    if not isinstance(array, np.ndarray):
        raise ImageInputError(f"expected a numpy array or a PIL image, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ImageInputError(f"array dtype is {array.dtype}, expected uint8")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageInputError(f"array shape is {array.shape}, expected (height, width) or (height, width, 1|3|4)")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageInputError(f"array shape is {array.shape}: width and height must be at least 1")
    return Pixels(np.ascontiguousarray(array))


def from_pil(image: Image.Image) -> Pixels:
    """Convert any Pillow image: apply EXIF orientation, then pick grey, RGB or RGBA.

    Grey modes stay grey (one channel, no 3x waste); an alpha channel is kept
    unless every pixel is opaque; palette images keep transparency as alpha.
    """
    notes: list[str] = []
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
            notes.append(f"EXIF orientation {orientation} applied")
    except Exception:  # a broken EXIF block should not stop an encode
        pass
    mode = image.mode
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA"
        target = "RGBA" if has_alpha else "RGB"
    elif mode in GREY_MODES or mode in ("LA", "La") and image.getextrema()[1][0] == 255:
        target = "L"  # grey with an alpha channel that is opaque everywhere stays one channel
    elif mode in ALPHA_MODES:
        target = "RGBA"
    else:
        target = "RGB"
    if mode in {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}:
        image = _wide_grey_to_l(image)
        notes.append(f"{mode} scaled to 8-bit grey")
    elif mode != target:
        image = image.convert(target)
        notes.append(f"{mode} converted to {target}" + (" (alpha opaque everywhere)" if mode in ("LA", "La") and target == "L" else ""))
    array = np.asarray(image)
    if target == "RGBA" and bool((array[:, :, 3] == 255).all()):
        array = array[:, :, :3]
        notes.append("alpha dropped: every pixel is opaque")
    return Pixels(from_array(np.ascontiguousarray(array)).array, tuple(notes))


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """16-bit and float grey: keep the top 8 bits of 16-bit data, clip floats to 0..255."""
    values = np.asarray(image)
    if image.mode == "F":
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    values = values.astype(np.int64)
    top = 255 if values.max(initial=0) <= 255 else 65535
    return Image.fromarray((values.clip(0, top) * 255 // top).astype(np.uint8))


def to_pixels(image: "np.ndarray | Image.Image") -> Pixels:
    """Dispatch on the input type; the one entry point the codec uses."""
    if isinstance(image, Image.Image):
        return from_pil(image)
    return from_array(image)
