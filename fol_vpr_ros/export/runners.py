"""Run an exported FoL model (onnxruntime or TensorRT): backend file checks, metadata, runners.

The Describer over a runner (``ExportedDescriber``) lives in ``pipeline.describe``; nothing here
imports the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..model import arch_config
from .fixed_shape import OUTPUT_NAMES
from .metadata import ExportMetadata
from .onnx_export import INPUT_NAME

__all__ = [
    "BACKENDS",
    "BACKEND_SUFFIX",
    "DEFAULT_BACKEND",
    "ExportedRunner",
    "OnnxRuntimeRunner",
    "TensorRTRunner",
    "check_backend_file",
    "exported_input_size",
    "open_exported",
    "read_metadata",
    "require_tensorrt",
]

DEFAULT_BACKEND = "torch"  # the checkpoint in FoLNet; the others run a file from `fol-vpr export`
BACKENDS = (DEFAULT_BACKEND, "onnxruntime", "tensorrt")
BACKEND_SUFFIX = {"onnxruntime": ".onnx", "tensorrt": ".engine"}
SIDECAR_SUFFIX = ".json"  # metadata next to an engine: model.engine.json


def require_tensorrt():
    """The ``tensorrt`` module, or one ConfigError line saying it is missing."""
    try:
        import tensorrt
    except ImportError:
        raise ConfigError("TensorRT is not installed here (import tensorrt failed): install it with JetPack on "
                          "a Jetson or `pip install tensorrt` on a CUDA desktop, or use --backend onnxruntime"
                          ) from None
    return tensorrt


def check_backend_file(backend: str, weights: str) -> None:
    """ConfigError when ``weights`` does not fit ``backend`` (a .onnx/.engine for torch, a .pth for the others)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: allowed {', '.join(BACKENDS)}")
    suffix = Path(weights).suffix
    exported = {v: k for k, v in BACKEND_SUFFIX.items()}
    if backend == DEFAULT_BACKEND:
        if suffix in exported:
            raise ConfigError(f"weights {weights}: a {suffix} file needs backend {exported[suffix]} "
                              f"(--backend {exported[suffix]}), not torch")
        return
    if suffix != BACKEND_SUFFIX[backend]:
        raise ConfigError(f"weights {weights}: backend {backend} runs a {BACKEND_SUFFIX[backend]} file "
                          f"(from `fol-vpr export`), got {suffix or 'no suffix'}")
    if not Path(weights).is_file():
        raise ConfigError(f"weights {weights}: exported model file not found")


def read_metadata(backend: str, path: str | Path) -> ExportMetadata:
    """The ExportMetadata of an .onnx file (its metadata_props) or of an engine (its JSON sidecar)."""
    path = Path(path)
    if backend == "onnxruntime":
        from .onnx_export import require_onnx

        onnx = require_onnx()
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
            raise ConfigError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        props = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{sidecar}: cannot read the engine's metadata ({exc}); build the engine with "
                          "`fol-vpr export tensorrt`") from None
    return ExportMetadata.from_props(props, str(sidecar))


def exported_input_size(backend: str, weights: str) -> tuple[int, int] | None:
    """The input size an exported model was built for (None for the torch backend)."""
    if backend == DEFAULT_BACKEND:
        return None
    check_backend_file(backend, weights)
    return read_metadata(backend, weights).config.input_size


class OnnxRuntimeRunner:
    """An onnxruntime session of an exported model: float32 [B, 3, H, W] -> dict of output arrays."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 spinning: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("backend onnxruntime needs the onnxruntime package: "
                              "pip install 'fol_vpr_ros[export]'") from None
        dev = torch.device(device)
        available = ort.get_available_providers()
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(f"device {device}: this onnxruntime has no CUDA provider "
                                  f"(available: {', '.join(available)}); install onnxruntime-gpu")
            providers = [("CUDAExecutionProvider", {"device_id": dev.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
        if not spinning:  # idle threads sleep instead of busy-waiting (benchmarks interleaving other work)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, np.float32)})
        return dict(zip(OUTPUT_NAMES, values, strict=True))


class TensorRTRunner:
    """A TensorRT engine (TensorRT >= 10 tensor API) on a CUDA device, buffers held as torch tensors."""

    _DTYPES: ClassVar[dict[str, torch.dtype]] = {
        "FLOAT": torch.float32, "HALF": torch.float16, "INT64": torch.int64, "INT32": torch.int32, "BOOL": torch.bool}

    def __init__(self, path: str | Path, device: str = "cuda") -> None:
        trt = require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise ConfigError(f"backend tensorrt needs a CUDA device, got {device!r}")
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f:
            engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if engine is None:
            raise ConfigError(f"{path}: TensorRT could not deserialise the engine (built by another version?)")
        self.engine, self.context = engine, engine.create_execution_context()

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device)
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        outputs = {}
        for name in OUTPUT_NAMES:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = self._DTYPES[self.engine.get_tensor_dtype(name).name]
            outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return {k: v.cpu().numpy() for k, v in outputs.items()}


ExportedRunner = OnnxRuntimeRunner | TensorRTRunner


def open_exported(backend: str, weights: str, input_size: tuple[int, int], arch: str = "auto",
                  device: str = "cpu") -> tuple[ExportedRunner, ExportMetadata]:
    """A runner and the metadata of ``weights`` (a .onnx or .engine file), checked against the requested
    input size and architecture (``auto``: any)."""
    check_backend_file(backend, weights)
    path = Path(weights)
    meta = read_metadata(backend, path)
    mcfg = meta.config
    if tuple(input_size) != mcfg.input_size:
        raise ConfigError(f"{path}: exported for input size {mcfg.input_size[0]} x {mcfg.input_size[1]}, but "
                          f"{input_size[0]} x {input_size[1]} was requested (input_size / --resize)")
    if arch != "auto" and arch_config(arch).name != mcfg.arch:
        raise ConfigError(f"{path}: exported from a {mcfg.arch} model, but arch {arch} was requested")
    runner = OnnxRuntimeRunner(path, device) if backend == "onnxruntime" else TensorRTRunner(path, device)
    return runner, meta
