"""Memory-mapped arrays: release the pages of a band once it has been read.

Reading a `numpy.memmap` (for example from ``numpy.load(..., mmap_mode="r")``)
maps each page it touches into this process, and those pages count in its
resident size until they are unmapped. A pass over an image larger than memory
would so grow to the image's size. After each band, `release` tells the kernel
(``madvise(MADV_DONTNEED)``) that this process no longer needs the band's pages:
they stay in the page cache, shared and reclaimable, but leave our resident set.
For arrays not backed by a mapping every function here is a no-op.
"""

from __future__ import annotations

import mmap

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy < 2
    byte_bounds = np.byte_bounds

PAGE = mmap.PAGESIZE


def mapping_of(array: np.ndarray) -> "mmap.mmap | None":
    """The mmap behind an array or any of its views, or None."""
    while array is not None:
        if isinstance(array, mmap.mmap):
            return array
        found = getattr(array, "_mmap", None)
        if isinstance(found, mmap.mmap):
            return found
        array = array.obj if isinstance(array, memoryview) else getattr(array, "base", None)
    return None


def release(band: np.ndarray, mapping: "mmap.mmap | None") -> None:
    """Drop the pages spanned by `band` (a view into `mapping`) from this process."""
    if mapping is None or not hasattr(mapping, "madvise") or mapping.closed:
        return
    start_address = np.frombuffer(mapping, np.uint8).__array_interface__["data"][0]
    low, high = byte_bounds(band)
    release_range(mapping, low - start_address, high - start_address)


def release_range(mapping: "mmap.mmap | None", first: int, end: int) -> None:
    """Drop the pages holding bytes first..end-1 of `mapping` from this process (no-op without one)."""
    if not isinstance(mapping, mmap.mmap) or not hasattr(mapping, "madvise") or mapping.closed:
        return
    first = max(0, first // PAGE * PAGE)
    end = min(len(mapping), -(-end // PAGE) * PAGE)
    if end > first:
        mapping.madvise(mmap.MADV_DONTNEED, first, end - first)


def iter_row_bands(array: np.ndarray, rows: int):
    """Yield (first row, band of `rows` rows) over an array, releasing each mapped band after use."""
    mapping = mapping_of(array)
    previous = None
    for y in range(0, array.shape[0], rows):
        band = array[y : y + rows]
        yield y, band
        release(band, mapping)
        if previous is not None:
            # The kernel's fault-around maps up to 64 kB of cached pages around
            # each fault, so reading this band re-mapped the last one's tail.
            release(previous, mapping)
        previous = band
