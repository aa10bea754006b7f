"""Test helpers that build coding-1 files of a chosen method, whatever kmcodec's encoder would pick."""

from __future__ import annotations

import zlib

import numpy as np

import kmcodec
from kmcodec import container, layout, raster_ref


def method0_file(palette: np.ndarray, labels: np.ndarray, method: int = kmcodec.coding1.METHOD) -> bytes | None:
    """A coding-1 file whose label stream is method 0 (spec §11.1-§11.10), or `method` 2 (§11.13); None when over the bound."""
    header = container.Header(labels.shape[1], labels.shape[0], palette.shape[0], palette.shape[1], coding=layout.CODING_CODED)
    stream = kmcodec.coding1.encode_labels(labels, palette, method)
    if len(stream) >= header.size.label_bytes:
        return None
    return container.join(header, palette.tobytes(), stream)


def method2_file(palette: np.ndarray, labels: np.ndarray) -> bytes | None:
    """A coding-1 file whose label stream is method 2 (spec §11.13), whatever method 1 would give; None when over the bound."""
    return method0_file(palette, labels, kmcodec.coding1.METHOD_PACKED)


def method1_file(palette: np.ndarray, labels: np.ndarray) -> bytes | None:
    """A coding-1 file whose label stream is method 1 (spec §11.11), whatever method 3 would give; None when over the bound."""
    header = container.Header(labels.shape[1], labels.shape[0], palette.shape[0], palette.shape[1], coding=layout.CODING_CODED)
    stream = kmcodec.zstd_labels.encode_labels(labels, palette.shape[0], beat=header.size.label_bytes)
    return None if stream is None else container.join(header, palette.tobytes(), stream)


def method3_file(palette: np.ndarray, labels: np.ndarray) -> bytes:
    """A coding-1 file whose label stream is method 3 (spec §11.15) in one stripe, R from kmcodec.raster_ref.

    Its length is not checked against rule 6: a tiny image's stream is under 26 bytes and a noisy one's
    may pass the bound. The JS tests call the label-stream decoder, which does not check rule 6;
    `rule6_holds` says whether the whole-file decoders accept the length.
    """
    header = container.Header(labels.shape[1], labels.shape[0], palette.shape[0], palette.shape[1], coding=layout.CODING_CODED)
    body = header.pack() + palette.tobytes() + bytes([3, 1]) + raster_ref.encode(labels, palette)  # method 3, one stripe
    return body + zlib.crc32(body).to_bytes(layout.CHECK_SIZE, "little")


def rule6_holds(data: bytes, extra: int = 0) -> bool:
    """Whether a coding-1 file `extra` bytes longer still has a length rule 6 allows (spec §6)."""
    header = container.Header(*(int.from_bytes(data[at : at + 4], "little") for at in (8, 12, 16)), data[5], coding=layout.CODING_CODED)
    shortest, longest = container.length_range(header)
    return shortest <= len(data) + extra <= longest


def photo_image(rng: np.random.Generator, k: int, channels: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A palette and labels like a photo's: shading over a colour ramp, plus noise, so many escapes of
    choosing pixels whose neighbours' mean colour (spec §11.13) lies between their colours."""
    ramp = np.linspace(0, 255, k)[:, None] * rng.uniform(0.5, 1.0, channels) + rng.normal(0, 12, (k, channels))
    palette = np.clip(ramp, 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    shade = (np.sin(x / 7.0) + np.cos(y / 5.0) + (x + y) / (width + height)) * k / 5 + k / 2
    labels = np.clip(shade + rng.normal(0, max(1.0, k / 30), (height, width)), 0, k - 1).astype(np.int64)
    return palette, labels


def tiled_labels(rng: np.random.Generator, k: int, tile: tuple[int, int], repeats: tuple[int, int]) -> np.ndarray:
    """A random tile repeated: what a glyph or icon repeated across a screenshot gives, and method 1 wins."""
    return np.tile(rng.integers(0, k, tile), repeats)


def stream_method(data: bytes) -> int:
    """The method byte of a coding-1 file (spec §11.1)."""
    return data[24 + data[5] * int.from_bytes(data[16:20], "little")]


# The one rejection of a damaged method-1 frame (spec §11.11 step 4) where the JS decoder
# may differ from kmcodec: libzstd's fast 4-stream Huffman decoder does not check that a
# stream's bits end with its literals, the RFC and fzstd do (kmcodec/web/vendor/README.md).
LIBZSTD_UNCHECKED = "a Huffman-coded stream does not end at its first bit"


def zstd_blocks_start(data: bytes) -> int:
    """The file offset of a method-1 frame's first block header (RFC 8878 §3.1.1.1: magic, descriptor, content size)."""
    stream = 24 + data[5] * int.from_bytes(data[16:20], "little")
    return stream + 6 + (1, 2, 4, 8)[data[stream + 5] >> 6]
