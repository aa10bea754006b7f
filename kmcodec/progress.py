"""Progress bars for long commands, with tqdm when it is installed (extra ``progress``).

A bar is shown only on a terminal and never with ``--quiet``, so pipes, logs and
tests see no control characters. Without tqdm every bar is a silent stand-in
with the same methods, and the commands behave the same otherwise.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def wanted(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """Whether to draw a bar: not quiet, and the bar's stream (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Silent:
    """A bar that draws nothing: what ``bar`` returns when no bar is wanted or tqdm is missing."""

    def __init__(self, total: int | None = None, **_: Any) -> None:
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(total: int | None, desc: str, *, enabled: bool, unit: str = "it") -> Any:
    """A tqdm bar on stderr when `enabled` and tqdm is installed, else a `Silent` one.

    Print lines while the bar is up with `say`, so they do not break it.
    """
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
    return Silent(total=total)


def say(progress: Any, text: str) -> None:
    """Print a line on stderr above `progress` (a bar from `bar`)."""
    if isinstance(progress, Silent):
        print(text, file=sys.stderr)
    else:
        progress.write(text, file=sys.stderr)
