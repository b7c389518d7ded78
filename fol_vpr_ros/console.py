"""What the command line prints around its results: the banner framing loud warnings, and the one number
format of its tables (recall in percent with one decimal, ``62.5 %``; AUC / AP as a fraction with three
decimals, ``0.021``; ``-`` where a value is unknown)."""

from __future__ import annotations

import math

__all__ = ["BANNER", "UNKNOWN", "banner", "fraction", "percent"]

BANNER = "!" * 100
UNKNOWN = "-"  # a value that does not exist (no positives, nothing re-ranked), never 'nan'


def banner(text: str) -> str:
    """``text`` framed by banner lines above and below (for warnings nobody may miss)."""
    return f"{BANNER}\n{text}\n{BANNER}"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def percent(value: float | None) -> str:
    """A value already in percent (a recall, 0..100) as ``62.5 %``; ``-`` when unknown (None, NaN)."""
    return f"{value:.1f} %" if _known(value) else UNKNOWN


def fraction(value: float | None) -> str:
    """A fraction (an AUC or average precision, 0..1) as ``0.021``; ``-`` when unknown (None, NaN)."""
    return f"{value:.3f}" if _known(value) else UNKNOWN
