"""Running the pipeline once before the first camera frame, so that first-call costs do not make it late.

The first describe, FAISS search, re-rank and OpenCV fit of a process pay for kernel selection,
allocator growth and lazy imports (seconds on a small CPU): at 1 Hz that first frame alone pushed the
next ones out of the latest-frame slot. A textured synthetic image goes through every stage; nothing
is counted, added to the map or published.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..pipeline.describe import Describer
from ..pipeline.localizer import Localizer
from .verify_step import VerifyStep

__all__ = ["WarmUp", "warm_up"]

_SEED = 0  # the warm-up image is the same every time


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up cost: seconds in all, and its query's stage times (for the latency budget)."""

    seconds: float
    reranked: int  # candidates re-ranked (0: empty map)
    fixed_ms: float  # describe + search + verify
    rerank_ms: float


def warm_up(describer: Describer, localizer: Localizer, verify_step: VerifyStep, map_lock: threading.RLock,
            rerank_k: int) -> WarmUp:
    """Describe, query (when the map has keyframes) and verify one synthetic image."""
    t0 = time.perf_counter()
    h, w = verify_step.input_size
    image = np.random.default_rng(_SEED).integers(0, 256, (h, w, 3), dtype=np.uint8)
    desc = describer.describe_arrays([image], names=["warm-up"])[0]
    describe_ms = (time.perf_counter() - t0) * 1e3
    timing: dict[str, float] = {}
    reranked = 0
    with map_lock:
        if len(localizer.map):
            result = verify_step.apply(desc, None, localizer.query(desc, rerank_k=rerank_k))
            timing = result.timing_ms
            reranked = sum(1 for c in result.candidates if c.rerank_score >= 0)
    if "verify" not in timing:
        t1 = time.perf_counter()
        verify_step.warm_up(desc)
        timing["verify"] = (time.perf_counter() - t1) * 1e3
    fixed = describe_ms + timing.get("search", 0.0) + timing["verify"]
    return WarmUp(time.perf_counter() - t0, reranked, fixed, timing.get("rerank", 0.0))
