"""Verifying re-ranked candidates of a query: mutual patch matches -> pixel positions -> two-view fit.

With both cameras known, patch centres are placed in each source image's pixels (the camera's size;
a CameraInfo of another resolution is scaled to the image) and the essential matrix (or PnP with
query depth) is fitted. Without them the centres stay in model-input pixels, the same frame for both
images, and only the fundamental matrix is fitted (inliers, no transform).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..sources.camera import CameraIntrinsics, patch_centres, patch_size_px
from .describe import Description
from .localizer import Candidate
from .matches import mutual_matches
from .verify import GeometricVerifier, Verification, VerifyConfig

__all__ = ["CandidateVerifier", "MapView"]


@dataclass(frozen=True)
class MapView:
    """One map keyframe as verification needs it: its local rows, their grid cells, its camera."""

    local: np.ndarray  # [n, D]
    rc: np.ndarray  # [n, 2] (row, col) on the local grid
    camera: CameraIntrinsics | None


def _camera_for(camera: CameraIntrinsics | None, size_hw: tuple[int, int]) -> CameraIntrinsics | None:
    """``camera`` at the image's size (scaled when the CameraInfo has another resolution)."""
    if camera is None or size_hw[0] <= 0 or size_hw[1] <= 0:
        return camera
    if (camera.height, camera.width) == tuple(size_hw):
        return camera
    return camera.scaled(int(size_hw[1]), int(size_hw[0]))


class CandidateVerifier:
    """Verifies the first ``cfg.candidates`` candidates of a query against their map keyframes."""

    def __init__(self, cfg: VerifyConfig, rerank_threshold: float, input_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.threshold = float(rerank_threshold)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.verifier = GeometricVerifier(cfg)

    def verify_one(self, desc: Description, query_camera: CameraIntrinsics | None, view: MapView,
                   query_depth: np.ndarray | None = None) -> Verification:
        """Verify the query against one map keyframe (``query_depth``: metres per query local row, NaN unknown)."""
        qi, ci = mutual_matches(desc.local, desc.local_count, view.local, len(view.local), self.threshold)
        q_cam = _camera_for(query_camera, desc.image_size)
        m_cam = view.camera
        grid = desc.local_grid
        if q_cam is not None and m_cam is not None:
            q_size = (q_cam.height, q_cam.width)
            q_pts = patch_centres(desc.local_rc[qi], grid, q_size, self.input_size)
            m_pts = patch_centres(view.rc[ci], grid, (m_cam.height, m_cam.width), self.input_size)
        else:  # one frame for both images: model-input pixels
            q_cam = m_cam = None
            q_size = self.input_size
            q_pts = patch_centres(desc.local_rc[qi], grid, q_size, self.input_size)
            m_pts = patch_centres(view.rc[ci], grid, q_size, self.input_size)
        depth = query_depth[qi] if query_depth is not None and q_cam is not None else None
        patch = patch_size_px(grid, q_size, self.input_size)
        return self.verifier.verify(q_pts, m_pts, q_cam, m_cam, depth, patch_px=patch)

    def verify(self, desc: Description, query_camera: CameraIntrinsics | None, candidates: Sequence[Candidate],
               views: Sequence[MapView], query_depth: np.ndarray | None = None) -> list[Candidate]:
        """``candidates`` with ``verification`` set on the first ``len(views)`` (``views`` in candidate order)."""
        out = list(candidates)
        for j, view in enumerate(views[: len(out)]):
            out[j] = replace(out[j], verification=self.verify_one(desc, query_camera, view, query_depth))
        return out
