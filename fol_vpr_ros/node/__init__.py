"""The ROS-free core of the fol_vpr node: parameters, keyframe gating, loop closure, outcomes, NodeCore.

The rclpy node (fol_vpr_ros.ros) only converts messages to and from these plain types. The names below
are imported on first use (PEP 562), so ``fol_vpr_ros.node.params`` loads without torch or faiss.
"""

from __future__ import annotations

import importlib
from typing import Any

# submodule -> the names this package re-exports from it
_EXPORTS: dict[str, tuple[str, ...]] = {
    "..sources.image_decode": ("ERROR_KINDS", "SUPPORTED_ENCODINGS", "CompressedPayload", "ImageDecodeError",
                               "ImagePayload", "decode", "decode_compressed", "decode_image", "error_kind"),
    ".budget": ("BudgetConfig", "BudgetState", "RerankBudget"),
    ".core": ("NodeCore",),
    ".diagnostics": ("DiagnosticsSnapshot", "LatencyStats"),
    ".frames": ("STAGES", "CandidateInfo", "FrameObserver", "FrameOutput", "MarkerData", "StageLatency"),
    ".gating": ("KeyframeGate", "OdomBuffer", "OdomPose"),
    ".loop_closure": ("KeyframeRef", "LocalizeDecision", "LoopClosurePolicy", "LoopDecision", "SearchRestriction",
                      "decide_localize", "judge_candidate"),
    ".online_map": ("SaveStatus", "ShutdownReport"),
    ".outcomes": ("DropReason", "FrameStatus", "MatchOutcome", "NodeWarning", "SkipReason"),
    ".params": ("NodeParams", "ParamSpec", "load_params", "param_specs"),
    ".pose": ("PoseEstimate", "pose_sigmas"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
