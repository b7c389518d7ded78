"""The ROS-free core of the fol_vpr node: parameters, image decoding, keyframe gating, loop closure, NodeCore.

The rclpy node (fol_vpr_ros.ros) only converts messages to and from these plain types.
"""

from ..sources.image_decode import (
    ERROR_KINDS,
    SUPPORTED_ENCODINGS,
    CompressedPayload,
    ImageDecodeError,
    ImagePayload,
    decode,
    decode_compressed,
    decode_image,
    error_kind,
)
from .budget import BudgetConfig, BudgetState, RerankBudget
from .core import (
    STAGES,
    CandidateInfo,
    DiagnosticsSnapshot,
    FrameObserver,
    FrameOutput,
    LatencyStats,
    MarkerData,
    NodeCore,
    PoseEstimate,
    SaveStatus,
    ShutdownReport,
    StageLatency,
    pose_sigmas,
)
from .gating import KeyframeGate, OdomBuffer, OdomPose
from .loop_closure import (
    KeyframeRef,
    LocalizeDecision,
    LoopClosurePolicy,
    LoopDecision,
    SearchRestriction,
    candidate_passes,
    decide_localize,
)
from .params import NodeParams, ParamSpec, load_params, param_specs

__all__ = [
    "ERROR_KINDS",
    "STAGES",
    "SUPPORTED_ENCODINGS",
    "BudgetConfig",
    "BudgetState",
    "CandidateInfo",
    "CompressedPayload",
    "DiagnosticsSnapshot",
    "FrameObserver",
    "FrameOutput",
    "ImageDecodeError",
    "ImagePayload",
    "KeyframeGate",
    "KeyframeRef",
    "LatencyStats",
    "LocalizeDecision",
    "LoopClosurePolicy",
    "LoopDecision",
    "MarkerData",
    "NodeCore",
    "NodeParams",
    "OdomBuffer",
    "OdomPose",
    "ParamSpec",
    "PoseEstimate",
    "RerankBudget",
    "SaveStatus",
    "SearchRestriction",
    "ShutdownReport",
    "StageLatency",
    "candidate_passes",
    "decide_localize",
    "decode",
    "decode_compressed",
    "decode_image",
    "error_kind",
    "load_params",
    "param_specs",
    "pose_sigmas",
]
