"""Labels of one byte each to pixels, through a 256-row table: decode's last step.

The C module `kmcodec._lookup` does it at about a nanosecond a pixel, split over
threads for large images; numpy's take, the fallback where the module was not
built, is several times slower on rows of 3 bytes.
"""

from __future__ import annotations

import numpy as np

from . import threads

try:
    from . import _lookup
except ImportError:  # built without a compiler: codec uses numpy's take
    _lookup = None

# Labels per piece of work: large enough that the per-call cost vanishes.
CHUNK = 1 << 20
THREADS = threads.WORKERS


def available() -> bool:
    """Whether the C module was built."""
    return _lookup is not None


def lookup(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row labels[i] of `table` (256 x item uint8) for each of the uint8 `labels`, flat."""
    item = table.shape[1]
    rows = np.ascontiguousarray(table, np.uint8).tobytes()
    out = np.empty(labels.size * item, np.uint8)

    def part(start: int) -> None:
        stop = min(start + CHUNK, labels.size)
        _lookup.lookup(rows, item, labels[start:stop], out[start * item : stop * item])

    threads.each(part, range(0, labels.size, CHUNK), THREADS)
    return out
