"""Progress bars: tqdm on stderr, drawn only when asked for (no -q) and stderr is a terminal.

Every bar of the package is made here, so a log file, a pipe or a CI job never fills up with bar redraws.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

__all__ = ["progress_bar", "shows_progress"]


def shows_progress(enabled: bool = True, stream: IO[str] | None = None) -> bool:
    """Whether a bar is drawn: ``enabled`` (the command has no -q) and ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if not enabled or stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr that is disabled (a no-op) unless :func:`shows_progress` says it is drawn."""
    stream = kwargs.pop("file", None) or sys.stderr
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream,
                disable=not shows_progress(enabled, stream), **kwargs)
