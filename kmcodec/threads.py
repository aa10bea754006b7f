"""Work over a list of items on threads: the C loops and numpy's large operations release the GIL."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Threads for a large decode step: one a core, at most 4 (the work comes in a few large pieces).
WORKERS = min(4, os.cpu_count() or 1)


def each(work: Callable[[Item], Result], items: list[Item] | range, threads: int) -> list[Result]:
    """[work(item) for item in items], on up to `threads` threads when there are several items."""
    if len(items) <= 1 or threads <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(work, items))
