"""Numeric precision as a setting: the ``Precision`` enum, ``auto`` resolution per device, autocast."""

from __future__ import annotations

import contextlib
import enum
from functools import lru_cache
from pathlib import Path

import torch

from .errors import ConfigError

__all__ = [
    "CPU_BF16_FLAGS",
    "CPU_FP16_FLAGS",
    "Precision",
    "autocast",
    "cpu_bf16_supported",
    "cpu_fp16_supported",
    "parse_precision",
    "resolve_precision",
]

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic
CPU_FP16_FLAGS = ("amx_fp16", "avx512_fp16")  # ... and with float16 arithmetic (else it is emulated)


class Precision(str, enum.Enum):
    """Where low precision is allowed; fp32 is the exact reference, ``auto`` the fastest supported."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    AUTO = "auto"

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of a resolved precision (``auto`` must be resolved first)."""
        if self is Precision.AUTO:
            raise ConfigError("precision 'auto' has no dtype: resolve it for a device first")
        return {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[self]


def parse_precision(value: object, name: str = "precision") -> Precision:
    """A Precision from its name (fp32, bf16, fp16, auto; also float32/bfloat16/float16), else ConfigError."""
    if isinstance(value, Precision):
        return value
    aliases = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
    text = str(value).strip().lower()
    try:
        return Precision(aliases.get(text, text))
    except ValueError:
        raise ConfigError(f"{name} must be one of {', '.join(p.value for p in Precision)}; got {value!r}") from None


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_bf16_supported() -> bool:
    """True when the CPU has bfloat16 instructions (AMX or AVX-512 BF16) that oneDNN uses for matmuls."""
    return any(flag in _cpu_flags() for flag in CPU_BF16_FLAGS)


def cpu_fp16_supported() -> bool:
    """True when the CPU has float16 instructions (AMX-FP16 or AVX-512 FP16); otherwise fp16 is emulated."""
    return any(flag in _cpu_flags() for flag in CPU_FP16_FLAGS)


def resolve_precision(value: object, device: str | torch.device = "cpu") -> Precision:
    """``auto`` -> bf16 on a CPU with bf16 instructions or a CUDA device with bf16 support, else fp32.

    fp16 is not chosen by ``auto``: on CPUs without AVX-512 FP16 its matmuls are emulated (measured
    30x slower than fp32 here), and bf16 keeps float32's range.
    """
    p = parse_precision(value)
    if p is not Precision.AUTO:
        return p
    dev = torch.device(device)
    if dev.type == "cuda":
        return Precision.BF16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else Precision.FP32
    if dev.type == "cpu":
        return Precision.BF16 if cpu_bf16_supported() else Precision.FP32
    return Precision.FP32


def autocast(precision: Precision, device: str | torch.device) -> contextlib.AbstractContextManager:
    """torch autocast for a resolved low precision on ``device``; a no-op for fp32."""
    p = parse_precision(precision)
    if p is Precision.AUTO:
        p = resolve_precision(p, device)
    if p is Precision.FP32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=p.dtype)
