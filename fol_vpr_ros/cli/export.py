"""`fol-vpr export onnx|tensorrt`: argument parsers and commands (wired into cli/main.py)."""

from __future__ import annotations

import argparse
from typing import Any

from ..export.onnx_export import EXPORT_PRECISIONS, export_onnx
from ..export.tensorrt_build import build_tensorrt_engine
from ..model.config import DEFAULT_INPUT_SIZE
from .common import (
    ARCH_HELP,
    PATCH_SIZE,
    WEIGHTS_HELP,
    WEIGHTS_METAVAR,
    add_subcommand,
    job_defaults,
    model_arch_and_size,
    show_size,
    synthetic_banner,
)

__all__ = ["add_export_parser"]


def _cmd_onnx(a: argparse.Namespace) -> int:
    arch, size = model_arch_and_size(a)
    res = export_onnx(a.weights, a.out, arch, size, a.precision)
    cfg = res.metadata.config
    print(f"exported {cfg.arch} at {cfg.input_size[0]}x{cfg.input_size[1]} ({a.precision}, dynamic batch, "
          f"{res.metadata.local_slots} local-row slots) -> {res.out} ({res.bytes / 2**20:.1f} MiB)")
    if res.metadata.synthetic:
        print(synthetic_banner("this model comes from random weights and is only good for testing the pipeline."))
    return 0


def _cmd_tensorrt(a: argparse.Namespace) -> int:
    res = build_tensorrt_engine(a.onnx, a.out, fp16=not a.fp32, max_batch=a.max_batch, workspace_mb=a.workspace_mb)
    print(f"TensorRT engine ({'fp16' if res.fp16 else 'fp32'}) -> {res.engine} (metadata {res.sidecar})")
    return 0


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export onnx`` and ``export tensorrt`` to ``subparsers``."""
    onnx, trt = job_defaults(export_onnx), job_defaults(build_tensorrt_engine)
    p = add_subcommand(subparsers, "export", help="export the model for deployment (ONNX, TensorRT)")
    sub = p.add_subparsers(dest="format", required=True)
    o = add_subcommand(sub, "onnx", help="ONNX graph with a dynamic batch dimension")
    o.add_argument("--weights", required=True, metavar=WEIGHTS_METAVAR, help=WEIGHTS_HELP)
    o.add_argument("--arch", default=onnx["arch"], help=ARCH_HELP)
    o.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help=f"fixed model input size, multiples of {PATCH_SIZE} (default: {show_size(DEFAULT_INPUT_SIZE)})")
    o.add_argument("--precision", default=onnx["precision"], choices=list(EXPORT_PRECISIONS),
                   help="fp16: the ViT in float16, selection/aggregation/local head in float32")
    o.add_argument("--out", required=True, help="output .onnx file")
    o.set_defaults(func=_cmd_onnx)
    t = add_subcommand(sub, "tensorrt", help="TensorRT engine from an exported .onnx (needs TensorRT installed)")
    t.add_argument("--onnx", required=True, help="model from `fol-vpr export onnx`")
    t.add_argument("--out", required=True, help="output .engine file (metadata goes to OUT.json)")
    t.add_argument("--fp32", action="store_true", help="no fp16 kernels (default: fp16 allowed)")
    t.add_argument("--max-batch", type=int, default=trt["max_batch"], help="largest batch the engine accepts")
    t.add_argument("--workspace-mb", type=int, default=trt["workspace_mb"], help="TensorRT builder workspace (MiB)")
    t.set_defaults(func=_cmd_tensorrt)
    return p
