"""Running the pipeline once before the first camera frame, so that first-call costs do not make it late.

The first describe, FAISS search, re-rank and OpenCV fit of a process pay for kernel selection,
allocator growth and lazy imports (seconds on a small CPU): at 1 Hz that first frame alone pushed the
next ones out of the latest-frame slot. A textured synthetic image goes through every stage; nothing
is counted, added to the map or published.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..pipeline.describe import Describer
from ..pipeline.localizer import Localizer
from .verify_step import VerifyStep

__all__ = ["warm_up"]

_SEED = 0  # the warm-up image is the same every time


def warm_up(describer: Describer, localizer: Localizer, verify_step: VerifyStep, map_lock: threading.RLock,
            rerank_k: int) -> float:
    """Describe, query (when the map has keyframes) and verify one synthetic image; returns the seconds it took."""
    t0 = time.perf_counter()
    h, w = verify_step.input_size
    image = np.random.default_rng(_SEED).integers(0, 256, (h, w, 3), dtype=np.uint8)
    desc = describer.describe_arrays([image], names=["warm-up"])[0]
    with map_lock:
        if len(localizer.map):
            verify_step.apply(desc, None, localizer.query(desc, rerank_k=rerank_k))
    verify_step.warm_up(desc)
    return time.perf_counter() - t0
