"""Progress bars: drawn only when stderr is a terminal and -q is not given, all made by fol_vpr_ros.progress."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import pytest

from fol_vpr_ros.cli import main
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.progress import progress_bar, shows_progress

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "fol_vpr_ros"
BAR = "|"  # tqdm draws '  0%|          | 0/3'


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (as stderr in an interactive shell)."""

    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return True


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=4), tmp_path_factory.mktemp("w") / "tiny.pth"))


def test_shows_progress_only_on_a_terminal():
    assert shows_progress(True, Terminal())
    assert not shows_progress(False, Terminal())  # -q
    assert not shows_progress(True, io.StringIO())  # a pipe, a log file, pytest's capture
    closed = Terminal()
    closed.close()
    assert not shows_progress(True, closed)


def test_progress_bar_draws_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with progress_bar(total=3, desc="work", unit="img", file=stream) as bar:
            bar.update(3)
    assert "work" in tty.getvalue() and "3/3" in tty.getvalue()
    assert pipe.getvalue() == ""
    quiet = Terminal()
    assert list(progress_bar(range(4), desc="q", enabled=False, file=quiet)) == [0, 1, 2, 3]
    assert quiet.getvalue() == ""


def _describe(ckpt, shared_data, tmp_path, *extra):
    images = sorted((shared_data / "gardenspoint_sample10_vpr_tutorial" / "query").glob("*.jpg"))[:2]
    return main(["describe", "--weights", ckpt, "--resize", "224", "224", "--batch-size", "1", *extra,
                 *map(str, images), "--out", str(tmp_path / "d.npz")])


def test_cli_bars_follow_the_terminal(ckpt, shared_data, tmp_path, capsys, monkeypatch):
    """A real `describe`: no bar into a captured (non-terminal) stderr, a bar on a terminal, none there with -q."""
    assert _describe(ckpt, shared_data, tmp_path) == 0
    assert BAR not in capsys.readouterr().err
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    assert _describe(ckpt, shared_data, tmp_path) == 0
    assert "describe" in tty.getvalue() and "2/2" in tty.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert _describe(ckpt, shared_data, tmp_path, "-q") == 0
    assert quiet.getvalue() == ""


def _imports_tqdm(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tqdm" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tqdm":
            return True
    return False


def test_every_bar_is_made_by_the_progress_module():
    users = sorted(p.relative_to(PACKAGE_DIR).as_posix() for p in PACKAGE_DIR.rglob("*.py") if _imports_tqdm(p))
    assert users == ["progress.py"], f"create bars with fol_vpr_ros.progress.progress_bar, not tqdm: {users}"


def test_every_command_with_bars_takes_quiet():
    from fol_vpr_ros.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("describe", "build-map", "evaluate", "evaluate-bag", "demo", "demo-images", "train", "bench",
                 "data"):
        options = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"-q", "--quiet"} <= options, name
