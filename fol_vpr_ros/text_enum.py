"""Str-valued enums that print, format and serialise as their value (Python 3.10 has no enum.StrEnum)."""

from __future__ import annotations

import enum

__all__ = ["TextEnum"]


class TextEnum(str, enum.Enum):
    """An enum whose members are their text: ``str(m)``, ``f"{m}"`` and JSON give ``m.value``."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
