"""Pillow plugin: ``Image.open("x.kmq")`` and ``image.save("x.kmq", k=16)``.

Importing :mod:`kmcodec` registers the format (``register_pillow`` does it
again explicitly, like pillow-heif's ``register_heif_opener``). The file has
the five parts of Pillow's own plugins (see ``PIL/QoiImagePlugin.py``):
``_accept``, the ``ImageFile`` subclass, the decoder, ``_save`` and the
registration block.

Modes, chosen so that nothing decoded is lost:

========  =================================================  =======
channels  k <= 256                                           k > 256
========  =================================================  =======
1 (grey)  P, grey palette                                    L
3 (RGB)   P, RGB palette                                     RGB
4 (RGBA)  P, RGB palette, alpha in ``info["transparency"]``  RGBA
========  =================================================  =======

In mode P the pixel values are the labels and the palette is the file's, so
``np.asarray(image)`` is the label map and ``image.convert("RGBA")`` (or
``"RGB"``, ``"L"``) is the decoded image exactly. Above 256 colours Pillow has
no palette mode; the labels are then only available from ``kmcodec.decode``.

``_open`` reads the 24-byte header and, for mode P, the palette (at most
1 kB), so Pillow's decompression-bomb check runs before any pixel is decoded.
Loading hands the whole file to :func:`kmcodec.decode`, which enforces every
rule of the spec. Errors: a header that breaks a rule raises ``OSError`` from
``Image.open`` with the rule in the message; a body that breaks one (length,
check, labels, padding) raises ``OSError`` from ``load()``.

Saving: ``image.save("x.kmq", k=16, seed=0, n_init=4, max_iter=100, compress=True)``;
``compress`` writes coded labels (coding 1) when smaller. Reading handles both codings.
``palette=P`` (K x C uint8) labels against a given palette instead of k. A mode
P image saved without ``k`` keeps its palette and labels exactly (so opening a
.kmq file and saving it again gives the same bytes); any other image without
``k`` gets ``k=256``, as in ``Image.quantize``.
"""

from __future__ import annotations

from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImagePalette

from . import container, layout
from .codec import PIL_MODES, decode, encode, pack
from .errors import KmqError

FORMAT = "KMQ"
MIME = "image/x-kmq"
EXTENSION = ".kmq"
DEFAULT_K = 256  # Image.quantize's default number of colours
MAX_P_COLOURS = 256  # Pillow's palette mode holds at most 256 entries


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(layout.MAGIC)


def pil_mode(header: container.Header) -> str:
    """The mode ``Image.open`` gives a file with this header (module docstring table)."""
    if header.k <= MAX_P_COLOURS:
        return "P"
    return PIL_MODES[header.channels]


class KmqImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "k-means palette image (.kmq)"

    def _open(self) -> None:
        assert self.fp is not None
        head = self.fp.read(layout.HEADER_SIZE)
        if not _accept(head):
            msg = "not a .kmq file"
            raise SyntaxError(msg)
        try:
            header = container.parse_header(head)
        except KmqError as exc:
            # Our magic but a broken header: say which rule, rather than
            # Pillow's "cannot identify image file" that SyntaxError becomes.
            raise OSError(f"broken .kmq file: {exc}") from None
        self._size = (header.width, header.height)
        self._mode = pil_mode(header)
        self.info.update(k=header.k, channels=header.channels, bits_per_pixel=header.bits_per_pixel, coding=header.coding)
        if self._mode == "P":
            self.palette, alpha = _read_palette(self.fp, header)
            if alpha is not None:
                self.info["transparency"] = alpha
        # Offset 0: the decoder reads the whole file, header included, so that
        # kmcodec.decode checks it exactly as it checks any other .kmq file.
        self.tile = [ImageFile._Tile("kmq", (0, 0, *self._size), 0, None)]


def _read_palette(fp: IO[bytes], header: container.Header) -> tuple[ImagePalette.ImagePalette, bytes | None]:
    """The palette as Pillow keeps it (RGB entries), and the alpha of each entry for 4 channels.

    Alpha goes in ``info["transparency"]``, one byte per entry, as PngImagePlugin
    does with a tRNS chunk; Pillow's conversions and savers understand that.
    """
    size = header.channels * header.k
    data = fp.read(size)
    if len(data) < size:
        raise OSError(f"broken .kmq file: truncated in the palette ({len(data)} of {size} bytes)")
    entries = np.frombuffer(data, np.uint8).reshape(header.k, header.channels)
    rgb = np.repeat(entries, 3, axis=1) if header.channels == 1 else entries[:, :3]
    alpha = entries[:, 3].tobytes() if header.channels == 4 else None
    return ImagePalette.raw("RGB", np.ascontiguousarray(rgb).tobytes()), alpha


class KmqDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        assert self.fd is not None
        head = self.fd.read(layout.HEADER_SIZE)
        try:
            # One byte past the size the header implies, so trailing data is
            # detected without reading an arbitrarily long file.
            total = container.parse_header(head).size.total_bytes
            data = head + self.fd.read(total + 1 - len(head))
            # Pillow's decompression-bomb check already ran on open.
            image = decode(data, max_pixels=None)
        except KmqError as exc:
            raise OSError(f"broken .kmq file: {exc}") from None
        if self.mode == "P":
            self.set_as_raw(np.ascontiguousarray(image.labels, dtype=np.uint8).tobytes())
        else:
            self.set_as_raw(image.to_array().tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    options = {key: im.encoderinfo[key] for key in ("seed", "n_init", "max_iter", "tol") if key in im.encoderinfo}
    k = im.encoderinfo.get("k")
    compress = bool(im.encoderinfo.get("compress", False))
    palette = im.encoderinfo.get("palette")
    # Bad options raise kmcodec's ParameterError, a ValueError as Pillow's own savers raise.
    if palette is not None:
        data = encode(im, k, palette=palette, compress=compress)
    elif k is None and im.mode == "P":
        data = pack(*_palette_and_labels(im), compress=compress)
    else:
        data = encode(im, DEFAULT_K if k is None else k, compress=compress, **options)
    fp.write(data)


def _palette_and_labels(im: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """A mode P image's own palette and labels, every entry kept (so indices stay the same).

    Alpha comes from an RGBA palette or the ``transparency`` info; the palette
    is stored grey (1 channel) when every entry is grey and opaque, and without
    alpha when every entry is opaque, as the encoder stores pixels.
    """
    labels = np.asarray(im)
    palette_mode = im.palette.mode if im.palette is not None else "RGB"
    width = 4 if palette_mode == "RGBA" else 3
    entries = np.frombuffer(bytes(im.getpalette("RGBA" if width == 4 else "RGB") or b""), np.uint8).reshape(-1, width)
    # An index past the palette is black in Pillow; it is kept as an entry too.
    k = max(len(entries), int(labels.max()) + 1)
    rgba = np.zeros((k, 4), np.uint8)
    rgba[:, 3] = 255
    rgba[: len(entries), :width] = entries
    transparency = im.info.get("transparency")
    if isinstance(transparency, int) and transparency < k:
        rgba[transparency, 3] = 0
    elif isinstance(transparency, bytes):
        alpha = np.frombuffer(transparency, np.uint8)[:k]
        rgba[: len(alpha), 3] = alpha
    if (rgba[:, 3] != 255).any():
        return rgba, labels
    if (rgba[:, :1] == rgba[:, 1:3]).all():
        return rgba[:, :1].copy(), labels
    return rgba[:, :3].copy(), labels


def register_pillow() -> None:
    """Register .kmq with Pillow: open, save, the extension and the MIME type.

    Importing :mod:`kmcodec` already does this; calling it again is harmless.
    """
    Image.register_open(FORMAT, KmqImageFile, _accept)
    Image.register_decoder("kmq", KmqDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


register_pillow()
