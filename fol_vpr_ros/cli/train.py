"""`fol-vpr train`: argument parser and command (wired into cli/main.py with ``add_train_parser``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..console import banner
from ..errors import ConfigError
from ..model.config import DEFAULT_INPUT_SIZE
from ..training.config import AMP_MODES, IMAGES_PER_PLACE, PLACES_PER_BATCH, OptimConfig, SourceConfig, TrainConfig
from ..training.data import LIGHT_AUGMENT, AugmentConfig, TransformConfig
from ..training.places import HEADING_AXES, PLACE_POSITIONS, MapPlacesConfig
from ..training.validation import ValConfig
from .common import add_quiet_argument, add_subcommand, job_defaults

__all__ = ["add_train_parser", "cmd_train", "config_from_args"]


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers`` (from ``parser.add_subparsers``)."""
    run, places, optim, val = job_defaults(TrainConfig), MapPlacesConfig(), OptimConfig(), ValConfig()
    aug = LIGHT_AUGMENT
    p = add_subcommand(
        subparsers, "train", help="train / fine-tune FoL on GSV-Cities or on a robot's own map",
        description="Train FoL (losses of the paper). New run: a data source (--gsv-root or --map), --arch "
                    "(or --weights), --steps or --epochs, --out. Continue a run: --resume RUN_DIR.")
    src = p.add_argument_group("data")
    src.add_argument("--gsv-root", default=None, help="GSV-Cities folder (Dataframes/, Images/)")
    src.add_argument("--cities", nargs="+", default=None, help="GSV-Cities cities (default: every CSV)")
    src.add_argument("--map", default=None, help="map directory (fol-vpr build-map) as the data source")
    src.add_argument("--image-root", default=None, help="folder the map's relative image paths are under")
    src.add_argument("--place-radius", type=float, default=places.radius_m, help="map places: member radius (m)")
    src.add_argument("--place-spacing", type=float, default=places.spacing_m,
                     help="map places: minimum centre spacing (m)")
    src.add_argument("--heading-tolerance", type=float, default=places.heading_tolerance_deg,
                     help="map places: also split by heading (degrees; from the pose quaternion)")
    src.add_argument("--heading-axis", choices=HEADING_AXES, default=places.heading_axis,
                     help="camera axis pointing forward (x: ROS body frame, z: optical frame)")
    src.add_argument("--position", choices=PLACE_POSITIONS, default=places.position,
                     help="map places: position from UTM, lat/lon or the pose (auto: the first there is)")
    src.add_argument("--skip-missing", action="store_true", help="drop listed images that are missing")
    src.add_argument("--places-per-batch", type=int, default=PLACES_PER_BATCH, help="P places per batch (as the paper)")
    src.add_argument("--images-per-place", type=int, default=IMAGES_PER_PLACE, help="K images per place (as the paper)")
    src.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=list(DEFAULT_INPUT_SIZE),
                     help="training input size")
    src.add_argument("--normalize", action="store_true",
                     help="ImageNet normalisation of training inputs (the authors train without it)")
    src.add_argument("--augment", action="store_true",
                     help=f"light augmentation: crop {aug.crop_scale[0]}-{aug.crop_scale[1]} of the area, colour "
                          f"jitter {aug.brightness} (off by default)")
    src.add_argument("--workers", type=int, default=run["workers"], help="data loader worker processes")

    m = p.add_argument_group("model")
    m.add_argument("--arch", default=run["arch"], help="vits14, vitb14, vitl14 (auto: from --weights)")
    m.add_argument("--weights", default=None,
                   help="FoL checkpoint or DINOv2 backbone state dict (default: synthetic weights, with a warning)")
    m.add_argument("--depth", type=int, default=None, help="fewer ViT blocks (tiny test models)")
    m.add_argument("--trainable-blocks", type=int, default=run["trainable_blocks"],
                   help="last blocks trained (others frozen)")

    o = p.add_argument_group("optimisation")
    length = o.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="optimiser steps in total")
    length.add_argument("--epochs", type=int, default=None, help="epochs (passes over all places) in total")
    o.add_argument("--lr", type=float, default=optim.lr, help="AdamW learning rate")
    o.add_argument("--weight-decay", type=float, default=optim.weight_decay, help="AdamW weight decay")
    o.add_argument("--lr-decay-iters", type=int, default=optim.lr_decay_iters,
                   help="linear decay to --lr-end-factor x lr over N steps")
    o.add_argument("--lr-end-factor", type=float, default=optim.lr_end_factor, help="final lr / initial lr")
    o.add_argument("--clip-grad", type=float, default=optim.clip_grad_norm, help="max gradient norm (0 = off)")
    o.add_argument("--amp", choices=AMP_MODES, default=run["amp"],
                   help="mixed precision (CUDA only; auto = float16 on CUDA)")
    o.add_argument("--seed", type=int, default=run["seed"], help="seed of weights (synthetic), sampling, augmentation")
    o.add_argument("--no-deterministic", action="store_true", help="allow non-deterministic kernels")

    v = p.add_argument_group("validation and output")
    v.add_argument("--val", default=val.spec,
                   help="holdout:FRACTION (held-out training places), bundled:NAME (e.g. bundled:gardenspoint) "
                        "or a VPR-layout folder (default: none; best.pth = lowest training loss)")
    v.add_argument("--val-data", default=val.data_root, help="data root for bundled:NAME")
    v.add_argument("--val-every", type=int, default=val.every_epochs, help="validate every N epochs")
    v.add_argument("--val-max-places", type=int, default=val.max_places, help="at most N held-out places")
    v.add_argument("--save-every", type=int, default=None, help="also checkpoint every N steps")
    v.add_argument("--no-epoch-checkpoints", action="store_true", help="keep only last.pth / best.pth")
    v.add_argument("--out", default=None, help="run directory (new run)")
    v.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    v.add_argument("--device", default=None, help=f"cpu, cuda, cuda:1 ... (default: {run['device']})")
    add_quiet_argument(v)
    p.set_defaults(func=cmd_train)
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed arguments (a new run)."""
    if a.out is None:
        raise ConfigError("--out RUN_DIR is required for a new run (or --resume RUN_DIR to continue one)")
    if bool(a.gsv_root) == bool(a.map):
        raise ConfigError("give exactly one data source: --gsv-root DIR or --map MAP_DIR")
    if a.cities and not a.gsv_root:
        raise ConfigError("--cities only applies to --gsv-root")
    places = MapPlacesConfig(radius_m=a.place_radius, spacing_m=a.place_spacing,
                             heading_tolerance_deg=a.heading_tolerance, heading_axis=a.heading_axis,
                             position=a.position, image_root=a.image_root)
    source = SourceConfig(kind="gsv" if a.gsv_root else "map", root=a.gsv_root or a.map,
                          cities=tuple(a.cities) if a.cities else None, skip_missing=a.skip_missing,
                          map_places=places)
    augment = LIGHT_AUGMENT if a.augment else AugmentConfig()
    return TrainConfig(
        out_dir=a.out, source=source, arch=a.arch, depth=a.depth, weights=a.weights, steps=a.steps,
        epochs=a.epochs, places_per_batch=a.places_per_batch, images_per_place=a.images_per_place,
        trainable_blocks=a.trainable_blocks,
        transform=TransformConfig(size=tuple(a.resize), normalize=a.normalize, augment=augment),
        optim=OptimConfig(lr=a.lr, weight_decay=a.weight_decay, lr_end_factor=a.lr_end_factor,
                          lr_decay_iters=a.lr_decay_iters, clip_grad_norm=a.clip_grad or None),
        val=ValConfig(spec=a.val, data_root=a.val_data, every_epochs=a.val_every, max_places=a.val_max_places),
        device=a.device or job_defaults(TrainConfig)["device"], amp=a.amp, seed=a.seed,
        deterministic=not a.no_deterministic,
        workers=a.workers, save_every_steps=a.save_every, keep_epoch_checkpoints=not a.no_epoch_checkpoints,
        progress=not a.quiet,
    )


def cmd_train(a: argparse.Namespace) -> int:
    """Run ``fol-vpr train``; prints where the run is and the best score."""
    from ..training.trainer import resume, train

    if a.resume:
        if a.out and a.out != a.resume:
            raise ConfigError("--resume continues RUN_DIR in place; do not combine it with another --out")
        fixed = [flag for flag, value in (("--gsv-root", a.gsv_root), ("--map", a.map), ("--weights", a.weights),
                                          ("--cities", a.cities), ("--depth", a.depth), ("--val", a.val))
                 if value is not None] + (["--arch"] if a.arch != "auto" else [])
        if fixed:
            raise ConfigError(f"--resume reads its settings from RUN_DIR/config.json; {', '.join(fixed)} cannot "
                              "change (only --steps/--epochs, --device, --workers, -q)")
        res = resume(a.resume, steps=a.steps, epochs=a.epochs, device=a.device,
                     workers=a.workers if a.workers else None, progress=not a.quiet)
    else:
        res = train(config_from_args(a))
    losses = ", ".join(f"{k} {v:.4f}" for k, v in res.last_losses.items() if k in ("total", "ms", "local"))
    print(f"trained to step {res.step} (epoch {res.epoch}): {losses}")
    print(f"last: {res.last}")
    if res.best is not None:
        note = "" if res.best_metric != "train_loss" else " (no validation set: lowest mean training loss)"
        print(f"best: {res.best} ({res.best_metric} {res.best_value:.4f}){note}")
    if res.synthetic:
        print(banner("SYNTHETIC START: this run began from random weights, not DINOv2; its model is only good "
                     "for testing the pipeline."))
    return 0
