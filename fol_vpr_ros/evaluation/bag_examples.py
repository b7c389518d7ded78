"""Example matches of a bag replay: which queries and candidates to show, and where their images are."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mapping import VprMap
from ..node.runners import RunnerFrame
from ..stamps import ns_to_sec
from .bag_config import ScoreKind
from .frame_rows import FrameEval
from .metrics import pick_examples

__all__ = ["MAX_EXAMPLE_CANDIDATES", "ExampleSpec", "ImageRef", "bag_examples", "image_ref"]

MAX_EXAMPLE_CANDIDATES = 3


@dataclass(frozen=True)
class ImageRef:
    """Where an image can be read back: a bag topic at a stamp, or a file."""

    bag: Path | None = None
    topic: str | None = None
    stamp_ns: int | None = None
    file: Path | None = None


@dataclass(frozen=True)
class ExampleSpec:
    """A query and its top candidates for the example montage (``correct``: the best candidate)."""

    query: ImageRef
    candidates: tuple[ImageRef | None, ...]
    scores: tuple[float, ...]
    candidate_correct: tuple[bool, ...]
    correct: bool
    title: str
    distances_m: tuple[float | None, ...] = ()  # each candidate's ground-truth distance to the query
    keyframe_ids: tuple[int, ...] = ()  # each candidate's keyframe id


def image_ref(source: str) -> ImageRef | None:
    """A map keyframe's image: '<bag>#<topic>@<stamp_ns>' (maps built from bags) or an image file."""
    if "#" in source:
        path, rest = source.rsplit("#", 1)
        topic, _, stamp = rest.rpartition("@")
        if topic and stamp.isdigit():
            return ImageRef(bag=Path(path), topic=topic, stamp_ns=int(stamp))
    p = Path(source)
    return ImageRef(file=p) if source and p.is_file() else None


@dataclass(frozen=True)
class _Context:
    """What every example needs: the query bag, the map (localize), keyframe positions, threshold, score."""

    bag: Path
    topic: str
    vmap: VprMap | None
    positions: Mapping[int, np.ndarray]
    threshold: float
    score_kind: ScoreKind


def _spec(r: RunnerFrame, row: FrameEval, correct: bool, ctx: _Context, max_candidates: int) -> ExampleSpec:
    cands = r.output.candidates[:max_candidates]
    refs: list[ImageRef | None] = []
    ok: list[bool] = []
    dist: list[float | None] = []
    for c in cands:
        if ctx.vmap is not None:
            refs.append(image_ref(ctx.vmap.keyframe(c.keyframe_id).source))
        else:
            refs.append(ImageRef(bag=ctx.bag, topic=ctx.topic, stamp_ns=c.stamp_ns))
        p = ctx.positions.get(int(c.keyframe_id))
        d = math.dist(row.position, tuple(p)) if p is not None and np.all(np.isfinite(p)) else None
        dist.append(d)
        ok.append(d is not None and d <= ctx.threshold)
    title = f"frame {row.index}, stamp {ns_to_sec(row.stamp_ns):.3f} s"
    return ExampleSpec(ImageRef(bag=ctx.bag, topic=ctx.topic, stamp_ns=row.stamp_ns), tuple(refs),
                       tuple(ctx.score_kind.of(c) for c in cands), tuple(ok), correct, title, tuple(dist),
                       tuple(int(c.keyframe_id) for c in cands))


def bag_examples(runs: Sequence[RunnerFrame], rows: Sequence[FrameEval], positions: Mapping[int, np.ndarray],
                 threshold: float, n: int, bag: Path, topic: str, vmap: VprMap | None, score_kind: ScoreKind,
                 max_candidates: int = MAX_EXAMPLE_CANDIDATES) -> tuple[ExampleSpec, ...]:
    """Up to ``n`` queries whose best candidate is within ``threshold`` and ``n`` whose is not, spread over the
    run; ``positions``: keyframe id -> position in the ground-truth frame."""
    usable = [(r, row) for r, row in zip(runs, rows) if row.best_id is not None and row.position is not None]
    if n <= 0 or not usable:
        return ()
    flags = [row.best_distance_m is not None and row.best_distance_m <= threshold for _, row in usable]
    ctx = _Context(Path(bag), topic, vmap, positions, threshold, score_kind)
    return tuple(_spec(*usable[k], flags[k], ctx, max_candidates) for k in pick_examples(flags, n, n))
