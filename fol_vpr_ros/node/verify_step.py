"""The node's geometric-verification stage: candidates' map views, query depth, the verifier.

Runs after re-ranking on the first ``verification.candidates`` candidates (parameters
``verification.*``); with a registered depth image (``depth.topic``) near the query's stamp and the
query camera's CameraInfo, the fit is PnP and the relative pose metric.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ..mapping import VprMap
from ..pipeline.candidate_check import CandidateVerifier, MapView
from ..pipeline.describe import Description
from ..pipeline.localizer import QueryResult
from ..sources.camera import CameraIntrinsics, patch_centres
from ..sources.depth import DepthBuffer, DepthFrame, decode_depth, sample_depth
from ..sources.image_decode import ImagePayload, error_kind
from ..stamps import NS_PER_SEC
from .params import NodeParams

__all__ = ["CameraTable", "VerifyStep"]


class CameraTable:
    """The latest CameraInfo intrinsics per camera frame_id (thread-safe; None = uncalibrated, forgotten)."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraIntrinsics] = {}
        self._lock = threading.Lock()

    def submit(self, frame_id: str, camera: CameraIntrinsics | None) -> None:
        with self._lock:
            if camera is None:
                self._cameras.pop(frame_id, None)
            else:
                self._cameras[frame_id] = camera

    def get(self, frame_id: str) -> CameraIntrinsics | None:
        with self._lock:
            return self._cameras.get(frame_id)


class VerifyStep:
    """Verification of re-ranked candidates against the map, with the depth images of the query camera."""

    def __init__(self, params: NodeParams, vpr_map: VprMap, count_error: Callable[[str, str], None]) -> None:
        v = params.verification
        self.map = vpr_map
        self.input_size = tuple(vpr_map.manifest.input_size)
        self.verifier = (CandidateVerifier(v.to_config(), params.rerank_threshold, self.input_size)
                         if v.enabled else None)
        self.depth = DepthBuffer(round(params.depth.tolerance_sec * NS_PER_SEC))
        self.default_frame = params.frames.camera
        self.cameras = CameraTable()
        self._count_error = count_error

    def submit_depth(self, payload: ImagePayload) -> None:
        """Decode and keep a depth image; a bad one is counted and logged (one line), never raised."""
        try:
            metres = decode_depth(payload)
        except Exception as exc:
            self._count_error(f"depth_{error_kind(exc)}", f"depth image (parameter depth.topic): {exc}")
            return
        self.depth.add(DepthFrame(int(payload.stamp_ns), payload.frame_id or self.default_frame, metres))

    def query_depth(self, desc: Description, camera: CameraIntrinsics | None, frame_id: str,
                    stamp_ns: int) -> np.ndarray | None:
        """Depth (m) at each query local row's patch centre, from the depth image nearest the stamp."""
        frame = self.depth.at(frame_id, stamp_ns) if camera is not None else None
        if frame is None:
            return None
        size = desc.image_size if desc.image_size[0] > 0 else (camera.height, camera.width)
        pts = patch_centres(desc.local_rc, desc.local_grid, size, self.input_size)
        return sample_depth(frame.metres, pts, size)

    def warm_up(self, desc: Description) -> None:
        """One fit of ``desc`` against itself (OpenCV's first call), when verification is on."""
        if self.verifier is not None:
            self.verifier.verify_one(desc, None, MapView(desc.local, desc.local_rc, None))

    def _view(self, keyframe_id: int) -> MapView:
        local, rc = self.map.local_rows(keyframe_id)
        return MapView(np.asarray(local, np.float32), np.asarray(rc), self.map.keyframe(keyframe_id).camera)

    def apply(self, desc: Description, camera: CameraIntrinsics | None, result: QueryResult | None,
              frame_id: str = "", stamp_ns: int = 0) -> QueryResult | None:
        """``result`` with its first ``verification.candidates`` candidates verified (timing 'verify')."""
        if result is None or self.verifier is None or not result.candidates:
            return result
        t0 = time.perf_counter()
        head = result.candidates[: self.verifier.cfg.candidates]
        views = [self._view(c.keyframe_id) for c in head]
        depth = self.query_depth(desc, camera, frame_id, stamp_ns)
        result.candidates[: len(head)] = self.verifier.verify(desc, camera, head, views, depth)
        result.timing_ms["verify"] = (time.perf_counter() - t0) * 1e3
        return result
