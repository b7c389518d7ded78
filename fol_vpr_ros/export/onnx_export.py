"""`fol-vpr export onnx`: the FoL model as an ONNX graph with a dynamic batch dimension."""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import ConfigError
from ..model import DEFAULT_INPUT_SIZE, load_model
from .fixed_shape import OUTPUT_NAMES, FixedShapeFoL
from .metadata import ExportMetadata

__all__ = ["EXPORT_PRECISIONS", "INPUT_NAME", "OnnxExportResult", "export_onnx", "require_onnx"]

INPUT_NAME = "images"  # [B, 3, H, W] float32, ImageNet-normalised (fol_vpr_ros.model.preprocess)
EXPORT_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
DEFAULT_OPSET = 17


def require_onnx():
    """The ``onnx`` module, or ConfigError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'fol_vpr_ros[export]'") from None
    return onnx


@dataclass(frozen=True)
class OnnxExportResult:
    """Where the model went and what it holds."""

    out: Path
    metadata: ExportMetadata
    bytes: int


def export_onnx(
    weights: str,
    out: str | os.PathLike,
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    precision: str = "fp32",
    depth: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> OnnxExportResult:
    """Export ``weights`` (checkpoint or random:SEED) at input size ``resize`` (default ``model.DEFAULT_INPUT_SIZE``).

    ``fp16`` stores and runs the ViT in float16; aggregation, region selection and the local head
    stay float32 (inputs and outputs are float32 either way). Written atomically.
    """
    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: allowed {', '.join(EXPORT_PRECISIONS)}")
    onnx = require_onnx()
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: the file name must end in .onnx")
    size = tuple(resize) if resize is not None else DEFAULT_INPUT_SIZE
    loaded = load_model(weights, arch, size, "cpu", depth=depth, warn=False)
    graph = FixedShapeFoL(copy.deepcopy(loaded.model), EXPORT_PRECISIONS[precision]).eval()
    cfg = loaded.config
    meta = ExportMetadata(cfg, loaded.sha256, loaded.source, loaded.synthetic, precision, graph.slots)
    example = torch.zeros(2, 3, *size)
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # the TorchScript exporter warns that it is deprecated and about traced shape arithmetic
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(tmp), dynamo=False, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True)
        model = onnx.load(str(tmp))
        for key, value in meta.to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return OnnxExportResult(out, meta, out.stat().st_size)
