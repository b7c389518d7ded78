"""What the `fol-vpr` parsers share: help that shows defaults, the model arguments, library defaults, -q.

Parsers only parse: choices and defaults come from the library (``Precision``, ``export.runners.BACKENDS``,
``DescriberConfig``, ``model.PRESETS``, the node's parameters, a job's own signature) so they are written in
one place. Every command that uses a model requires ``--weights`` (a checkpoint, or ``random:SEED`` for
synthetic weights, asked for explicitly), as the node requires its ``weights`` parameter; a synthetic run
says so once, in a banner at the end (:func:`synthetic_banner`).
"""

from __future__ import annotations

import argparse
import enum
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..console import banner
from ..datasets import default_data_dir
from ..export.runners import BACKEND_SUFFIX, BACKENDS
from ..model.checkpoint import SYNTHETIC_WARNING
from ..model.config import ARCHITECTURES, DEFAULT_INPUT_SIZE, PRESETS, resolve_preset
from ..pipeline.describe import DescriberConfig
from ..precision import Precision

__all__ = [
    "ARCH_HELP",
    "DEFAULT_DATA_ROOT",
    "DESCRIBER_DEFAULTS",
    "PATCH_SIZE",
    "PRECISION_CHOICES",
    "SAYS_SYNTHETIC_AT_END",
    "WEIGHTS_METAVAR",
    "HelpFormatter",
    "RawDescriptionHelpFormatter",
    "SyntheticLogFilter",
    "add_model_arguments",
    "add_quiet_argument",
    "add_subcommand",
    "archs_and_size",
    "job_defaults",
    "model_arch_and_size",
    "node_defaults",
    "show_size",
    "size_or_none",
    "synthetic_banner",
    "use_default_formatters",
]

DEFAULT_DATA_ROOT = str(default_data_dir())  # the repository's data/ (or $FOL_VPR_DATA)
DESCRIBER_DEFAULTS = DescriberConfig()
PRECISION_CHOICES = tuple(p.value for p in Precision)
ARCH_HELP = (f"auto (from the checkpoint), {', '.join(ARCHITECTURES)}, or a preset that also sets the input size: "
             f"{', '.join(PRESETS)}")
PATCH_SIZE = "/".join(str(s) for s in sorted({vit.patch_size for vit in ARCHITECTURES.values()}))
WEIGHTS_METAVAR = "CKPT|random:SEED"
SAYS_SYNTHETIC_AT_END = "says_synthetic_at_end"  # parser default: the command ends with synthetic_banner()
WEIGHTS_HELP = ("FoL checkpoint (the authors' FoL_base.pth / FoL_large.pth, or one of `fol-vpr train`), or random:SEED "
                "for synthetic weights (results meaningless; `make demo` passes random:0)")


def _shown(value: Any) -> str:
    """A default as it is typed on the command line: enums by value, sequences space-separated."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return " ".join(_shown(v) for v in value)
    return str(value)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default as typed, ``(default: 322 322)``, unless it has none (None,
    False, an empty list) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        no_default = (default is None or default is False or default == argparse.SUPPRESS
                      or (isinstance(default, list | tuple) and not default))
        if text == argparse.SUPPRESS or no_default or "(default" in text or not action.option_strings:
            return action.help
        return f"{text} (default: {_shown(action.default).replace('%', '%%')})".lstrip()


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HelpFormatter that keeps the description's line breaks (a usage example, say)."""


_WITH_DEFAULTS = {argparse.HelpFormatter: HelpFormatter,
                  argparse.RawDescriptionHelpFormatter: RawDescriptionHelpFormatter}


def use_default_formatters(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subparser below it a formatter that shows defaults (plain argparse formatters
    are swapped for ours; others are left as they are)."""
    parser.formatter_class = _WITH_DEFAULTS.get(parser.formatter_class, parser.formatter_class)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_default_formatters(sub)


def add_subcommand(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name, ...)`` with the defaults-showing formatter."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return subparsers.add_parser(name, **kwargs)


def job_defaults(job: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of a job function (its signature is where they are written)."""
    return {name: p.default for name, p in inspect.signature(job).parameters.items()
            if p.default is not inspect.Parameter.empty}


def show_size(size: Sequence[int]) -> str:
    """An input size as typed after --resize: ``322 322``."""
    return f"{size[0]} {size[1]}"


def size_or_none(values: Sequence[int] | None) -> tuple[int, int] | None:
    """(H, W) from a parsed ``--resize H W``, None when not given."""
    return None if values is None else (int(values[0]), int(values[1]))


def add_model_arguments(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    resize_default: str | None = None,
    precision_default: Precision | None = DESCRIBER_DEFAULTS.precision,
    precision_unset: str = "the node parameter",
    precision: bool = True,
    backend: bool = True,
    weights_note: str = "",
) -> None:
    """--weights (required), --arch, --resize, --device, (``precision``) --precision and (``backend``) --backend,
    with the library's choices and defaults (DescriberConfig). ``resize_default`` says what no --resize means
    (default: the model's default input size); ``precision_unset`` what no --precision means when its default
    is None; ``weights_note`` is added to the --weights help."""
    d = DESCRIBER_DEFAULTS
    p.set_defaults(**{SAYS_SYNTHETIC_AT_END: True})
    p.add_argument("--weights", required=True, metavar=WEIGHTS_METAVAR, help=WEIGHTS_HELP + weights_note)
    p.add_argument("--arch", default=d.arch, help=ARCH_HELP)
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help=f"model input size, multiples of {PATCH_SIZE} "
                        f"(default: {resize_default or show_size(DEFAULT_INPUT_SIZE)})")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:1, ...")
    if precision:
        p.add_argument("--precision", default=None if precision_default is None else precision_default.value,
                       choices=PRECISION_CHOICES,
                       help="ViT backbone precision (region selection and local head stay fp32); auto: bf16 where "
                            "the device has it, else fp32" + ("" if precision_default is not None
                                                              else f" (default: {precision_unset})"))
    if backend:
        runs = ", ".join(f"{name} (--weights model{BACKEND_SUFFIX[name]})" for name in BACKENDS
                         if name in BACKEND_SUFFIX)
        p.add_argument("--backend", default=d.backend, choices=BACKENDS,
                       help=f"{d.backend} (--weights checkpoint), {runs}; see `fol-vpr export`")


def add_quiet_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-q/--quiet``; without it, progress bars are drawn only when stderr is a terminal (``progress``)."""
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars (without -q they are drawn only when stderr is a terminal)")


def node_defaults() -> Any:
    """The node's parameter defaults (``node.params.NodeParams``; config/localize.yaml says the same, checked by
    test_config_file): what commands share with the node (keyframe spacing, rerank_k), imported on use."""
    from ..node.params import NodeParams

    return NodeParams()


def synthetic_banner(text: str) -> str:
    """The one loud warning of a synthetic run (printed at the end of a command): 'SYNTHETIC WEIGHTS: text'."""
    return banner(f"SYNTHETIC WEIGHTS: {text}")


class SyntheticLogFilter(logging.Filter):
    """Drops the describer's 'SYNTHETIC WEIGHTS' log line: a command prints that warning once, at its end."""

    PREFIX = SYNTHETIC_WARNING.partition("{")[0]

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.PREFIX)


def archs_and_size(names: Sequence[str] | None, resize: Sequence[int] | None
                   ) -> tuple[list[str] | None, tuple[int, int] | None]:
    """Architectures and the one input size from ``--archs`` (names or presets) and ``--resize``; presets
    fix the size, so they must agree with each other and with --resize."""
    size = size_or_none(resize)
    if not names:
        return None, size
    archs = []
    for name in names:
        arch, size = resolve_preset(name, size)
        archs.append(arch)
    return archs, size


def model_arch_and_size(a: argparse.Namespace) -> tuple[str, tuple[int, int] | None]:
    """(architecture, input size or None) from --arch and --resize; a preset --arch gives both."""
    return resolve_preset(a.arch, size_or_none(a.resize))
