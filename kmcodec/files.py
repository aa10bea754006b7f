"""File I/O at the edge: reading images and .kmq files, and writing outputs atomically.

Every output goes to a temporary file in the target's directory and is moved into
place with `os.replace`, so a failed write never leaves a partial or clobbered file.
"""

from __future__ import annotations

import mmap as mmap_module
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .codec import PILLOW_LIMIT, KmqImage, decode, encode
from .errors import ImageInputError, KmqError, OutputError
from .pixels import Pixels, to_pixels

if TYPE_CHECKING:
    from .banded import BandedEncode

# mkstemp makes its file 0600; outputs get the mode open() would give them,
# 0666 less the umask. The umask can only be read by setting it, so read it once.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
OUTPUT_MODE = 0o666 & ~_UMASK


def check_output(path: "str | os.PathLike[str]", *, overwrite: bool) -> None:
    """Refuse an output name that is a directory, or that exists when not overwriting."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if not overwrite and path.exists():
        raise OutputError(f"output exists: {path} (use --force to overwrite)")


def atomic_write(path: "str | os.PathLike[str]", write: Callable[[object], None], *, overwrite: bool = True) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it into place.

    With `overwrite=False` an existing `path` is an `OutputError`, checked again at
    the final move (a hard link, which fails if the name was taken meanwhile).
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise OutputError(f"cannot write {path}: directory {directory} {problem}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.chmod(tmp, OUTPUT_MODE)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, KmqError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def _move_no_clobber(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)  # atomic, and fails if `path` appeared meanwhile
    except FileExistsError:
        raise OutputError(f"output exists: {path} (use --force to overwrite)") from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise OutputError(f"output exists: {path} (use --force to overwrite)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_bytes(path: "str | os.PathLike[str]", data: bytes, *, overwrite: bool = True) -> None:
    atomic_write(path, lambda handle: handle.write(data), overwrite=overwrite)


def load_image(path: "str | os.PathLike[str]", frame: int | None = None) -> Pixels:
    """Open any image Pillow reads (a .kmq too, once the plugin is registered) as encoder input.

    A multi-frame image gives its first frame, noted as "first of N frames",
    or frame `frame` (0-based) when given.
    """
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except PermissionError:  # a directory on the way cannot be entered: is_dir raises rather than says no
        raise ImageInputError(f"cannot read {path}: permission denied") from None
    if is_dir:
        raise ImageInputError(f"cannot read {path}: it is a directory")
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frame is not None and not 0 <= frame < frames:
                raise ImageInputError(f"cannot read {path}: frame {frame + 1}, it has {frames}")
            if frame:
                image.seek(frame)
            try:
                pixels = to_pixels(image)  # loads the image, after reading the file's sample format from its tile
            except ImageInputError as exc:  # a value the 8-bit rules refuse: say which file holds it
                raise ImageInputError(f"{path}: {exc}") from None
            if frames > 1:
                note = f"first of {frames} frames" if frame is None else f"frame {frame + 1} of {frames}"
                pixels = Pixels(pixels.array, pixels.notes + (note,))
            return pixels
    except FileNotFoundError:
        raise ImageInputError(f"cannot read {path}: no such file") from None
    except PermissionError:
        raise ImageInputError(f"cannot read {path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"cannot read {path}: not an image Pillow recognises") from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"cannot read {path}: {exc}") from None
    except KmqError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow reports corrupt data with these
        raise ImageInputError(f"cannot read {path}: corrupt image ({exc})") from None


def read_bytes(path: "str | os.PathLike[str]") -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageInputError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ImageInputError(f"cannot read {path}: it is a directory") from None
    except PermissionError:
        raise ImageInputError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise ImageInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def read(path: "str | os.PathLike[str]", *, max_pixels: "int | None | object" = PILLOW_LIMIT, mmap: bool = False) -> KmqImage:
    """Read and validate a .kmq file.

    With `mmap=True` the file is memory-mapped instead of read: labels are read
    from it as `iter_rows`, `mask` or `labels` need them, so an image larger than
    memory can be streamed. The file must not change while the image is in use.
    """
    if not mmap:
        return decode(read_bytes(path), max_pixels=max_pixels)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = mmap_module.mmap(handle.fileno(), 0, access=mmap_module.ACCESS_READ) if size else b""
    except OSError:
        return decode(read_bytes(path), max_pixels=max_pixels)  # read_bytes names the problem
    return decode(data, max_pixels=max_pixels)


def write(
    path: "str | os.PathLike[str]",
    image: "np.ndarray | Image.Image | str | os.PathLike[str]",
    k: int | None = None,
    *,
    overwrite: bool = True,
    **options: object,
) -> "bytes | BandedEncode":
    """Encode `image` (an array, a Pillow image, or the path of one) to a .kmq file; returns its bytes.

    `options` are `encode`'s: seed, n_init, ..., or palette=P instead of k.
    A memory-mapped array (``numpy.load(..., mmap_mode="r")``) is encoded in row
    bands in bounded memory (:mod:`kmcodec.banded`; option `band_rows`) and the
    `BandedEncode` it returns describes the file instead of holding its bytes.
    The result is byte-identical to the in-memory encode. With `compress=True`
    (or a given `palette`) the array is encoded in memory instead: coding 1
    interlaces the whole label map, so it cannot be written band by band.
    """
    from . import banded

    if isinstance(image, (str, os.PathLike)):
        image = load_image(image).array
    elif banded.is_mapped(image) and not options.get("compress") and options.get("palette") is None:
        return banded.write_banded(path, image, k, overwrite=overwrite, **options)  # type: ignore[arg-type, return-value]
    data = encode(image, k, **options)  # type: ignore[arg-type]
    write_bytes(path, data, overwrite=overwrite)
    return data
