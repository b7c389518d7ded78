"""`fol-vpr map merge`: several maps of one model (robots, sessions) -> one map, ids kept, duplicates refused.

Every input must pass the first input's ``MapCompat`` (model hash, architecture, input size, dims;
a different precision is only warned about). Keyframes keep their records (robot, session, camera,
pose, ...) and get new ids, numbered 0.. in output order (input after input, row order inside one);
``MergeResult.id_maps`` holds old -> new per input. Refused with one line naming both files: the
same (robot_id, session_id) session in two inputs, or the same keyframe (robot, session, camera
frame, stamp) in two inputs. The output is saved atomically like every map and never over an input.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError, MapError
from ..mapping import IndexConfig, MapCompat, MapManifest, VprMap
from ..mapping.layout import MANIFEST_NAME
from ..mapping.store import check_map_target
from ..mapping.verify import VerifyMode
from ..progress import progress_bar
from ..signals import deferred_signals

__all__ = ["MergeResult", "MergedInput", "compat_of", "merge_maps", "write_id_map"]

CHUNK_KEYFRAMES = 256  # keyframes copied per add() (bounds the arrays gathered at once)
_WIDER_LOCAL = ("float16", "float32")  # storage types, narrow to wide: the output takes the widest of its inputs
_WIDER_RC = ("int16", "int32")

SessionKey = tuple[str | None, str | None]  # (robot_id, session_id)
KeyframeKey = tuple[str | None, str | None, str, int]  # (robot_id, session_id, frame_id, stamp_ns)


@dataclass(frozen=True)
class MergedInput:
    """One input map: where it is, its keyframes' old ids and the new ids they got, its sessions and robots."""

    path: Path
    old_ids: np.ndarray  # [n] int64, row order of the input
    new_ids: np.ndarray  # [n] int64
    sessions: tuple[str, ...]
    robots: tuple[str, ...]

    @property
    def keyframes(self) -> int:
        return len(self.old_ids)


@dataclass(frozen=True)
class MergeResult:
    """The merged map and what each input contributed."""

    out: Path
    inputs: tuple[MergedInput, ...]
    keyframes: int
    local_rows: int
    index: str
    seconds: float
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """Lines: one per input (keyframes, old -> new id ranges, sessions, robots), then the output."""
        lines = []
        for part in self.inputs:
            ids = (f"ids {_span(part.old_ids)} -> {_span(part.new_ids)}" if part.keyframes else "no keyframes")
            lines.append(f"{part.path}: {part.keyframes} keyframes, {ids}; sessions {_names(part.sessions)}; "
                         f"robots {_names(part.robots)}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"merged map {self.out}: {self.keyframes} keyframes, {self.local_rows} local rows, "
                     f"index {self.index}, {self.seconds:.1f} s")
        return "\n".join(lines)


def _span(ids: np.ndarray) -> str:
    lo, hi = int(ids.min()), int(ids.max())
    contiguous = hi - lo + 1 == len(ids) and bool(np.all(np.diff(ids) == 1))
    return f"{lo}..{hi}" if contiguous else f"{lo}..{hi} (not contiguous)"


def _names(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "-"


def compat_of(manifest: MapManifest) -> MapCompat:
    """What a map must share with ``manifest`` to be merged with it (its model identity and shapes)."""
    return MapCompat(manifest.model_hash, manifest.arch, manifest.input_size, manifest.descriptor_dim,
                     manifest.local_dim, manifest.precision)


def _wider(values: Sequence[str], order: Sequence[str]) -> str:
    return max(values, key=order.index)


def _check_paths(inputs: Sequence[Path], out: Path, overwrite: bool) -> None:
    """Two inputs or more, none twice, the output none of them and not an existing map without ``overwrite``."""
    if len(inputs) < 2:
        raise ConfigError(f"map merge needs at least two input maps, got {len(inputs)}")
    real = [os.path.realpath(p) for p in inputs]
    for j, r in enumerate(real):
        if r in real[:j]:
            raise ConfigError(f"{inputs[j]}: given twice as an input map (also as {inputs[real.index(r)]})")
    out_real = os.path.realpath(out)
    if out_real in real:
        raise ConfigError(f"--out {out}: is the input map {inputs[real.index(out_real)]}; refusing to overwrite an "
                          "input (write the merged map elsewhere)")
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise ConfigError(f"{out}: a map already exists; pass --overwrite or choose another --out")
    check_map_target(out)


def _check_duplicates(maps: Sequence[VprMap], paths: Sequence[Path]) -> None:
    """MapError naming both files when a session or a keyframe is in two inputs."""
    sessions: dict[SessionKey, int] = {}
    frames: dict[KeyframeKey, int] = {}
    for j, m in enumerate(maps):
        own_sessions: set[SessionKey] = set()
        own_frames: set[KeyframeKey] = set()
        for kf in m.keyframes():
            if kf.session_id is not None:
                own_sessions.add((kf.robot_id, kf.session_id))
            own_frames.add((kf.robot_id, kf.session_id, kf.frame_id, kf.stamp_ns))
        for key in sorted(own_sessions, key=str):
            if key in sessions:
                robot = f" of robot {key[0]!r}" if key[0] is not None else ""
                raise MapError(f"session {key[1]!r}{robot} is in both {paths[sessions[key]]} and {paths[j]}; "
                               "a session is merged once (merge the maps that add other sessions)")
            sessions[key] = j
        for key in sorted(own_frames, key=str):
            if key in frames:
                raise MapError(f"keyframe of camera frame {key[2]!r} at stamp {key[3]} ns (session {key[1]!r}, "
                               f"robot {key[0]!r}) is in both {paths[frames[key]]} and {paths[j]}; is one map a "
                               "copy of the other? (give each build its own --session-id)")
            frames[key] = j


def _copy(src: VprMap, dst: VprMap, first_id: int, bar: object) -> np.ndarray:
    """Append every keyframe of ``src`` to ``dst`` with ids ``first_id``.., in chunks; returns the new ids."""
    old = np.array(src.ids, dtype=np.int64)
    records = src.keyframes()
    for start in range(0, len(old), CHUNK_KEYFRAMES):
        chunk = records[start : start + CHUNK_KEYFRAMES]
        kfs = [dataclasses.replace(kf, id=first_id + start + j) for j, kf in enumerate(chunk)]
        globals_ = np.stack([src.global_descriptor(kf.id) for kf in chunk])
        pairs = [src.local_rows(kf.id) for kf in chunk]
        dst.add(kfs, globals_, [p[0] for p in pairs], [p[1] for p in pairs])
        bar.update(len(chunk))  # type: ignore[attr-defined]
    return np.arange(first_id, first_id + len(old), dtype=np.int64)


def _unique(values: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v is not None}))


def merge_maps(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, index: IndexConfig | None = None,
               verify: VerifyMode | str = VerifyMode.FULL, overwrite: bool = False,
               progress: bool = True) -> MergeResult:
    """Merge the maps ``inputs`` into a new map saved atomically at ``out`` (see the module doc).

    ``index``: the output's retrieval index (default: the first input's); ``verify``: how each input
    is checked when it opens (``VprMap.open``).
    """
    t0 = time.perf_counter()
    paths = [Path(p) for p in inputs]
    out = Path(out)
    _check_paths(paths, out, overwrite)
    first = VprMap.read_manifest(paths[0])
    expect = compat_of(first)
    warnings: list[str] = []
    maps: list[VprMap] = []
    try:
        for p in paths:
            maps.append(VprMap.open(p, expect, verify=verify))  # the one compatibility check (MapCompat)
            warnings += [f"{p}: {w}" for w in expect.warnings(maps[-1].manifest)]
        _check_duplicates(maps, paths)
        manifests = [m.manifest for m in maps]
        merged = VprMap.create(out, arch=first.arch, input_size=first.input_size, model_hash=first.model_hash,
                               descriptor_dim=first.descriptor_dim, local_dim=first.local_dim,
                               local_dtype=_wider([m.local_dtype for m in manifests], _WIDER_LOCAL),
                               rc_dtype=_wider([m.rc_dtype for m in manifests], _WIDER_RC),
                               index=index or first.index, overwrite=True, precision=first.precision)
        bar = progress_bar(total=sum(len(m) for m in maps), desc="map merge", unit="kf", enabled=progress)
        parts = []
        for p, m in zip(paths, maps):
            new_ids = _copy(m, merged, len(merged), bar)
            kfs = m.keyframes()
            parts.append(MergedInput(p, np.array(m.ids, dtype=np.int64), new_ids,
                                     _unique([k.session_id for k in kfs]), _unique([k.robot_id for k in kfs])))
        bar.close()
        with deferred_signals("saving the merged map"):  # Ctrl-C waits until the atomic save is complete
            merged.save(out)
    finally:
        for m in maps:
            m.close()
    return MergeResult(out, tuple(parts), len(merged), merged.num_local_rows, merged.index_config.kind,
                       time.perf_counter() - t0, tuple(warnings))


def write_id_map(result: MergeResult, path: str | os.PathLike) -> Path:
    """Write ``input,old_id,new_id`` (CSV, one row per keyframe) atomically; returns the path."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["input", "old_id", "new_id"])
    for part in result.inputs:
        for old, new in zip(part.old_ids.tolist(), part.new_ids.tolist()):
            w.writerow([str(part.path), old, new])
    return atomic_write_text(path, buf.getvalue())
