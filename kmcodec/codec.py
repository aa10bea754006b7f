"""The codec: image -> palette -> labels -> bits -> container, and back.

Pure functions on arrays and bytes; files, Pillow plugins and the terminal live
in other modules.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from PIL import Image

from . import bitpack, coding1, container, layout, lookup, raster_coding, threads, zstd_labels
from ._mapped import mapping_of, release
from .errors import ImageInputError, ParameterError
from .palette import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SEED, DEFAULT_TOL, PaletteFit, fit_palette
from .pixels import Pixels, to_pixels

# Sentinel: "use Pillow's Image.MAX_IMAGE_PIXELS as it is when decode is called".
PILLOW_LIMIT = object()

# Pillow's mode for each channel count (KmqImage.mode; the plugin above 256 colours).
# Pillow's names, not the spec's, so not in layout, which stays Pillow-free.
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class Encoded:
    """A finished encode: the file's bytes plus what the tools report about it."""

    data: bytes
    fit: PaletteFit
    pixels: Pixels = field(repr=False)
    requested_k: int

    @property
    def header(self) -> container.Header:
        return container.parse_header(self.data)

    @property
    def size(self) -> layout.SizeFormula:
        return self.header.size

    @property
    def mse(self) -> float:
        return self.fit.mse

    @property
    def psnr(self) -> float:
        return psnr(self.fit.mse)


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit data; inf for an exact image."""
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterError(f"k must be an integer, got {k!r}")
    if not layout.MIN_K <= int(k) <= layout.MAX_K:
        raise ParameterError(f"k must be in {layout.MIN_K}..{layout.MAX_K}, got {k}")
    return int(k)


def encode_detailed(
    image: "np.ndarray | Image.Image",
    k: int | None = None,
    *,
    palette: "np.ndarray | None" = None,
    seed: int = DEFAULT_SEED,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    compress: bool = False,
) -> Encoded:
    """Encode and keep the palette fit, so callers can report cost, MSE and PSNR.

    With ``palette`` (K x C) instead of k, pixels get their nearest entry and
    every entry is kept (:mod:`kmcodec.fixed_palette`); no k-means runs.
    """
    if palette is not None:
        if k is not None:
            raise ParameterError(f"give k or palette, not both (k={k})")
        from .fixed_palette import encode_with_palette

        return encode_with_palette(image, palette, compress=compress)
    k = check_k(k)
    pixels = to_pixels(image)
    fit = fit_palette(pixels.array, k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol)
    return Encoded(data=pack(fit.palette, fit.labels, compress=compress), fit=fit, pixels=pixels, requested_k=k)


def encode(
    image: "np.ndarray | Image.Image",
    k: int | None = None,
    *,
    palette: "np.ndarray | None" = None,
    seed: int = DEFAULT_SEED,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    compress: bool = False,
) -> bytes:
    """Encode an image (Pillow image or H x W [x C] array; README "input rules") as .kmq bytes.

    The palette has at most `k` colours (exactly the image's colours when it has
    no more than `k`); the same `seed` gives byte-identical output. Or give
    `palette` (K x C uint8) to label against it, every entry kept. With
    `compress`, the labels are written in coding 1 (spec §11) whenever that is
    smaller than coding 0; the palette and labels are the same either way.
    """
    return encode_detailed(
        image, k, palette=palette, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol, compress=compress
    ).data


def pack(palette: np.ndarray, labels: np.ndarray, *, compress: bool = False) -> bytes:
    """Write a palette (K x C uint8) and a label map (H x W, every label < K) as .kmq bytes.

    With `compress`, coding 1 is written when it is smaller than coding 0, which
    is then also the file's bound (spec §6); otherwise coding 0.
    """
    palette = np.asarray(palette)
    labels = np.asarray(labels)
    if palette.dtype != np.uint8 or palette.ndim != 2 or palette.shape[1] not in layout.CHANNELS:
        raise ImageInputError(f"palette must be K x C uint8 with C in {layout.CHANNELS}, got {palette.shape} {palette.dtype}")
    if labels.ndim != 2 or labels.size == 0:
        raise ImageInputError(f"labels must be a non-empty height x width array, got shape {labels.shape}")
    k = check_k(palette.shape[0])
    if labels.max() >= k or labels.min() < 0:
        raise ImageInputError(f"labels must lie in 0..{k - 1}, found {labels.min()}..{labels.max()}")
    header = container.Header(width=labels.shape[1], height=labels.shape[0], k=k, channels=palette.shape[1])
    if compress and header.size.label_bytes > layout.MIN_CODED_BYTES:
        # Method 3 (spec §11.15) where the C module is built and K <= 256, else method 2.
        stream = raster_coding.encode_labels(labels, palette)
        if stream is None or len(stream) < layout.MIN_CODED_BYTES:
            stream = coding1.encode_labels(labels, palette)
        alternative = zstd_labels.encode_labels(labels, k, beat=min(len(stream), header.size.label_bytes))
        if alternative is not None and len(alternative) >= layout.MIN_CODED_BYTES:
            stream = alternative  # method 1 (spec §11.11): text and screenshots
        if len(stream) < header.size.label_bytes:
            coded = container.Header(header.width, header.height, k, header.channels, coding=layout.CODING_CODED)
            return container.join(coded, palette.tobytes(), stream)
    payload = bitpack.pack_labels(labels, header.bits_per_pixel)
    return container.join(header, palette.tobytes(), payload)


def recode(data: bytes | bytearray | memoryview, *, compress: bool, max_pixels: "int | None | object" = PILLOW_LIMIT) -> bytes:
    """Convert a .kmq file between codings without touching its palette or labels.

    `compress=True` writes coding 1 when smaller (else coding 0), `False` coding 0.
    """
    image = decode(data, max_pixels=max_pixels)
    return pack(image.palette, image.labels, compress=compress)


def decode(data: bytes | bytearray | memoryview, *, max_pixels: "int | None | object" = PILLOW_LIMIT) -> "KmqImage":
    """Validate every rule of the spec and return the image; raises a `KmqError` subclass.

    `max_pixels` caps width x height before anything is allocated; the default
    follows Pillow's `Image.MAX_IMAGE_PIXELS`, and None removes the cap.
    """
    limit = container.default_max_pixels() if max_pixels is PILLOW_LIMIT else max_pixels
    parts = container.split(data, max_pixels=limit)  # type: ignore[arg-type]
    header = parts.header
    palette = np.frombuffer(parts.palette, np.uint8).reshape(header.k, header.channels).copy()
    if header.coding == layout.CODING_CODED:
        offset = layout.HEADER_SIZE + header.size.palette_bytes
        labels = coding1.decode_labels(parts.labels, header.width, header.height, palette, offset)
        return KmqImage(header, palette, None, labels=labels)
    # Immutable input (bytes, a read-only file mapping) can be shared; anything else is
    # copied so later writes to it cannot change the image.
    shared = isinstance(data, bytes) or isinstance(data, mmap.mmap) and memoryview(data).readonly
    payload = np.frombuffer(parts.labels if shared else bytes(parts.labels), np.uint8)
    image = KmqImage(header, palette, payload)
    image.validate_labels()
    return image


# Items per gather chunk: small enough to keep page faults and cache misses
# local, large enough that per-call overhead vanishes.
GATHER_CHUNK = 1 << 18
GATHER_THREADS = threads.WORKERS
# From this many label bytes on, decode looks up pairs of bytes: building the
# 65536-row table costs about 2 ms and saves about 1.2 ns per byte.
PAIR_MIN_BYTES = 1 << 22


def gather(table: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """`out[:] = table[index]` in chunks spread over threads (numpy's take releases the GIL)."""

    def part(start: int) -> None:
        end = start + GATHER_CHUNK
        np.take(table, index[start:end], out=out[start:end])

    threads.each(part, range(0, index.size, GATHER_CHUNK), GATHER_THREADS)


def as_items(rows: np.ndarray) -> np.ndarray:
    """View each row of a 2-D uint8 array as one opaque item, so a gather copies whole rows."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.shape[1]))).reshape(-1)


class KmqImage:
    """A decoded .kmq image: header fields, palette, label map (the segmentation) and pixels."""

    def __init__(
        self, header: container.Header, palette: np.ndarray, payload: np.ndarray | None, labels: np.ndarray | None = None
    ) -> None:
        self.header = header
        self.palette = palette  # (k, channels) uint8
        self._payload = payload  # coding 0: the packed labels, unpacked on demand
        self._labels = labels  # coding 1: decoded (and validated) at once

    width = property(lambda self: self.header.width)
    height = property(lambda self: self.header.height)
    k = property(lambda self: self.header.k)
    channels = property(lambda self: self.header.channels)
    bits_per_pixel = property(lambda self: self.header.bits_per_pixel)
    coding = property(lambda self: self.header.coding)

    @property
    def mode(self) -> str:
        """The Pillow mode of `to_pil()`: L, RGB or RGBA."""
        return PIL_MODES[self.channels]

    @property
    def size(self) -> layout.SizeFormula:
        return self.header.size

    def __repr__(self) -> str:
        return f"<KmqImage {self.width}x{self.height} {self.mode} k={self.k} bits_per_pixel={self.bits_per_pixel} coding={self.coding}>"

    def _byte_path(self) -> bool:
        """Whether labels sit whole in bytes (b in 1, 2, 4, 8), so one table lookup per byte decodes them."""
        return self._payload is not None and self.bits_per_pixel in (1, 2, 4, 8)

    def validate_labels(self) -> None:
        """Enforce padding and label < k in bounded memory, keeping no labels."""
        if self.bits_per_pixel == 0 or self._payload is None:  # k == 1 (no stream), or coding 1 (checked when decoded)
            return
        bitpack.check_labels(self._payload, self.width * self.height, self.bits_per_pixel, self.k, self.width)

    @property
    def labels(self) -> np.ndarray:
        """The label map, height x width: each pixel's palette index (uint8, or uint16 when k > 256)."""
        if self._labels is None:
            count = self.width * self.height
            self._labels = bitpack.unpack_labels(self._payload, count, self.bits_per_pixel, self.k, self.width)
        return self._labels.reshape(self.height, self.width)

    def to_array(self) -> np.ndarray:
        """The decoded pixels, height x width x channels uint8."""
        count, channels = self.width * self.height, self.channels
        if self._byte_path():
            return self._lookup_decode(self._payload, self.bits_per_pixel)[: count * channels].reshape(self.height, self.width, channels)
        if self._payload is None and self._labels.dtype == np.uint8:  # coding 1, k <= 256: a label per byte
            return self._lookup_decode(self._labels.reshape(-1), 8).reshape(self.height, self.width, channels)
        out = np.empty((count, channels), np.uint8)
        if self._payload is None:
            rows = as_items(self.palette)  # coding 1, k > 256: labels are decoded already; one threaded gather
            gather(rows, self._labels.reshape(-1), out.view(rows.dtype).reshape(-1))
            return out.reshape(self.height, self.width, channels)
        for start, band in self._bands(bitpack.CHUNK):
            out[start : start + band.shape[0]] = self.palette[band]
        return out.reshape(self.height, self.width, channels)

    def _lookup_decode(self, payload: np.ndarray, bits: int) -> np.ndarray:
        """b in 1, 2, 4, 8: each packed byte becomes the colours of its pixels by one table lookup.

        A byte per label goes to the C loop where it was built. Otherwise large
        payloads are looked up two bytes at a time: half as many items, and
        numpy's take has no fast path for items of 3 or 6 bytes anyway.
        """
        per_byte = 8 // bits
        item = per_byte * self.channels
        table = self.palette[np.minimum(bitpack.byte_table(bits), self.k - 1)].reshape(256, item)
        if bits == 8 and lookup.available():
            return lookup.lookup(table, payload)
        out = np.empty(payload.size * item, np.uint8)
        pairs = payload.size // 2 if payload.size >= PAIR_MIN_BYTES else 0
        if pairs:
            both = np.arange(65536)
            # A '<u2' index holds the first byte of the pair in its low 8 bits.
            pair_rows = as_items(np.concatenate([table[both & 255], table[both >> 8]], axis=1))
            gather(pair_rows, payload[: 2 * pairs].view("<u2"), out[: 2 * pairs * item].view(pair_rows.dtype))
        rows = as_items(table)
        gather(rows, payload[2 * pairs :], out[2 * pairs * item :].view(rows.dtype))
        return out

    def _bands(self, pixels: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first pixel, labels) for consecutive runs of `pixels` labels, read straight from the bits."""
        count = self.width * self.height
        mapping = mapping_of(self._payload)  # a file mapped by read(mmap=True): release each band's pages
        for start in range(0, count, pixels):
            if self._payload is None:
                yield start, self._labels.reshape(-1)[start : start + pixels]
            else:
                yield start, bitpack.unpack_range(self._payload, start, min(pixels, count - start), self.bits_per_pixel)
            if mapping is not None:
                release(self._payload[start * self.bits_per_pixel // 8 : (start + pixels) * self.bits_per_pixel // 8], mapping)

    def iter_rows(self, rows: int = 256) -> Iterator[np.ndarray]:
        """Yield the image in bands of `rows` rows (the last may be shorter), reading only their bits.

        Memory is bounded by the band, so a caller can stream an image too large to hold.
        """
        if rows < 1:
            raise ParameterError(f"rows must be at least 1, got {rows}")
        for start, band in self._bands(rows * self.width):
            yield self.palette[band].reshape(-1, self.width, self.channels)

    def mask(self, index: int) -> np.ndarray:
        """Boolean height x width mask of the pixels labelled `index` (one cluster of the segmentation)."""
        if not 0 <= index < self.k:
            raise ParameterError(f"mask index must be in 0..{self.k - 1}, got {index}")
        return self.labels == index

    def to_pil(self) -> Image.Image:
        """The decoded image as a Pillow image in mode L, RGB or RGBA."""
        array = self.to_array()
        if self.channels == 1:
            array = array[:, :, 0]
        return Image.fromarray(array)  # shape picks L, RGB or RGBA
