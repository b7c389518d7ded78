"""The install files agree: setup.py's ranges = requirements.txt / requirements-dev.txt, every range is pinned
in the CI lock (requirements-ci.txt) inside the range, the lock agrees with the ROS pins, torch stays 2.13.0.

No network and no pip here: `make check-install` (tools/check_install.py) resolves the ranges against PyPI.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "requirements.txt"
DEV = ROOT / "requirements-dev.txt"
LOCK = ROOT / "requirements-ci.txt"
ROS_PINS = sorted(ROOT.glob("requirements-ros-*.txt"))
CHECK_SCRIPT = ROOT / "tools" / "check_install.py"
TORCH_PIN = "2.13.0"  # the CPU wheel on disk; a newer torch would be the multi-GB CUDA build
FORBIDDEN = {"torchvision", "timm"}


def _lines(path: Path) -> list[str]:
    """Requirement lines of a pip requirements file: comments and blanks dropped."""
    return [line for raw in path.read_text(encoding="utf-8").splitlines() if (line := raw.split("#", 1)[0].strip())]


def _requirements(path: Path) -> dict[str, Requirement]:
    """name -> requirement of a requirements file, without the -r/-c lines; fails on a repeated name."""
    out: dict[str, Requirement] = {}
    for line in _lines(path):
        if line.startswith("-"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in out, f"{path.name}: {name} is listed twice"
        out[name] = req
    return out


def _pins(path: Path) -> dict[str, str]:
    """name -> version of a file of exact pins; fails on anything but name==version."""
    pins = {}
    for name, req in _requirements(path).items():
        (spec,) = req.specifier
        assert spec.operator == "==" and "*" not in spec.version and not req.marker, (
            f"{path.name}: {req} is not an exact pin (name==version)"
        )
        pins[name] = spec.version
    return pins


@cache
def _setup_kwargs() -> dict[str, object]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            kwargs = {}
            for kw in node.keywords:
                if kw.arg in {"install_requires", "extras_require", "python_requires"}:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
            return kwargs
    raise AssertionError("setup.py has no setup(...) call")


def _as_map(requirements: list[str]) -> dict[str, str]:
    return {canonicalize_name(Requirement(r).name): str(Requirement(r)) for r in requirements}


def test_requirements_txt_is_setup_install_requires():
    setup = _as_map(_setup_kwargs()["install_requires"])
    listed = {name: str(req) for name, req in _requirements(RUNTIME).items()}
    assert listed == setup, "requirements.txt and setup.py install_requires differ"


def test_requirements_dev_is_requirements_txt_plus_every_extra():
    assert "-r requirements.txt" in _lines(DEV), "requirements-dev.txt must include -r requirements.txt"
    extras = _setup_kwargs()["extras_require"]
    setup = _as_map([req for group in extras.values() for req in group])
    listed = {name: str(req) for name, req in _requirements(DEV).items()}
    assert listed == setup, "requirements-dev.txt and setup.py extras_require differ"


def test_every_range_is_pinned_in_the_lock_inside_its_range():
    pins = _pins(LOCK)
    problems = []
    for path in (RUNTIME, DEV):
        for name, req in _requirements(path).items():
            if name not in pins:
                problems.append(f"{name} ({path.name}) has no pin in requirements-ci.txt")
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"requirements-ci.txt pins {name}=={pins[name]}, outside {path.name}'s {req}")
    assert not problems, problems


def test_lock_keeps_the_cpu_torch_and_no_vision_packages():
    pins = _pins(LOCK)
    assert pins.get("torch") == TORCH_PIN, f"requirements-ci.txt must pin torch=={TORCH_PIN} (the CPU wheel on disk)"
    for path in (RUNTIME, DEV, LOCK, *ROS_PINS):
        names = set(_requirements(path))
        assert not names & FORBIDDEN, f"{path.name} lists {sorted(names & FORBIDDEN)}"
        assert not any(n.startswith("nvidia-") for n in names), f"{path.name} lists CUDA runtime packages"
    setup_names = {canonicalize_name(Requirement(r).name) for r in _setup_kwargs()["install_requires"]}
    assert not setup_names & FORBIDDEN


@pytest.mark.parametrize("ros_pins", ROS_PINS, ids=lambda p: p.name)
def test_lock_and_ros_pins_agree(ros_pins: Path):
    lock, ros = _pins(LOCK), _pins(ros_pins)
    differ = {name: (lock[name], ros[name]) for name in lock.keys() & ros.keys() if lock[name] != ros[name]}
    assert not differ, f"requirements-ci.txt and {ros_pins.name} pin different versions: {differ}"


def test_torch_range_admits_the_lock_and_jetpack_builds():
    torch = _requirements(RUNTIME)["torch"]
    assert torch.specifier.contains(TORCH_PIN + "+cpu"), f"{torch} refuses the CI's {TORCH_PIN}+cpu"
    # NVIDIA's JetPack wheels carry pre-release versions; an installed one must satisfy the range, or pip
    # would replace it with PyPI's torch (no Jetson GPU support).
    assert torch.specifier.contains("2.5.0a0+872d972e41.nv24.08", prereleases=True)
    assert not torch.specifier.contains("2.4.1"), "torch < 2.5 lacks torch.OutOfMemoryError / onnx.export(dynamo=)"


@cache
def _check_script():
    """tools/check_install.py as a module (registered first: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("check_install", CHECK_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_check_script_covers_every_python_setup_admits():
    check = _check_script()
    lowest = re.fullmatch(r">=\s*(3\.\d+)", _setup_kwargs()["python_requires"])
    assert lowest, "python_requires should be a plain lower bound (>=3.X)"
    assert check.PYTHON_VERSIONS[0] == lowest.group(1), "check_install.py must start at python_requires' minimum"
    minors = [int(v.split(".")[1]) for v in check.PYTHON_VERSIONS]
    assert minors == list(range(minors[0], minors[0] + len(minors))), "no CPython version may be skipped"
    assert SpecifierSet(_setup_kwargs()["python_requires"]).contains(check.LOCK_PYTHON)


def test_check_script_judges_pip_output():
    check = _check_script()
    report = {"install": [{"metadata": {"name": "Torch", "version": "2.15.0"}},
                          {"metadata": {"name": "nvidia_cublas", "version": "13.1"}},
                          {"metadata": {"name": "numpy", "version": "2.4.6"}}]}
    packages = check.report_packages(report)
    assert packages == {"torch": "2.15.0", "nvidia-cublas": "13.1", "numpy": "2.4.6"}
    assert check.cuda_packages(packages) == ["nvidia-cublas"]
    output = ("ERROR: Ignored the following versions that require a different python version: 2.4.6 Requires-Python"
              " >=3.11\n"
              "ERROR: Could not find a version that satisfies the requirement numpy==2.4.6 (from versions: 2.2.6)\n"
              "ERROR: No matching distribution found for numpy==2.4.6\n")
    assert check.pip_error_line(output) == "ERROR: No matching distribution found for numpy==2.4.6"
    conflict = ("ERROR: Cannot install numpy<2 and numpy>=2.4 because these package versions have conflicting"
                " dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io/\n")
    assert check.pip_error_line(conflict).startswith("ERROR: Cannot install numpy<2 and numpy>=2.4")
    assert check.newest_listed("torch (2.14.1)\nAvailable versions: 2.14.1, 2.14.0\n", "torch") == "2.14.1"
    assert check.newest_listed("ERROR: No matching distribution found for torch\n", "torch") is None


def test_check_script_leaves_torch_out_of_the_ranges_case(tmp_path: Path):
    check = _check_script()
    copy = check.without_torch(DEV, tmp_path)
    included = [line for line in _lines(copy) if line.startswith("-r ")]
    assert len(included) == 1
    runtime_copy = Path(included[0].split(None, 1)[1])
    assert "torch" not in _requirements(runtime_copy)
    assert set(_requirements(runtime_copy)) == set(_requirements(RUNTIME)) - {"torch"}
    assert set(_requirements(copy)) == set(_requirements(DEV))
