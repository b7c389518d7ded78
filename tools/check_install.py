#!/usr/bin/env python3
"""Dry-run installs (pip --dry-run --report): the user ranges resolve on every supported CPython, the
CPU path pulls no nvidia-* package, and the CI lock resolves with the ROS pins.

    python tools/check_install.py [--pip 'python3 -m pip'] [--index-url URL] [--report-dir DIR]

Run by `make check-install` (part of `make test`). Needs pip >= 22.2 and the network (PyPI). The user
cases run with pip's configuration files and PIP_* settings dropped (what a newcomer's pip sees), the
lock cases with this machine's (what tools/ros_env.sh installs). Exit 1 with one line per failure.

torch is checked apart from the rest: the README installs it first, from the index of the build wanted.
Its CPU wheel is resolved (with its dependencies) from the PyTorch CPU index when that answers; PyPI's
default (CUDA) wheel is looked up with `pip index versions` only, because an index without PEP 658
metadata makes a dry run download the whole CUDA stack (several GB) just to read it.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_REQUIREMENTS = ROOT / "requirements-dev.txt"  # requirements.txt + the extras: the widest user install
RUNTIME_REQUIREMENTS = ROOT / "requirements.txt"
LOCK = ROOT / "requirements-ci.txt"
ROS_DISTROS = ("jazzy", "kilted")
# CPython versions setup.py's python_requires admits and the ROS 2 distros use (Humble 3.10, Jazzy and
# Kilted 3.12 on Ubuntu 24.04); test/test_install_ranges.py ties the first one to python_requires.
PYTHON_VERSIONS = ("3.10", "3.11", "3.12")
LOCK_PYTHON = "3.11"
HUMBLE_PYTHON = "3.10"
HUMBLE_EXTRA = "numpy<2"  # compiled ROS 2 Humble packages are built against numpy 1.x
JETSON_PYTHON = "3.10"  # JetPack 6 is Ubuntu 22.04
# JetPack 6 ships glibc 2.35: every manylinux tag up to it, oldest wheels last.
JETSON_PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(35, 16, -1)),
    "manylinux2014_aarch64",
    "linux_aarch64",
)
DEFAULT_INDEX = "https://pypi.org/simple"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MIN_PIP = (22, 2)  # --dry-run and --report
PIP_TIMEOUT_S = 150
PROBE_TIMEOUT_S = 5
WORKERS = 4
# PIP_* settings a user case keeps: how to reach an index, not where packages come from.
KEPT_PIP_SETTINGS = {
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_TRUSTED_HOST", "PIP_RETRIES",
}
CUDA_PREFIX = "nvidia-"


class Outcome(enum.Enum):
    """How one dry run ended."""

    RESOLVED = "resolved"
    FAILED = "FAILED"
    SKIPPED = "skipped"


class Check(enum.Enum):
    """What one case checks."""

    RANGES = "ranges"  # the user ranges without torch resolve, and pull no nvidia-* package
    TORCH_CPU = "torch cpu"  # torch in range resolves from the PyTorch CPU index, with no nvidia-* package
    TORCH_PYPI = "torch pypi"  # PyPI has a torch wheel in range for this Python (the CUDA build on x86_64)
    LOCK = "lock"  # the CI lock + a distro's ROS pins resolve, torch at the lock's pin, no nvidia-* package


@dataclass(frozen=True)
class Case:
    """One look-up or dry-run install to check."""

    name: str
    python: str
    check: Check
    requirements: tuple[str, ...] = ()  # pip arguments: -r FILE, -c FILE, extra requirement strings
    platforms: tuple[str, ...] = ()

    @property
    def platform_label(self) -> str:
        return "aarch64" if any("aarch64" in p for p in self.platforms) else "x86_64"

    @property
    def user(self) -> bool:
        """A newcomer's pip (no configuration, an explicit index), not this machine's (the lock cases)."""
        return self.check is not Check.LOCK


@dataclass
class Result:
    """What one case resolved to, or why it did not."""

    case: Case
    outcome: Outcome
    seconds: float = 0.0
    packages: dict[str, str] = field(default_factory=dict)  # name -> version
    torch: str = ""  # which torch the case saw, for the table
    problem: str = ""

    @property
    def cuda_packages(self) -> list[str]:
        return cuda_packages(self.packages)


def cuda_packages(packages: dict[str, str]) -> list[str]:
    """The nvidia-* packages (CUDA runtime wheels) among resolved package names."""
    return sorted(name for name in packages if name.startswith(CUDA_PREFIX))


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def report_packages(report: dict) -> dict[str, str]:
    """name -> version of everything a pip --report would install."""
    return {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in report.get("install", [])}


def pip_error_line(output: str) -> str:
    """The line of pip's output that says why resolution failed: its last telling ERROR line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    # "No matching distribution found for X" / "Cannot install X and Y ..." beat the generic lines
    generic = ("ERROR: Ignored the following", "ERROR: ResolutionImpossible")
    telling = [line for line in errors if not line.startswith(generic)]
    if telling or errors:
        return (telling or errors)[-1]
    return lines[-1] if lines else "pip printed nothing"


def newest_listed(output: str, name: str) -> str | None:
    """The newest version `pip index versions NAME` printed ("torch (2.14.1)"), None when it found none."""
    match = re.search(rf"^{re.escape(name)} \(([^)]+)\)", output, re.MULTILINE)
    return match.group(1) if match else None


def in_range(requirement: str, version: str) -> bool:
    """Whether a version satisfies a requirement such as "torch>=2.5.0a0" (pre-releases count)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare venv: pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def pinned_version(path: Path, name: str) -> str:
    """The version `name==X` pins in a requirements/constraints file."""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==\s*(\S+)", line)
        if match and normalize(match.group(1)) == normalize(name):
            return match.group(2)
    raise SystemExit(f"check_install: {path.name} pins no {name}")


def runtime_torch_requirement() -> str:
    """The torch range of requirements.txt (the one a user's pip must satisfy)."""
    for raw in RUNTIME_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if re.match(r"torch\b", line):
            return line
    raise SystemExit(f"check_install: {RUNTIME_REQUIREMENTS.name} has no torch requirement")


def without_torch(path: Path, out_dir: Path) -> Path:
    """A copy of a requirements file (and the files it -r includes) with torch removed."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if re.match(r"torch\b", line):
            continue
        include = re.fullmatch(r"-r\s+(\S+)", line)
        if include:
            line = f"-r {without_torch(path.parent / include.group(1), out_dir)}"
        lines.append(line)
    out = out_dir / f"{path.stem}-without-torch.txt"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def user_env() -> dict[str, str]:
    """The environment of a user case: no pip configuration files, no PIP_* sources (find-links, extra indexes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEPT_PIP_SETTINGS}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def reachable(url: str) -> bool:
    """Whether an index URL answers (a HEAD request; file:// URLs must exist)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path)).exists()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pip_version(pip: list[str]) -> tuple[int, ...]:
    """pip's version as a tuple, from `pip --version`."""
    out = subprocess.run([*pip, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"pip (\d+)\.(\d+)", out)
    if not match:
        raise SystemExit(f"check_install: `{shlex.join(pip)} --version` did not name a pip version: {out.strip()!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Runner:
    """Runs the pip look-ups and dry runs of the cases."""

    pip: list[str]
    index_url: str
    work: Path
    cpu_index: str | None  # None: the PyTorch CPU index is not reachable (or not wanted)
    interpreter: str  # "3.11": the Python the lock cases run under (they build sdists, so no --python-version)

    def pip_run(self, case: Case, args: list[str]) -> tuple[subprocess.CompletedProcess[str] | None, float]:
        """Run pip for a case (a user case: no configuration, its index, its Python and platform)."""
        cmd = [*self.pip, *args[:2], "--disable-pip-version-check", "--no-input"]
        if case.user:
            cmd += ["--index-url", self.index_url, "--python-version", case.python, "--only-binary=:all:"]
            for platform in case.platforms:
                cmd += ["--platform", platform]
        cmd += args[2:]  # a later --index-url overrides the one above
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False,
                                  env=user_env() if case.user else None, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - start
        return proc, time.monotonic() - start

    def dry_run(self, case: Case, args: list[str]) -> tuple[dict[str, str], str, float]:
        """One `pip install --dry-run --report`; (packages, error line or "", seconds)."""
        report = self.work / f"{case.name}.json"
        proc, seconds = self.pip_run(case, ["install", "--dry-run", "--ignore-installed", "--quiet",
                                            "--report", str(report), *args])
        if proc is None:
            return {}, f"pip took more than {PIP_TIMEOUT_S} s", seconds
        if proc.returncode != 0 or not report.is_file():
            return {}, pip_error_line(proc.stdout + "\n" + proc.stderr), seconds
        return report_packages(json.loads(report.read_text(encoding="utf-8"))), "", seconds

    def run(self, case: Case) -> Result:
        """Check one case."""
        if case.check is Check.LOCK and case.python != self.interpreter:
            return Result(case, Outcome.SKIPPED, torch=f"lock is for {case.python}, this pip runs {self.interpreter}")
        if case.check is Check.TORCH_PYPI:
            return self.torch_on_pypi(case)
        if case.check is Check.TORCH_CPU and self.cpu_index is None:
            return Result(case, Outcome.SKIPPED, torch=f"{TORCH_CPU_INDEX} unreachable")
        args = list(case.requirements)
        if case.check is Check.TORCH_CPU:
            args = ["--index-url", str(self.cpu_index), runtime_torch_requirement()]
        elif case.check is Check.LOCK and self.cpu_index is not None:
            args += ["--extra-index-url", self.cpu_index]  # as tools/ros_env.sh falls back to it
        packages, error, seconds = self.dry_run(case, args)
        if error:
            return Result(case, Outcome.FAILED, seconds, problem=error)
        result = Result(case, Outcome.RESOLVED, seconds, packages, packages.get("torch", "left out"))
        problems = []
        if case.check is Check.RANGES and "torch" in packages:
            problems.append(f"torch {packages['torch']} came in although this case leaves torch out")
        if case.check is Check.LOCK:
            want = pinned_version(LOCK, "torch")
            if packages.get("torch", "").split("+", 1)[0] != want:
                problems.append(f"torch resolved to {packages.get('torch')}, the lock pins {want}")
        if case.check is Check.TORCH_CPU and not in_range(runtime_torch_requirement(), packages.get("torch", "0")):
            problems.append(f"the CPU index has no torch for {runtime_torch_requirement()}")
        if result.cuda_packages:
            cuda = result.cuda_packages
            problems.append(f"{len(cuda)} nvidia-* packages ({', '.join(cuda[:3])}, ...) "
                            "where only the CPU torch is promised")
        if problems:
            result.outcome, result.problem = Outcome.FAILED, "; ".join(problems)
        return result

    def torch_on_pypi(self, case: Case) -> Result:
        """The newest torch wheel PyPI has for this Python and platform must satisfy requirements.txt's range."""
        proc, seconds = self.pip_run(case, ["index", "versions", "torch"])
        if proc is None:
            return Result(case, Outcome.FAILED, seconds, problem=f"pip took more than {PIP_TIMEOUT_S} s")
        newest = newest_listed(proc.stdout, "torch")
        if proc.returncode != 0 or newest is None:
            return Result(case, Outcome.FAILED, seconds, problem=pip_error_line(proc.stdout + "\n" + proc.stderr))
        wanted = runtime_torch_requirement()
        label = f"{newest} (PyPI default: CUDA)" if case.platform_label == "x86_64" else f"{newest} (PyPI)"
        if not in_range(wanted, newest):
            return Result(case, Outcome.FAILED, seconds, torch=label,
                          problem=f"newest torch on PyPI {newest} is outside {wanted}")
        return Result(case, Outcome.RESOLVED, seconds, torch=label)


def cases(work: Path) -> list[Case]:
    """Per Python: the ranges, torch's CPU wheel, PyPI's torch; Humble with numpy<2; Jetson; the CI lock."""
    ranges = ("-r", str(without_torch(USER_REQUIREMENTS, work)))
    out = []
    for python in PYTHON_VERSIONS:
        out.append(Case(f"ranges-{python}", python, Check.RANGES, ranges))
        out.append(Case(f"torch-cpu-{python}", python, Check.TORCH_CPU))
        out.append(Case(f"torch-pypi-{python}", python, Check.TORCH_PYPI))
    out.append(Case(f"humble-{HUMBLE_PYTHON}", HUMBLE_PYTHON, Check.RANGES, (*ranges, HUMBLE_EXTRA)))
    out.append(Case(f"jetson-{JETSON_PYTHON}", JETSON_PYTHON, Check.RANGES, ranges, JETSON_PLATFORMS))
    for distro in ROS_DISTROS:
        out.append(Case(f"lock-{distro}", LOCK_PYTHON, Check.LOCK, ("-r", str(USER_REQUIREMENTS), "-c", str(LOCK),
                                                                   "-r", str(ROOT / f"requirements-ros-{distro}.txt"))))
    return out


def table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    rows = [("case", "python", "platform", "torch", "result", "packages", "nvidia-*", "seconds")]
    for r in results:
        rows.append((r.case.name, r.case.python, r.case.platform_label, r.torch or "-", r.outcome.value,
                     str(len(r.packages)) if r.packages else "-",
                     str(len(r.cuda_packages)) if r.packages else "-", f"{r.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip", default=f"{shlex.quote(sys.executable)} -m pip", help="pip command (>= 22.2)")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX),
                        help="the user cases' index (default: $PIP_INDEX_URL or PyPI)")
    parser.add_argument("--torch-cpu-index", default=TORCH_CPU_INDEX,
                        help="the PyTorch CPU wheel index; its torch is resolved when it answers")
    parser.add_argument("--no-torch-index", action="store_true", help="do not try the PyTorch CPU index")
    parser.add_argument("--report-dir", type=Path, help="keep pip's JSON reports and summary.json here")
    args = parser.parse_args(argv)

    pip = shlex.split(args.pip)
    version = pip_version(pip)
    if version < MIN_PIP:
        print(f"check_install: {args.pip} is pip {'.'.join(map(str, version))}; --dry-run --report needs pip >= "
              f"{'.'.join(map(str, MIN_PIP))} (python -m pip install --upgrade pip)", file=sys.stderr)
        return 1
    interpreter = subprocess.run([*pip, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"\(python (\d+\.\d+)\)", interpreter)
    cpu_index = None if args.no_torch_index else args.torch_cpu_index
    if cpu_index is not None and not reachable(cpu_index.rstrip("/") + "/torch/"):
        print(f"check_install: {cpu_index} is not reachable from here: torch's CPU wheel is not resolved "
              "(the ranges without torch still must pull no nvidia-* package)")
        cpu_index = None

    with tempfile.TemporaryDirectory(prefix="check_install-") as tmp:
        work = Path(args.report_dir) if args.report_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runner = Runner(pip, args.index_url, work, cpu_index, match.group(1) if match else "?")
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            results = list(pool.map(runner.run, cases(work)))
        total = time.monotonic() - start
        print(table(results))
        print(f"check_install: {len(results)} dry runs in {total:.0f} s (index {args.index_url})")
        if args.report_dir:
            summary = [{"case": r.case.name, "python": r.case.python, "platform": r.case.platform_label,
                        "check": r.case.check.value, "torch": r.torch, "result": r.outcome.value,
                        "packages": r.packages, "seconds": round(r.seconds, 1), "problem": r.problem}
                       for r in results]
            (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    for r in failed:
        print(f"check_install: FAIL {r.case.name} (Python {r.case.python}, {r.case.platform_label}): {r.problem}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
