"""`fol-vpr export tensorrt`: a TensorRT engine from an exported ONNX model (where TensorRT is installed)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_binary, atomic_write_text
from ..errors import ConfigError
from .onnx_export import INPUT_NAME
from .runners import SIDECAR_SUFFIX, read_metadata, require_tensorrt

__all__ = ["TensorRTBuildResult", "build_tensorrt_engine"]


@dataclass(frozen=True)
class TensorRTBuildResult:
    """The engine file and its metadata sidecar."""

    engine: Path
    sidecar: Path
    fp16: bool


def build_tensorrt_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    fp16: bool = True,
    max_batch: int = 1,
    workspace_mb: int = 1024,
) -> TensorRTBuildResult:
    """Parse the ONNX, build an engine for batch 1..``max_batch`` (fp16 kernels allowed when ``fp16``).

    Writes ``out`` and ``out.json`` (the ONNX's fol_vpr metadata, for the tensorrt backend).
    """
    trt = require_tensorrt()
    onnx_path, out = Path(onnx_path), Path(out)
    if out.suffix != ".engine":
        raise ConfigError(f"--out {out}: the engine file name must end in .engine")
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {max_batch}")
    meta = read_metadata("onnxruntime", onnx_path)
    h, w = meta.config.input_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"{onnx_path}: TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 3, h, w), (max_batch, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ConfigError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    with atomic_binary(out) as f:
        f.write(bytes(engine))
    sidecar = out.with_name(out.name + SIDECAR_SUFFIX)
    props = meta.to_props()
    atomic_write_text(sidecar, json.dumps(props, indent=2))
    return TensorRTBuildResult(out, sidecar, fp16)
