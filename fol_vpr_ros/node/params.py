"""Node parameters: typed frozen dataclasses, ROS 2 parameter-file loading and validation.

Every ROS parameter is a dataclass field whose metadata holds its description and allowed values
(``param_spec``); nested groups give the dotted ROS names (``keyframe.min_interval_sec``).
``load_params`` reads the ROS 2 parameter-file format (``/**:`` or ``<node>:`` sections with
``ros__parameters``), checks types as strictly as ROS does (30 is not 30.0, a bool is not an int)
and every value's range. ``node_name`` and ``namespace`` are not parameters (ROS sets them); they
are kept for the adapter. Defaults that other modules own (``model.DEFAULT_INPUT_SIZE``,
``pipeline.rerank.DEFAULT_THRESHOLD``) are read when a spec is first needed, so that importing this
module loads neither torch nor faiss.

Long module: the one table of every node parameter (groups in declaration order) with the loader that
checks it; splitting the table would scatter what a user reads as one list.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ..errors import ConfigError
from .param_spec import (
    ParamGroup,
    ParamSpec,
    check_arch,
    check_device,
    check_frame,
    check_input_size,
    check_label,
    check_optional_topic,
    check_topic,
    check_topics,
    check_value,
    group_of,
    param_field,
    spec_of,
)

__all__ = [
    "RESERVED_PARAMETERS",
    "AdaptersParams",
    "DepthParams",
    "DiagnosticsParams",
    "ExclusionParams",
    "FramesParams",
    "ImageQosParams",
    "KeyframeParams",
    "LioSamParams",
    "LoopClosureParams",
    "MarkerParams",
    "NodeParams",
    "OdometryParams",
    "ParamSpec",
    "PoseParams",
    "QosParams",
    "TfParams",
    "VerificationParams",
    "load_params",
    "param_specs",
]

# Parameters ROS itself declares on every node: accepted in files and ignored here.
RESERVED_PARAMETERS = ("use_sim_time", "start_type_description_service")
_RESERVED_PREFIXES = ("qos_overrides.",)
_HOUR_S = 3600.0  # upper bound of the period-like parameters

_p = param_field  # the parameter table below reads better with a short name


def _default_input_size() -> tuple[int, int]:
    from ..model.config import DEFAULT_INPUT_SIZE

    return DEFAULT_INPUT_SIZE


def _default_rerank_threshold() -> float:
    from ..pipeline.rerank import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


@dataclass(frozen=True)
class KeyframeParams(ParamGroup):
    """When an image becomes a keyframe (time always; motion only with odometry)."""

    _prefix: ClassVar[str] = "keyframe."
    min_interval_sec: float = _p(0.5, "minimum time since the last keyframe (s, image stamps)", lo=0.0)
    min_distance_m: float = _p(1.0, "minimum travelled distance since the last keyframe (m; with odometry)",
                               lo=0.0)
    min_angle_deg: float = _p(15.0, "minimum rotation since the last keyframe (deg; with odometry); a keyframe "
                              "needs distance OR angle, AND the interval", lo=0.0, hi=180.0)


@dataclass(frozen=True)
class ExclusionParams(ParamGroup):
    """Loop closure: recent history that must not count as a loop."""

    _prefix: ClassVar[str] = "exclusion."
    min_time_sec: float = _p(30.0, "loop candidates must be at least this much older than the query (s, stamps)",
                             lo=0.0)
    min_keyframes: int = _p(50, "the last N keyframes are never loop candidates", lo=0, hi=1_000_000)


@dataclass(frozen=True)
class LoopClosureParams(ParamGroup):
    """Loop-closure acceptance and the online map."""

    _prefix: ClassVar[str] = "loop_closure."
    consistent_hits: int = _p(1, "consecutive consistent detections before a loop is published", lo=1, hi=1000)
    max_match_gap: int = _p(3, "two consecutive keyframes' matches are consistent when their map keyframe ids "
                            "differ by at most this", lo=0, hi=1_000_000)
    output_map_path: str = _p("", "where save_map writes the online map ('' = map_path)")
    save_on_shutdown: bool = _p(True, "save the online map on shutdown (needs output_map_path or map_path)")
    save_period_sec: float = _p(60.0, "also save the online map this often while running (s, wall clock; 0 = "
                                "off); a failed save keeps the map in memory and is retried next period",
                                lo=0.0, hi=86400.0)
    session_id: str = _p("", "session id stored with new keyframes ('' = a random one per run)")


@dataclass(frozen=True)
class FramesParams(ParamGroup):
    """Frame ids."""

    _prefix: ClassVar[str] = "frames."
    map: str = _p("map", "frame_id of published poses and markers", check=check_frame)
    camera: str = _p("camera", "frame_id used when an image arrives with an empty header.frame_id",
                     check=check_frame)


@dataclass(frozen=True)
class LioSamParams(ParamGroup):
    """LIO-SAM output."""

    _prefix: ClassVar[str] = "lio_sam."
    enabled: bool = _p(False, "also publish loop closures in LIO-SAM's format (Float64MultiArray [cur, pre] s)")


@dataclass(frozen=True)
class VerificationParams(ParamGroup):
    """Geometric verification of the best candidate (two-view fit on its mutual patch matches)."""

    _prefix: ClassVar[str] = "verification."
    enabled: bool = _p(True, "accept a match only when a robust two-view fit (MAGSAC) on its mutual patch matches "
                             "passes the inlier test")
    candidates: int = _p(1, "re-ranked candidates verified per query, best first (reported; the best decides)",
                         lo=1, hi=1000)
    min_inliers: int = _p(12, "the fit must keep at least this many inlier matches", lo=0, hi=100_000)
    min_inlier_ratio: float = _p(0.25, "... and at least this fraction of the matches", lo=0.0, hi=1.0)
    ransac_threshold_px: float = _p(0.0, "RANSAC inlier threshold (source-image pixels; 0 = from the patch size)",
                                    lo=0.0)
    confidence: float = _p(0.999, "RANSAC confidence", lo=0.5, hi=0.999999)
    max_iterations: int = _p(2000, "RANSAC iterations at most", lo=10, hi=1_000_000)

    def to_config(self):
        """The pipeline's VerifyConfig."""
        from ..pipeline.verify import VerifyConfig

        return VerifyConfig(self.enabled, self.candidates, self.min_inliers, self.min_inlier_ratio,
                            self.ransac_threshold_px, self.confidence, self.max_iterations)


@dataclass(frozen=True)
class DepthParams(ParamGroup):
    """Registered depth images (metric relative poses by PnP)."""

    _prefix: ClassVar[str] = "depth."
    topic: str = _p("", "sensor_msgs/Image depth registered to the camera (16UC1 mm or 32FC1 m; '' = none)",
                    check=check_optional_topic)
    tolerance_sec: float = _p(0.05, "a depth image is used for the colour image nearest in stamp, within this (s)",
                              lo=0.0, hi=_HOUR_S)


@dataclass(frozen=True)
class AdaptersParams(ParamGroup):
    """Loop closures for other SLAM back-ends (topics; '' = off; ros.backends)."""

    _prefix: ClassVar[str] = "adapters."
    pose_graph_topic: str = _p("", "publish accepted loop closures as pose_graph_tools_msgs/PoseGraph (one "
                               "LOOPCLOSE edge; Kimera-Multi / Hydra style) on this topic ('' = off)",
                               check=check_optional_topic)
    rtabmap_topic: str = _p("", "publish accepted loop closures as rtabmap_msgs/Link on this topic ('' = off)",
                            check=check_optional_topic)
    min_transform_kind: str = _p("metric", "send only loop closures whose relative transform is at least this "
                                 "kind (rotation_only < up_to_scale < metric)",
                                 choices=("rotation_only", "up_to_scale", "metric"))
    robots: str = _p("", "comma-separated robot ids; a robot's pose-graph number is its index here (ids that "
                     "are integers are their own number; '' or unset robot id = 0)")
    rtabmap_id_offset: int = _p(1, "rtabmap node id = keyframe id + this (rtabmap ids start at 1)",
                                lo=0, hi=2**31 - 1)


@dataclass(frozen=True)
class TfParams(ParamGroup):
    """The map->odom broadcast of publish_tf (node.map_odom)."""

    _prefix: ClassVar[str] = "tf."
    rate_hz: float = _p(10.0, "broadcast the map->odom correction at most this often (Hz, restamped each time)",
                        lo=1e-3, hi=1000.0)
    smoothing: float = _p(0.5, "weight of each new correction (1 = take it as is; the first is always taken)",
                          lo=1e-6, hi=1.0)
    max_jump_m: float = _p(0.0, "refuse a correction this far (m) from the current one (0 = no limit)", lo=0.0)
    max_jump_deg: float = _p(0.0, "refuse a correction this far (deg) from the current one (0 = no limit)",
                             lo=0.0, hi=180.0)


@dataclass(frozen=True)
class ImageQosParams(ParamGroup):
    """QoS of the image subscription."""

    _prefix: ClassVar[str] = "qos.image."
    reliability: str = _p("best_effort", "image subscription reliability", choices=("best_effort", "reliable"))
    depth: int = _p(1, "image subscription history depth (the core keeps only the newest frame anyway)",
                    lo=1, hi=1000)


@dataclass(frozen=True)
class QosParams(ParamGroup):
    """QoS settings."""

    _prefix: ClassVar[str] = "qos."
    image: ImageQosParams = field(default_factory=ImageQosParams)


@dataclass(frozen=True)
class OdometryParams(ParamGroup):
    """Odometry input (for keyframe distance/angle gating and keyframe poses)."""

    _prefix: ClassVar[str] = "odometry."
    topic: str = _p("odom", "nav_msgs/Odometry topic ('' = no odometry: time-only keyframe gating)",
                    check=check_optional_topic)
    tolerance_sec: float = _p(0.1, "nearest odometry pose accepted this far from an image stamp (s)", lo=0.0)
    max_gap_sec: float = _p(0.5, "interpolate between odometry poses at most this far apart (s)", lo=0.0)
    buffer_sec: float = _p(10.0, "odometry history kept (s)", lo=0.1, hi=_HOUR_S)


@dataclass(frozen=True)
class PoseParams(ParamGroup):
    """Covariance of the published pose: a model calibrated on true and false matches (node.pose_covariance)."""

    _prefix: ClassVar[str] = "pose."
    covariance_file: str = _p("", "pose covariance model (YAML written by `fol-vpr evaluate-bag`: "
                                  "pose_covariance.yaml); '' = the built-in prior")
    sigma_min_m: float = _p(0.5, "smallest position sigma published (m)", lo=1e-6)


@dataclass(frozen=True)
class DiagnosticsParams(ParamGroup):
    """Diagnostics."""

    _prefix: ClassVar[str] = "diagnostics."
    period_sec: float = _p(1.0, "diagnostics publishing period (s)", lo=0.01, hi=_HOUR_S)
    window_sec: float = _p(10.0, "window for the processing rate (s)", lo=0.1, hi=_HOUR_S)
    localized_timeout_sec: float = _p(5.0, "localized = a match accepted within this time (s, image stamps)",
                                      lo=0.0)


@dataclass(frozen=True)
class MarkerParams(ParamGroup):
    """Visualisation markers."""

    _prefix: ClassVar[str] = "markers."
    map_period_sec: float = _p(10.0, "send all map keyframe positions this often (s, image stamps; 0 = once)",
                               lo=0.0)


@dataclass(frozen=True)
class NodeParams(ParamGroup):
    """All parameters of the fol_vpr node (see config/localize.yaml); node_name/namespace are not parameters."""

    weights: str = _p("", "FoL checkpoint file (required; random:SEED gives synthetic weights for tests); with "
                      "backend onnxruntime / tensorrt the .onnx / .engine file from `fol-vpr export`")
    backend: str = _p("torch", "model runtime: torch (checkpoint) | onnxruntime (.onnx) | tensorrt (.engine)",
                      choices=("torch", "onnxruntime", "tensorrt"))
    arch: str = _p("auto", "backbone variant: auto (from the checkpoint), vits14, vitb14, vitl14, vitg14",
                   check=check_arch)
    input_size: tuple[int, int] = _p(_default_input_size, "[height, width] model input, multiples of 14",
                                     check=check_input_size)
    device: str = _p("cpu", "torch device: cpu, cuda or cuda:N", check=check_device)
    precision: str = _p("auto", "backbone precision: auto (bf16 where the device has it, else fp32) | fp32 | bf16 "
                        "| fp16; region selection and local head stay fp32", choices=("auto", "fp32", "bf16", "fp16"))
    map_path: str = _p("", "place map to localise against (localize) or to extend (loop_closure, optional)")
    map_verify: str = _p("full", "checks when the map opens: full (SHA-256 and NaN/inf of every file), size "
                         "(file sizes only, for very large maps), off", choices=("full", "size", "off"))
    mode: str = _p("localize", "localize (query map_path) | loop_closure (online map of this run)",
                   choices=("localize", "loop_closure"))
    image_topic: str = _p("image", "image topic (raw sensor_msgs/Image, or its /compressed)", check=check_topic)
    image_topics: tuple[str, ...] = _p((), "several camera topics (one node, one map): each subscribed with "
                                       "image_transport, each with its own latest-frame slot and keyframe gate; "
                                       "[] = image_topic only", check=check_topics, items=str)
    robot_id: str = _p("", "robot id stored with every keyframe the node adds (loop_closure) and in its messages "
                       "('' = none)", check=check_label)
    image_transport: str = _p("raw", "raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage)",
                              choices=("raw", "compressed"))
    camera_info_topic: str = _p("", "sensor_msgs/CameraInfo topic ('' = camera_info next to image_topic, as "
                                "image_transport does)", check=check_optional_topic)
    top_k: int = _p(100, "candidates retrieved by global descriptor", lo=1, hi=100_000)
    rerank_k: int = _p(100, "of these, how many are re-ranked with local features (0 = none; <= top_k)",
                       lo=0, hi=100_000)
    latency_budget_ms: float = _p(900.0, "per-frame latency budget (ms, 0 = off; default: a 1 Hz keyframe rate "
                                  "with 10 % to spare): rerank_k is lowered (not below min_rerank_k) so the p95 "
                                  "frame latency stays under it", lo=0.0)
    min_rerank_k: int = _p(1, "with latency_budget_ms: the fewest candidates re-ranked (capped at rerank_k)", lo=0,
                           hi=100_000)
    rerank_threshold: float = _p(_default_rerank_threshold, "similarity threshold of local-feature matches when "
                                 "re-ranking", lo=-1.0, hi=1.0)
    min_rerank_score: float = _p(30.0, "accept the best candidate only with at least this re-ranking score",
                                 lo=0.0)
    min_global_similarity: float = _p(-1.0, "... and at least this global cosine similarity (-1 = off; the only "
                                      "test when rerank_k is 0)", lo=-1.0, hi=1.0)
    publish_tf: bool = _p(False, "localize mode: broadcast the map->odom correction of accepted matches on /tf "
                          "(REP-105; settings tf.*; needs odometry)")
    keyframe: KeyframeParams = field(default_factory=KeyframeParams)
    exclusion: ExclusionParams = field(default_factory=ExclusionParams)
    loop_closure: LoopClosureParams = field(default_factory=LoopClosureParams)
    frames: FramesParams = field(default_factory=FramesParams)
    verification: VerificationParams = field(default_factory=VerificationParams)
    depth: DepthParams = field(default_factory=DepthParams)
    lio_sam: LioSamParams = field(default_factory=LioSamParams)
    adapters: AdaptersParams = field(default_factory=AdaptersParams)
    tf: TfParams = field(default_factory=TfParams)
    qos: QosParams = field(default_factory=QosParams)
    odometry: OdometryParams = field(default_factory=OdometryParams)
    pose: PoseParams = field(default_factory=PoseParams)
    diagnostics: DiagnosticsParams = field(default_factory=DiagnosticsParams)
    markers: MarkerParams = field(default_factory=MarkerParams)
    node_name: str = field(default="fol_vpr", metadata={"identity": True})
    namespace: str = field(default="", metadata={"identity": True})

    def _check_together(self) -> None:
        if not self.node_name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.node_name):
            raise ConfigError(f"node name {self.node_name!r} is not a valid ROS node name")
        if self.rerank_k > self.top_k:
            raise ConfigError(f"parameter rerank_k: {self.rerank_k} is larger than top_k ({self.top_k}); "
                              f"allowed: 0 .. {self.top_k}")
        if self.publish_tf and self.mode != "localize":
            raise ConfigError("parameter publish_tf: true needs mode localize (map->odom comes from matches "
                              "against a map)")
        if self.publish_tf and not self.odometry.topic:
            raise ConfigError("parameter publish_tf: true needs odometry (odometry.topic is empty; the odom "
                              "frame and pose come from the odometry messages)")

    @property
    def camera_topics(self) -> tuple[str, ...]:
        """The camera topics the node subscribes to: ``image_topics``, else ``image_topic`` alone."""
        return self.image_topics or (self.image_topic,)

    @property
    def fully_qualified_name(self) -> str:
        """'/<namespace>/<node_name>' as ROS writes it."""
        ns = "/" + self.namespace.strip("/") if self.namespace.strip("/") else ""
        return f"{ns}/{self.node_name}"

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted ROS parameter names -> values (tuples as lists), for declaring them with rclpy."""
        return {name: (list(v) if isinstance(v, tuple) else v) for name, v in _walk(self)}

    def updated(self, overrides: Mapping[str, Any], *, strict: bool = False) -> NodeParams:
        """A copy with dotted (or nested) overrides applied and validated."""
        flat = self.to_flat_dict()
        _merge(flat, _flatten(overrides, ""), "overrides", strict=strict)
        return _build(flat, self.node_name, self.namespace)

    @staticmethod
    def descriptions() -> dict[str, str]:
        """Dotted parameter name -> description (for ROS parameter descriptors)."""
        return {s.name: s.description for s in param_specs()}


# ---------------------------------------------------------------------------- specs and walking
def _iter_specs(cls: type, prefix: str) -> Iterator[tuple[ParamSpec, Callable | None]]:
    for f in fields(cls):
        if group_of(f) is not None:
            yield from _iter_specs(group_of(f), f"{prefix}{f.name}.")
        elif "description" in f.metadata:
            yield spec_of(prefix, f), f.metadata.get("check")


@functools.cache
def _specs() -> dict[str, tuple[ParamSpec, Callable | None]]:
    """Dotted name -> (spec, extra check) of every parameter, built on first use."""
    return {s.name: (s, c) for s, c in _iter_specs(NodeParams, "")}


def param_specs() -> tuple[ParamSpec, ...]:
    """Every ROS parameter of the node, in declaration order."""
    return tuple(s for s, _ in _specs().values())


def _walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for f in fields(obj):
        if group_of(f) is not None:
            yield from _walk(getattr(obj, f.name), f"{prefix}{f.name}.")
        elif "description" in f.metadata:
            yield prefix + f.name, getattr(obj, f.name)


# ---------------------------------------------------------------------------- building
def _build(flat: Mapping[str, Any], node_name: str, namespace: str) -> NodeParams:
    """NodeParams from a complete flat dict (values already type-checked)."""

    def make(cls: type, prefix: str) -> Any:
        kwargs = {}
        for f in fields(cls):
            if group_of(f) is not None:
                kwargs[f.name] = make(group_of(f), f"{prefix}{f.name}.")
            elif "description" in f.metadata:
                kwargs[f.name] = flat[prefix + f.name]
        return cls(**kwargs)

    return dataclasses.replace(make(NodeParams, ""), node_name=node_name, namespace=namespace)


def _flatten(obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_reserved(name: str) -> bool:
    return name in RESERVED_PARAMETERS or name.startswith(_RESERVED_PREFIXES)


def _merge(flat: dict[str, Any], new: Mapping[str, Any], where: str, strict: bool) -> None:
    """Check ``new`` (unknown names with suggestions, types, ranges) and copy it into ``flat``."""
    problems, unknown = [], []
    specs = _specs()
    for name, value in new.items():
        if _is_reserved(name):
            continue
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=3, cutoff=0.6)
            unknown.append(f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close
                                          else " (no similar parameter)"))
            continue
        spec, check = specs[name]
        try:
            flat[name] = check_value(spec, value, check, strict)
        except ConfigError as exc:
            problems.append(str(exc))
    if unknown:
        problems.insert(0, f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def _match_tokens(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    head = pattern[0]
    if head == "**":
        return any(_match_tokens(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    if head == "*" or head == name[0]:
        return _match_tokens(pattern[1:], name[1:])
    return False


def section_matches(section: str, fully_qualified_name: str) -> bool:
    """Whether a parameter-file section ('/**', 'fol_vpr', '/ns/fol_vpr', '/*/fol_vpr') applies to a node."""
    pattern = [t for t in section.strip().strip("/").split("/") if t]
    name = [t for t in fully_qualified_name.strip("/").split("/") if t]
    return _match_tokens(pattern, name)


def _sections(data: Any, path: str, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(node section name, ros__parameters) pairs; nested namespace keys are joined with '/'."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: section {path or '/'} must be a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if key == "ros__parameters":
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {path}: ros__parameters must be a mapping")
            yield path or "/", value
        elif isinstance(key, str) and isinstance(value, dict):
            yield from _sections(value, f"{path}/{key.strip('/')}" if path else key, where)
        else:
            raise ConfigError(f"{where}: {path + '/' if path else ''}{key}: expected a node section holding "
                              "ros__parameters (ROS 2 parameter-file format: '/**:' -> 'ros__parameters:')")


def load_params(yaml_path: str | os.PathLike | None, node_name: str = "fol_vpr",
                overrides: Mapping[str, Any] | None = None, namespace: str = "") -> NodeParams:
    """NodeParams from a ROS 2 parameter file (sections matching the node), then ``overrides``.

    Wildcard sections ('/**', '/*/fol_vpr') are applied first, then sections naming the node,
    each in file order (a node-specific value wins over '/**'). Nested keys are flattened with
    dots. ROS's own parameters (use_sim_time, qos_overrides.*) are ignored. Unknown names,
    wrong types (30 for a float) and out-of-range values raise one ConfigError listing them.
    """
    probe = NodeParams(node_name=node_name, namespace=namespace)  # validates the node name
    flat = probe.to_flat_dict()
    if yaml_path is not None:
        path = Path(yaml_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read parameter file ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text parameter file (byte {exc.start} is not UTF-8); give the "
                              "ROS 2 YAML parameter file (e.g. config/localize.yaml)") from None
        if "\x00" in text:
            raise ConfigError(f"{path}: not a text parameter file (it holds NUL bytes); give the ROS 2 YAML "
                              "parameter file (e.g. config/localize.yaml)")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if data is None:
            data = {}
        sections = list(_sections(data, "", str(path)))
        fqn = probe.fully_qualified_name
        wild = [(s, p) for s, p in sections if "*" in s and section_matches(s, fqn)]
        exact = [(s, p) for s, p in sections if "*" not in s and section_matches(s, fqn)]
        for section, params in wild + exact:
            _merge(flat, _flatten(params, ""), f"{path} [{section}]", strict=True)
    if overrides:
        _merge(flat, _flatten(overrides, ""), "parameter overrides", strict=True)
    return _build(flat, node_name, namespace)
