"""Load and save FoL weights in the authors' layout, safely (weights_only, strict keys)."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_binary
from ..errors import CheckpointError, ConfigError
from .config import ARCHITECTURES, DEFAULT_INPUT_SIZE, FoLConfig, arch_config
from .fol import FoLNet
from .vit import init_vit_

__all__ = [
    "SYNTHETIC_WARNING",
    "LoadedModel",
    "build_model",
    "file_sha256",
    "infer_arch",
    "load_model",
    "read_state_dict",
    "save_checkpoint",
    "synthetic_model",
]

SYNTHETIC_WARNING = (
    "SYNTHETIC WEIGHTS: this model was initialised at random ({spec}); its descriptors, regions and "
    "matches are meaningless for accuracy. Pass --weights /path/to/FoL_base.pth for real results."
)

_PREFIX = "module."
_BACKBONE = "backbone.model."


@dataclass
class LoadedModel:
    """A ready model plus where it came from (``sha256`` is 'synthetic:SEED' for random weights)."""

    model: FoLNet
    source: str
    sha256: str
    synthetic: bool

    @property
    def config(self) -> FoLConfig:
        return self.model.cfg


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file with ``weights_only=True``; unwrap ``model_state_dict`` and ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip (torch.save) or legacy pickle
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (it starts with {head!r}, not a zip archive or "
                              "pickle stream); give the FoL .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file contains pickled objects other than tensors "
            f"(possibly code); only plain weight files are accepted ({first})"
        ) from None
    except Exception as exc:  # torch raises IndexError/KeyError/... for text or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {first}") from None
    if isinstance(obj, Mapping):
        for key in ("model_state_dict", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict found (expected a mapping of parameter names to tensors)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key[len(_PREFIX) :] if key.startswith(_PREFIX) else key] = value
    _check_values(state, str(path))
    return state


def _check_values(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse NaN/inf weights and non-float weight tensors, naming the file and the first bad key."""
    for key, value in state.items():
        if not value.is_floating_point():
            if not key.endswith("num_batches_tracked"):
                raise CheckpointError(f"{source}: tensor {key!r} is {str(value.dtype).replace('torch.', '')}; FoL "
                                      "weights are floating point (the file was converted or is not a FoL "
                                      "checkpoint)")
            continue
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{source}: tensor {key!r} holds {bad} NaN/infinite value(s); the checkpoint is "
                                  "corrupt (or from a diverged training run): use another checkpoint")


def infer_arch(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> tuple[str, int]:
    """(architecture name, depth) from tensor shapes: width picks S/B/L/G, block keys give depth."""
    key = _BACKBONE + "cls_token"
    if key not in state:
        raise CheckpointError(
            f"{source}: not a FoL checkpoint (no {key!r}); first keys: {', '.join(list(state)[:5])}"
        )
    width = state[key].shape[-1]
    names = [n for n, cfg in ARCHITECTURES.items() if cfg.embed_dim == width]
    if not names:
        raise CheckpointError(f"{source}: backbone width {width} matches no DINOv2 ViT/14 (384/768/1024/1536)")
    blocks = {k.split(".")[3] for k in state if k.startswith(_BACKBONE + "blocks.")}
    depth = len(blocks)
    return names[0], depth


def build_model(cfg: FoLConfig) -> FoLNet:
    """Model with uninitialised (PyTorch default) weights."""
    return FoLNet(cfg)


def _check_keys(model: FoLNet, state: Mapping[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:

        def show(title: str, items: list[str]) -> str:
            more = f" ... and {len(items) - 12} more" if len(items) > 12 else ""
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:12]) + more if items else ""

        raise CheckpointError(
            f"{source}: checkpoint does not match the {model.cfg.arch} FoL model"
            + show("missing keys", missing)
            + show("unexpected keys", unexpected)
            + show("shape mismatches", wrong)
        )


def synthetic_model(cfg: FoLConfig, seed: int) -> FoLNet:
    """Deterministic random weights (same seed, same numbers on every machine)."""
    model = FoLNet(cfg)
    gen = torch.Generator().manual_seed(int(seed))
    init_vit_(model.backbone.model, gen)
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            continue
        with torch.no_grad():
            if name.endswith("bias"):
                param.zero_()
            else:
                fan_in = param[0].numel() if param.dim() > 1 else 1
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)
    return model


def load_model(
    weights: str,
    arch: str = "auto",
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    device: str | torch.device = "cpu",
    depth: int | None = None,
    strict: bool = True,
    warn: bool = True,
) -> LoadedModel:
    """Model in eval mode on ``device`` from a checkpoint path or ``random:SEED``.

    ``arch='auto'`` infers S/B/L/G from the checkpoint (vits14 for random weights). ``depth`` trims
    the ViT for tests. Strict: any missing, unexpected or mis-shaped key raises CheckpointError.
    """
    device = resolve_device(device)
    if weights.startswith("random:") or weights == "random":
        seed_text = weights.partition(":")[2] or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise ConfigError(f"--weights random:SEED needs an integer seed, got {seed_text!r}") from None
        cfg = FoLConfig(backbone=arch_config("vits14" if arch == "auto" else arch, depth), input_size=input_size)
        model = synthetic_model(cfg, seed)
        if warn:
            warnings.warn(SYNTHETIC_WARNING.format(spec=weights), UserWarning, stacklevel=2)
        return LoadedModel(model.eval().to(device), weights, f"synthetic:{seed}:{cfg.arch}:{cfg.backbone.depth}", True)

    state = read_state_dict(weights)
    found, found_depth = infer_arch(state, weights)
    if arch != "auto" and arch_config(arch).name != found:
        raise CheckpointError(f"{weights}: checkpoint holds a {found} backbone, but --arch {arch} was requested")
    vit = arch_config(found, depth if depth is not None else found_depth)
    cfg = FoLConfig(backbone=vit, input_size=input_size)
    model = FoLNet(cfg)
    if strict:
        _check_keys(model, state, weights)
    model.load_state_dict(state, strict=strict)
    return LoadedModel(model.eval().to(device), str(weights), file_sha256(weights), False)


def save_checkpoint(model: FoLNet, path: str | os.PathLike, extra: Mapping[str, object] | None = None) -> Path:
    """Write ``{'model_state_dict': {'module.<key>': tensor}}`` atomically (temp file + rename)."""
    path = Path(path)
    payload: dict[str, object] = {
        "model_state_dict": {_PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}
    }
    if extra:
        payload.update(extra)
    with atomic_binary(path) as f:
        torch.save(payload, f)
    return path


def resolve_device(device: str | torch.device) -> torch.device:
    """torch.device from a user string, with a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available in this torch build")
    return dev
