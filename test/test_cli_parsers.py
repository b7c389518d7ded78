"""The `fol-vpr` parsers: every --help names the defaults; presets set arch and input size; choices and
defaults come from the library."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from fol_vpr_ros.cli import build_parser, main
from fol_vpr_ros.cli.common import archs_and_size, model_arch_and_size
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.export.runners import BACKENDS, DEFAULT_BACKEND
from fol_vpr_ros.mapping import INDEX_KINDS
from fol_vpr_ros.model import DEFAULT_INPUT_SIZE, PRESETS, resolve_preset
from fol_vpr_ros.pipeline.rerank import DEFAULT_THRESHOLD
from fol_vpr_ros.precision import Precision

# Subcommands whose parser lives in a file of another helper of issue #10 (options without help text
# cannot show their default); their branch gives each option a help text.
PENDING: dict[tuple[str, ...], str] = {}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, e.g. ("describe",), ("map", "check"), ("export", "onnx")."""
    out = [prefix]
    for name, sub in _subparsers(parser).items():
        out += _commands(sub, (*prefix, name))
    return out


def _parser_of(command: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in command:
        parser = _subparsers(parser)[name]
    return parser


def _help_entries(text: str) -> dict[str, str]:
    """Option help of a --help text by its first option string, the wrapped lines joined."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^  \S", line):
            current = line.split()[0].rstrip(",")
            entries[current] = line.strip()
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def _has_default(action: argparse.Action) -> bool:
    d = action.default
    return (bool(action.option_strings) and action.help != argparse.SUPPRESS and d is not None and d is not False
            and d != argparse.SUPPRESS and not (isinstance(d, list | tuple) and not d))


COMMANDS = [pytest.param(c, id=" ".join(c) or "fol-vpr",
                         marks=[pytest.mark.xfail(strict=True, reason=PENDING[c])] if c in PENDING else [])
            for c in _commands(build_parser())]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    missing = []
    for action in _parser_of(command)._actions:
        if _has_default(action):
            entry = entries.get(action.option_strings[0], "")
            if "(default:" not in entry:
                missing.append(f"{action.option_strings[0]} (default {action.default!r}): {entry!r}")
    assert not missing, f"fol-vpr {' '.join(command)} --help hides defaults:\n" + "\n".join(missing)


def test_help_through_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "fol_vpr_ros.cli", "describe", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"(default: an exported model's own size, else {DEFAULT_INPUT_SIZE[0]} {DEFAULT_INPUT_SIZE[1]})" in text
    assert "(default: fp32)" in text and "(default: torch)" in text


def test_choices_and_defaults_come_from_the_library():
    describe = _parser_of(("describe",))
    actions = {a.dest: a for a in describe._actions}
    assert tuple(actions["precision"].choices) == tuple(p.value for p in Precision)
    assert tuple(actions["backend"].choices) == BACKENDS and actions["backend"].default == DEFAULT_BACKEND
    evaluate = {a.dest: a for a in _parser_of(("evaluate",))._actions}
    assert evaluate["threshold"].default == pytest.approx(DEFAULT_THRESHOLD)
    build = {a.dest: a for a in _parser_of(("build-map",))._actions}
    assert build["index"].default in INDEX_KINDS
    assert all(kind in " ".join(build["index"].help.split()) for kind in INDEX_KINDS)
    train = {a.dest: a for a in _parser_of(("train",))._actions}
    assert tuple(train["resize"].default) == DEFAULT_INPUT_SIZE


def test_resolve_preset():
    for name, (arch, size) in PRESETS.items():
        assert resolve_preset(name) == (arch, size)
        assert resolve_preset(name, size) == (arch, size)
    assert resolve_preset("vitb14-322") == ("vitb14", DEFAULT_INPUT_SIZE)
    assert resolve_preset("vits14") == ("vits14", None)
    assert resolve_preset("auto", [224, 224]) == ("auto", (224, 224))
    with pytest.raises(ConfigError, match="vitb14-322 is vitb14 at 322 x 322"):
        resolve_preset("vitb14-322", (224, 224))


def test_arch_preset_on_the_command_line(tmp_path, capsys):
    parse = build_parser().parse_args
    a = parse(["describe", "--weights", "random:0", "--arch", "vitl14-504", "--out", str(tmp_path / "d.npz"), "x"])
    assert model_arch_and_size(a) == ("vitl14", (504, 504))
    a = parse(["build-map", "--weights", "random:0", "--arch", "vitb14", "--resize", "224", "224", "--out", "m"])
    assert model_arch_and_size(a) == ("vitb14", (224, 224))
    assert main(["describe", "--weights", "random:0", "--arch", "vitb14-322", "--resize", "224", "224",
                 "--out", str(tmp_path / "d.npz"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fol-vpr describe: error: arch vitb14-322 is vitb14 at 322 x 322") and "--resize" in err
    assert not (tmp_path / "d.npz").exists()


def test_bench_archs_and_presets():
    assert archs_and_size(None, None) == (None, None)
    assert archs_and_size(None, [224, 224]) == (None, (224, 224))
    assert archs_and_size(["vits14", "vitb14-322"], None) == (["vits14", "vitb14"], DEFAULT_INPUT_SIZE)
    assert archs_and_size(["vits14-322", "vitb14-322"], None) == (["vits14", "vitb14"], DEFAULT_INPUT_SIZE)
    with pytest.raises(ConfigError):
        archs_and_size(["vits14-322", "vitl14-504"], None)
    with pytest.raises(ConfigError):
        archs_and_size(["vitb14-322"], [224, 224])
