"""`fol-vpr` command line: one parser per subcommand (``add_X_parser`` in cli/), then the command runs."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import FolVprError
from .bench import add_bench_parser
from .build_map import add_build_map_parser
from .common import SAYS_SYNTHETIC_AT_END, HelpFormatter, SyntheticLogFilter, use_default_formatters
from .data import add_data_parser
from .demo_images import add_demo_images_parser
from .describe import add_describe_parser
from .evaluate import add_evaluate_parser
from .evaluate_bag import add_demo_bags_parser, add_evaluate_bag_parser
from .export import add_export_parser
from .ground_truth import add_ground_truth_parser
from .map_check import add_map_parser
from .node import add_node_parser
from .train import add_train_parser

__all__ = ["build_parser", "main"]

log = logging.getLogger("fol_vpr_ros")


def build_parser() -> argparse.ArgumentParser:
    """The `fol-vpr` parser: every subcommand, each parser's help showing its defaults."""
    parser = argparse.ArgumentParser(prog="fol-vpr", description="FoL visual place recognition tools",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"fol-vpr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_describe_parser(sub)
    add_demo_images_parser(sub)
    add_build_map_parser(sub)
    add_evaluate_parser(sub)
    add_map_parser(sub)
    add_ground_truth_parser(sub)
    add_evaluate_bag_parser(sub)
    add_demo_bags_parser(sub, name="demo")
    add_train_parser(sub)
    add_node_parser(sub)
    add_data_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    use_default_formatters(parser)  # also the parsers of modules that do not set a formatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; 2 for bad input (one line on stderr), 130 when interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    if not args.verbose:  # other packages' deprecations are for their developers, not for this command's user
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("default", category=DeprecationWarning, module=r"fol_vpr_ros(\.|$)")
    # commands that end with a synthetic banner announce a synthetic model once, not each time one is loaded
    describer_log, synthetic_once = logging.getLogger("fol_vpr_ros.pipeline.describe"), SyntheticLogFilter()
    if getattr(args, SAYS_SYNTHETIC_AT_END, False):
        describer_log.addFilter(synthetic_once)
    try:
        return int(args.func(args) or 0)
    except FolVprError as exc:
        print(f"fol-vpr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        describer_log.removeFilter(synthetic_once)


if __name__ == "__main__":
    sys.exit(main())
