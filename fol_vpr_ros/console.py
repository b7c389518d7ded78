"""What the command line prints around its results: the banner line framing loud warnings."""

from __future__ import annotations

__all__ = ["BANNER", "banner"]

BANNER = "!" * 100


def banner(text: str) -> str:
    """``text`` framed by banner lines above and below (for warnings nobody may miss)."""
    return f"{BANNER}\n{text}\n{BANNER}"
