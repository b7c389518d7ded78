"""`fol-vpr build-map`: describe an image folder into a map directory."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ImageError
from ..export.runners import DEFAULT_BACKEND
from ..mapping import IndexConfig, Keyframe
from ..mapping.store import check_map_target
from ..pipeline.describe import Describer, DescriberConfig, map_for_describer
from ..precision import Precision
from ..progress import progress_bar
from ..signals import deferred_signals
from ..sources import frames_from_folder
from .describe import default_input_size

__all__ = ["BuildMapResult", "build_map"]

log = logging.getLogger(__name__)


@dataclass
class BuildMapResult:
    """What was written and what was skipped (with why)."""

    out: Path
    keyframes: int
    local_rows: int
    seconds: float
    synthetic: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)


def build_map(
    images: str | os.PathLike,
    out: str | os.PathLike,
    weights: str,
    poses: str | os.PathLike | None = None,
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    index: IndexConfig | None = None,
    local_dtype: str = "float16",
    frame_id: str = "camera",
    session_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    backend: str = DEFAULT_BACKEND,
    precision: Precision | str = Precision.FP32,
    describer: Describer | None = None,
    robot_id: str | None = None,
) -> BuildMapResult:
    """Describe every image of a folder (optionally with a poses CSV) and save a map to ``out``.

    Unreadable images are skipped and listed in the result; the map is written atomically at the end, so an
    interrupted build leaves any previous map at ``out`` untouched. ``describer`` reuses a loaded model
    (the model arguments are then not used). ``session_id`` / ``robot_id`` ('' or None: none) go on every keyframe.
    """
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise ConfigError(f"{out}: a map already exists; pass --overwrite or choose another --out")
    check_map_target(out)
    frames = frames_from_folder(images, poses)
    if describer is None:
        describer = Describer.from_config(DescriberConfig(weights, arch, resize or default_input_size(weights, backend),
                                                          device, batch_size, backend=backend, precision=precision))
    vpr_map = map_for_describer(describer, out, index, local_dtype, overwrite=True)
    skipped: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    bar = progress_bar(total=len(frames), desc="build-map", unit="img", enabled=progress)
    for start in range(0, len(frames), batch_size):
        chunk, arrays = [], []
        for fr in frames[start : start + batch_size]:
            try:
                arrays.append(describer.read_image(fr.path))
                chunk.append(fr)
            except ImageError as exc:
                skipped.append((str(fr.path), str(exc)))
                log.debug("skipping %s", exc)  # listed in the result (the CLI prints each once)
        if chunk:
            descs = describer.describe_arrays(arrays, names=[str(f.path) for f in chunk])
            kfs = [Keyframe(stamp_ns=f.stamp_ns, frame_id=frame_id, source=str(f.path), pose=f.pose, geo=f.geo,
                            session_id=session_id or None, robot_id=robot_id or None) for f in chunk]
            vpr_map.add(kfs, [d.global_desc for d in descs], [d.local for d in descs], [d.local_rc for d in descs])
        bar.update(len(frames[start : start + batch_size]))
    bar.close()
    if len(vpr_map) == 0:
        raise ImageError(f"{images}: no readable images; nothing to save ({len(skipped)} skipped)")
    with deferred_signals("saving the map"):  # Ctrl-C waits until the atomic save is complete
        vpr_map.save(out)
    return BuildMapResult(out, len(vpr_map), vpr_map.num_local_rows, time.perf_counter() - t0,
                          describer.synthetic, skipped)
