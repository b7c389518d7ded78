"""The `fol-vpr` command line: argument parsing only; each subcommand calls one typed job function."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
