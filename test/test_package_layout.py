"""Static checks of the ROS 2 package layout: package.xml, CMakeLists.txt, msg/, scripts/, launch/, config/.

Runs without ROS: nothing here imports rclpy, launch or launch_ros; Python files are parsed with `ast`,
CMakeLists.txt with a small tokenizer. When colcon-ros (or catkin_pkg) is installed, the package is
also checked with it; otherwise those tests are skipped.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fol_vpr_ros"
PACKAGE_DIR = ROOT / PACKAGE
CMAKELISTS = ROOT / "CMakeLists.txt"
PACKAGE_XML = ROOT / "package.xml"
LAUNCH_FILE = ROOT / "launch" / "localize.launch.py"
CONFIG_FILE = ROOT / "config" / "localize.yaml"
DOC_FILE = ROOT / "docs" / "ros_build.md"

# Executables installed to lib/fol_vpr_ros (`ros2 run fol_vpr_ros <name>`) -> module whose main() they run.
EXECUTABLES = {
    "fol_vpr_node": f"{PACKAGE}.ros.rclpy_node",
    "fol_vpr": f"{PACKAGE}.cli",
    "train": f"{PACKAGE}.cli",
}
MSG_FILES_VAR = "FOL_VPR_MSG_FILES"
MSG_DEPENDENCIES_VAR = "FOL_VPR_MSG_DEPENDENCIES"

# Python modules that come from ROS packages -> rosdep keys that provide them (any one is enough).
ROS_PYTHON_MODULES: dict[str, tuple[str, ...]] = {
    name: (name,)
    for name in (
        "rclpy",
        "launch",
        "launch_ros",
        "launch_testing",
        "launch_testing_ros",
        "ament_index_python",
        "rosidl_runtime_py",
        "rpyutils",
        "cv_bridge",
        "image_geometry",
        "message_filters",
        "sensor_msgs_py",
        "tf2_py",
        "tf2_geometry_msgs",
        "tf_transformations",
        "rosbag2_py",
        "diagnostic_updater",
        "action_msgs",
        "builtin_interfaces",
        "diagnostic_msgs",
        "geometry_msgs",
        "lifecycle_msgs",
        "nav_msgs",
        "rcl_interfaces",
        "rosgraph_msgs",
        "sensor_msgs",
        "shape_msgs",
        "std_msgs",
        "std_srvs",
        "stereo_msgs",
        "tf2_msgs",
        "trajectory_msgs",
        "unique_identifier_msgs",
        "visualization_msgs",
    )
}
ROS_PYTHON_MODULES["tf2_ros"] = ("tf2_ros_py", "tf2_ros")  # the Python module lives in tf2_ros_py

# setup.py install_requires (pip names) -> rosdep key declared in package.xml. Requirements not listed
# here have no rosdep key everywhere (torch, faiss) and must be documented in docs/ros_build.md.
PIP_TO_ROSDEP = {
    "numpy": "python3-numpy",
    "pillow": "python3-pil",
    "tqdm": "python3-tqdm",
    "pyyaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "rosbags": "python3-rosbags-pip",
    "torch": "python3-torch",
    "faiss-cpu": "python3-faiss",
    "pyproj": "python3-pyproj",
    "opencv-python-headless": "python3-opencv",
}
# exec_depends no Python file imports, needed at run time all the same.
RUNTIME_ONLY = {"rosidl_default_runtime"}

LAUNCH_ARGUMENTS = {
    "params_file": None,  # default computed with get_package_share_directory
    "map": "",
    "weights": "",
    "image_topic": "image",
    "use_sim_time": "false",
    "namespace": "",
}

# Flattened parameter name -> type, for the parameters the node is written against.
# ROS 2 parameters are typed: 30 and 30.0 are different types.
CONFIG_PARAMETERS: dict[str, type] = {
    "weights": str,
    "arch": str,
    "input_size": list,
    "device": str,
    "map_path": str,
    "mode": str,
    "image_topic": str,
    "image_transport": str,
    "top_k": int,
    "rerank_k": int,
    "rerank_threshold": float,
    "min_rerank_score": float,
    "keyframe.min_interval_sec": float,
    "keyframe.min_distance_m": float,
    "keyframe.min_angle_deg": float,
    "exclusion.min_time_sec": float,
    "exclusion.min_keyframes": int,
    "loop_closure.consistent_hits": int,
    "frames.map": str,
    "publish_tf": bool,
    "lio_sam.enabled": bool,
    "qos.image.reliability": str,
    "qos.image.depth": int,
}
CONFIG_CHOICES = {
    "mode": {"localize", "loop_closure"},
    "image_transport": {"raw", "compressed"},
    "qos.image.reliability": {"best_effort", "reliable"},
}

MSG_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}


# --------------------------------------------------------------------------------------------------
# helpers: setup.py / __init__.py / package.xml
# --------------------------------------------------------------------------------------------------
def _module_constants(tree: ast.Module) -> dict[str, object]:
    constants: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                constants[node.targets[0].id] = ast.literal_eval(node.value)
    return constants


def _resolve(node: ast.AST, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


@cache
def _setup_kwargs() -> dict[str, object]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    constants = _module_constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {kw.arg: _resolve(kw.value, constants) for kw in node.keywords if kw.arg}
    raise AssertionError("setup.py has no setup(...) call")


def _package_version() -> str:
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    version = _module_constants(tree).get("__version__")
    assert isinstance(version, str), f"{PACKAGE}/__init__.py defines no __version__ string"
    return version


@cache
def _package_xml() -> ET.Element:
    return ET.parse(PACKAGE_XML).getroot()


def _xml_dependencies(*tags: str) -> list[str]:
    return [(element.text or "").strip() for tag in tags for element in _package_xml().findall(tag)]


def _run_dependencies() -> set[str]:
    return set(_xml_dependencies("depend", "exec_depend"))


# --------------------------------------------------------------------------------------------------
# helpers: CMakeLists.txt (enough of CMake's syntax for this file: commands, quoted args, comments)
# --------------------------------------------------------------------------------------------------
def _strip_cmake_comments(text: str) -> str:
    out, in_quote, i = [], False, 0
    while i < len(text):
        char = text[i]
        if in_quote:
            out.append(char)
            if char == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
            out.append(char)
        elif char == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


@cache
def _cmake_commands() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """All commands of CMakeLists.txt in order, as (lower-case name, arguments without quotes)."""
    text = _strip_cmake_comments(CMAKELISTS.read_text(encoding="utf-8"))
    commands = []
    for match in re.finditer(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", text):
        if commands and match.start() < commands[-1][2]:
            continue  # inside the arguments of the previous command
        depth, i, in_quote = 1, match.end(), False
        while depth and i < len(text):
            char = text[i]
            if in_quote:
                if char == "\\":
                    i += 1
                elif char == '"':
                    in_quote = False
            elif char == '"':
                in_quote = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            i += 1
        assert depth == 0, f"CMakeLists.txt: unbalanced parentheses after {match.group(1)}("
        body = text[match.end() : i - 1]
        arguments = tuple(
            token[1:-1] if token.startswith('"') else token
            for token in re.findall(r'"(?:[^"\\]|\\.)*"|[^\s"]+', body)
        )
        commands.append((match.group(1).lower(), arguments, i))
    return tuple((name, arguments) for name, arguments, _ in commands)


def _cmake_calls(name: str) -> list[tuple[str, ...]]:
    return [arguments for command, arguments in _cmake_commands() if command == name]


def _cmake_index(name: str) -> int:
    names = [command for command, _ in _cmake_commands()]
    assert name in names, f"CMakeLists.txt does not call {name}()"
    return names.index(name)


def _cmake_list(variable: str) -> list[str]:
    """Value of `set(variable ...)` (the last one); [] for `set(variable)`."""
    values = [arguments[1:] for arguments in _cmake_calls("set") if arguments and arguments[0] == variable]
    assert values, f"CMakeLists.txt does not set({variable} ...)"
    return [value for value in values[-1] if value not in ("PARENT_SCOPE",)]


def _project_name() -> str:
    (arguments,) = _cmake_calls("project")
    return arguments[0]


def _install_calls(kind: str) -> list[tuple[list[str], str]]:
    """install(<kind> items... DESTINATION dest ...) -> [(items, dest)] with ${PROJECT_NAME} expanded."""
    result = []
    for arguments in _cmake_calls("install"):
        if not arguments or arguments[0] != kind:
            continue
        arguments = [argument.replace("${PROJECT_NAME}", _project_name()) for argument in arguments]
        assert "DESTINATION" in arguments, f"install({' '.join(arguments)}) has no DESTINATION"
        end = arguments.index("DESTINATION")
        result.append((arguments[1:end], arguments[end + 1]))
    return result


# --------------------------------------------------------------------------------------------------
# helpers: msg files, Python sources
# --------------------------------------------------------------------------------------------------
def _msg_files() -> list[str]:
    return sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "msg").glob("*.msg"))


def _msg_field_types(text: str) -> list[str]:
    """Base types of the fields and constants of a .msg file (array and string bounds removed)."""
    types = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        type_name = line.split()[0]
        type_name = re.sub(r"\[[^\]]*\]$", "", type_name)
        type_name = re.sub(r"<=\d+$", "", type_name)
        types.append(type_name)
    return types


def _msg_type_problems(text: str, own_messages: set[str], dependencies: set[str]) -> list[str]:
    problems = []
    for type_name in _msg_field_types(text):
        if type_name in MSG_PRIMITIVES:
            continue
        if "/" in type_name:
            package = type_name.split("/", 1)[0]
            if package != PACKAGE and package not in dependencies:
                problems.append(f"{type_name}: package {package} is not a declared dependency")
        elif type_name == "Header":
            problems.append("Header: ROS 2 needs std_msgs/Header")
        elif type_name not in own_messages:
            problems.append(f"{type_name}: no msg/{type_name}.msg")
    return problems


def _python_sources() -> list[Path]:
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))
    scripts = ROOT / "scripts"
    if scripts.is_dir():
        for path in sorted(scripts.iterdir()):
            if path.is_file() and (path.suffix == ".py" or _has_python_shebang(path)):
                files.append(path)
    return [path for path in files if "__pycache__" not in path.parts]


def _has_python_shebang(path: Path) -> bool:
    with path.open("rb") as handle:
        first = handle.readline()
    return first.startswith(b"#!") and b"python" in first


def _imports(path: Path) -> list[tuple[str, int, list[str]]]:
    """(module, line, imported names) of the absolute imports of a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno, [alias.name for alias in node.names]))
    return found


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _scripts() -> list[Path]:
    directory = ROOT / "scripts"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# (1) package.xml
# --------------------------------------------------------------------------------------------------
def test_package_xml_is_format_3_with_matching_name_and_version():
    root = _package_xml()  # ET.parse raises on malformed XML
    assert root.tag == "package"
    assert root.get("format") == "3"
    setup = _setup_kwargs()

    name = root.findtext("name")
    assert name == PACKAGE == setup["name"] == _project_name()
    assert PACKAGE_DIR.joinpath("__init__.py").is_file()

    version = root.findtext("version")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version or ""), f"package.xml version {version!r} is not X.Y.Z"
    assert version == _package_version() == setup["version"], (
        f"versions differ: package.xml {version}, {PACKAGE}.__version__ {_package_version()}, "
        f"setup.py {setup['version']}"
    )

    assert (root.findtext("description") or "").strip()
    maintainers = root.findall("maintainer")
    assert maintainers and all(m.get("email") and (m.text or "").strip() for m in maintainers)
    assert [e.text for e in root.findall("license")] == ["Apache-2.0"]
    assert setup.get("license", "Apache-2.0") == "Apache-2.0"


def test_package_xml_declares_an_ament_cmake_interface_package():
    root = _package_xml()
    assert root.findtext("export/build_type") == "ament_cmake"
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= set(
        _xml_dependencies("buildtool_depend")
    )
    assert "rosidl_default_runtime" in _run_dependencies()
    assert "rosidl_interface_packages" in [e.text for e in root.findall("member_of_group")]


def test_package_xml_has_no_duplicate_dependencies():
    tags = ("depend", "build_depend", "build_export_depend", "exec_depend", "buildtool_depend")
    seen: dict[str, str] = {}
    duplicates = []
    for tag in tags:
        for key in _xml_dependencies(tag):
            # depend = build_depend + build_export_depend + exec_depend; catkin_pkg rejects repeats
            if key in seen and (tag == "depend" or seen[key] == "depend" or seen[key] == tag):
                duplicates.append(f"{key} ({seen[key]} and {tag})")
            seen.setdefault(key, tag)
    assert not duplicates, f"package.xml declares dependencies twice: {duplicates}"


def test_pip_requirements_are_rosdep_keys_or_documented():
    requirements = _setup_kwargs()["install_requires"]
    assert isinstance(requirements, list)
    doc = DOC_FILE.read_text(encoding="utf-8") if DOC_FILE.is_file() else ""
    run = _run_dependencies()
    problems = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        key = PIP_TO_ROSDEP.get(name)
        if key is not None and key not in run:
            problems.append(f"{name}: add <exec_depend>{key}</exec_depend> to package.xml")
        if key is None and name not in doc:
            problems.append(f"{name}: no rosdep key, document `pip install {name}` in docs/ros_build.md")
    assert not problems, problems


# --------------------------------------------------------------------------------------------------
# (2) msg/ <-> rosidl_generate_interfaces
# --------------------------------------------------------------------------------------------------
def test_every_msg_file_is_generated_by_rosidl():
    listed = _cmake_list(MSG_FILES_VAR)
    present = _msg_files()
    unlisted, missing = sorted(set(present) - set(listed)), sorted(set(listed) - set(present))
    assert not unlisted, f"msg files missing from set({MSG_FILES_VAR} ...) in CMakeLists.txt: {unlisted}"
    assert not missing, f"set({MSG_FILES_VAR} ...) lists files that do not exist: {missing}"
    assert len(listed) == len(set(listed)), "duplicate entries in " + MSG_FILES_VAR
    for path in present:
        assert re.fullmatch(r"msg/[A-Z][A-Za-z0-9]*\.msg", path), f"{path}: rosidl needs CamelCase names"

    (call,) = _cmake_calls("rosidl_generate_interfaces")
    assert call[0] == "${PROJECT_NAME}"
    assert f"${{{MSG_FILES_VAR}}}" in call
    assert call[call.index("DEPENDENCIES") + 1] == f"${{{MSG_DEPENDENCIES_VAR}}}"
    # rosidl_generate_interfaces() fails without interface files: it is guarded by if(<list>).
    assert ("if", (MSG_FILES_VAR,)) in _cmake_commands()


def test_msg_dependencies_are_declared():
    cmake_dependencies = set(_cmake_list(MSG_DEPENDENCIES_VAR))
    build_and_run = set(_xml_dependencies("depend")) | (
        set(_xml_dependencies("build_depend")) & set(_xml_dependencies("exec_depend"))
    )
    assert cmake_dependencies <= build_and_run, (
        f"message dependencies without <depend> in package.xml: {sorted(cmake_dependencies - build_and_run)}"
    )
    own = {Path(path).stem for path in _msg_files()}
    problems = {
        path: _msg_type_problems((ROOT / path).read_text(encoding="utf-8"), own, cmake_dependencies)
        for path in _msg_files()
    }
    assert not {path: p for path, p in problems.items() if p}, problems


def test_msg_type_checker_itself():
    text = (
        "# comment\nstd_msgs/Header header\nuint32 ID=3\nfloat32[] scores  # trailing\n"
        "geometry_msgs/Pose[<=5] poses\nstring<=10 label\nPlaceCandidate[] candidates\nOther x\nHeader h\n"
    )
    assert _msg_field_types(text) == [
        "std_msgs/Header",
        "uint32",
        "float32",
        "geometry_msgs/Pose",
        "string",
        "PlaceCandidate",
        "Other",
        "Header",
    ]
    problems = _msg_type_problems(text, {"PlaceCandidate"}, {"std_msgs"})
    assert problems == [
        "geometry_msgs/Pose: package geometry_msgs is not a declared dependency",
        "Other: no msg/Other.msg",
        "Header: ROS 2 needs std_msgs/Header",
    ]


def test_python_package_does_not_shadow_generated_interfaces():
    # rosidl installs fol_vpr_ros/{msg,srv,action} into the same Python package directory.
    for name in ("msg", "srv", "action"):
        assert not (PACKAGE_DIR / name).exists(), f"{PACKAGE}/{name} would clash with rosidl's generated code"
        assert not (PACKAGE_DIR / f"{name}.py").exists(), f"{PACKAGE}/{name}.py would clash with rosidl"


def test_python_package_is_installed_next_to_generated_code():
    commands = [name for name, _ in _cmake_commands()]
    assert "ament_python_install_package" not in commands, "conflicts with rosidl (ros2/rosidl_python#141)"
    assert ("ament_get_python_install_dir", ("PYTHON_INSTALL_DIR",)) in _cmake_commands()
    installs = [
        index
        for index, (name, arguments) in enumerate(_cmake_commands())
        if name == "install" and arguments[:2] == ("DIRECTORY", PACKAGE)
    ]
    assert installs, f"CMakeLists.txt must install(DIRECTORY {PACKAGE} DESTINATION ${{PYTHON_INSTALL_DIR}})"
    assert _install_calls("DIRECTORY")  # parses
    assert any(
        items == [PACKAGE] and destination == "${PYTHON_INSTALL_DIR}"
        for items, destination in _install_calls("DIRECTORY")
    )
    # after rosidl, so that our __init__.py replaces the empty one rosidl installs
    assert installs[0] > _cmake_index("rosidl_generate_interfaces")
    assert commands[-1] == "ament_package", "ament_package() must be the last command"


# --------------------------------------------------------------------------------------------------
# (3) executables in lib/fol_vpr_ros
# --------------------------------------------------------------------------------------------------
def test_scripts_are_installed_to_lib_package():
    installed = [
        item
        for items, destination in _install_calls("PROGRAMS")
        if destination == f"lib/{PACKAGE}"
        for item in items
    ]
    scripts = [path.relative_to(ROOT).as_posix() for path in _scripts()]
    assert sorted(installed) == sorted(scripts), (
        f"install(PROGRAMS ... DESTINATION lib/${{PROJECT_NAME}}): {sorted(installed)}, "
        f"scripts/: {sorted(scripts)}"
    )
    assert {f"scripts/{name}" for name in EXECUTABLES} <= set(installed)


@pytest.mark.parametrize("name", sorted(EXECUTABLES))
def test_script_is_an_executable_python_launcher(name):
    path = ROOT / "scripts" / name
    assert path.is_file(), f"scripts/{name} is missing"
    assert os.access(path, os.X_OK), f"scripts/{name} is not executable (chmod +x, git keeps mode 100755)"
    assert path.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    modules = {module for module, _, names in _imports(path) if "main" in names}
    assert modules == {EXECUTABLES[name]}, f"scripts/{name} must run `from {EXECUTABLES[name]} import main`"
    if name == "train":
        strings = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
        assert "train" in strings, "scripts/train must prepend the `train` subcommand"


@pytest.mark.parametrize("name", sorted(EXECUTABLES))
def test_script_target_module_defines_main(name):
    module = EXECUTABLES[name]
    path = _module_file(module)
    if path is None:
        pytest.skip(f"{module} ({module.replace('.', '/')}.py) is not written yet")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} | {
        alias.asname or alias.name for n in tree.body if isinstance(n, ast.ImportFrom) for alias in n.names
    }
    assert "main" in defined, f"{path.relative_to(ROOT)} defines no main() for scripts/{name}"


# --------------------------------------------------------------------------------------------------
# (4) share/fol_vpr_ros/{launch,config}
# --------------------------------------------------------------------------------------------------
def test_launch_and_config_are_installed_to_share():
    installed = {
        item
        for items, destination in _install_calls("DIRECTORY")
        if destination == f"share/{PACKAGE}"
        for item in items
    }
    # no trailing slash: the folders themselves (share/fol_vpr_ros/launch/...), not their contents
    assert {"launch", "config"} <= installed, (
        f"install(DIRECTORY launch config DESTINATION share/...): {installed}"
    )
    assert LAUNCH_FILE.is_file() and CONFIG_FILE.is_file()


# --------------------------------------------------------------------------------------------------
# (5) ROS packages imported by Python code are declared
# --------------------------------------------------------------------------------------------------
def test_ros_imports_are_declared_in_package_xml():
    run = _run_dependencies()
    own = {Path(path).stem for path in _msg_files()}
    problems = []
    for path in _python_sources():
        where = path.relative_to(ROOT)
        for module, line, names in _imports(path):
            top = module.split(".")[0]
            keys = ROS_PYTHON_MODULES.get(top)
            if keys and not set(keys) & run:
                problems.append(f"{where}:{line}: imports {module}: add <exec_depend>{keys[0]}</exec_depend>")
            if module == f"{PACKAGE}.msg" or module.startswith(f"{PACKAGE}.msg."):
                missing = [name for name in names if name not in own and not name.startswith("_")]
                if missing or not own:
                    problems.append(f"{where}:{line}: imports {module} {missing}: no such msg/*.msg")
    assert not problems, "\n".join(problems)


def test_no_unused_exec_depends():
    imported = {module.split(".")[0] for path in _python_sources() for module, _, _ in _imports(path)}
    ros_keys = {key for key in _xml_dependencies("exec_depend") if not key.startswith("python3-")}
    unused = sorted(ros_keys - imported - RUNTIME_ONLY)
    assert not unused, f"package.xml exec_depends that nothing imports: {unused}"


def test_only_ros_imports_rclpy_and_nothing_imports_cyclonedds():
    problems = []
    for path in _python_sources():
        where = path.relative_to(ROOT)
        for module, line, _ in _imports(path):
            top = module.split(".")[0]
            if top == "cyclonedds":
                problems.append(f"{where}:{line}: imports cyclonedds (retired: the rclpy node is the node)")
            inside_ros = where.parts[:2] == (PACKAGE, "ros") or where.parts[0] in ("scripts", "launch")
            if top == "rclpy" and not inside_ros:
                problems.append(f"{where}:{line}: imports rclpy outside {PACKAGE}/ros/")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# (6) config/localize.yaml
# --------------------------------------------------------------------------------------------------
def _flatten(parameters: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in parameters.items():
        assert isinstance(key, str) and "." not in key, f"use nested keys, not {prefix}{key!r}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_config_is_a_ros2_parameter_file():
    data = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and list(data) == ["/**"], "expected a single `/**:` section"
    assert isinstance(data["/**"], dict) and list(data["/**"]) == ["ros__parameters"]
    parameters = _flatten(data["/**"]["ros__parameters"])

    from fol_vpr_ros.node.params import param_specs

    # string arrays are declared typed by name (rclpy_node), so an empty one is typed by the node, not the file
    typed_by_name = {spec.name for spec in param_specs() if spec.type is list and spec.items is str}
    problems = []
    for name, value in parameters.items():
        if value is None:
            problems.append(f"{name}: empty value (ROS 2 cannot type it)")
        elif isinstance(value, list):
            kinds = {type(item) for item in value}
            if value == [] and name in typed_by_name:
                continue
            if not value or len(kinds) != 1 or kinds & {list, dict, type(None)}:
                problems.append(f"{name}: arrays must be non-empty and of one scalar type")
    for name, kind in CONFIG_PARAMETERS.items():
        if name not in parameters:
            problems.append(f"{name}: missing")
            continue
        value = parameters[name]
        if type(value) is not kind:  # exact: bool is not int, 30 is not 30.0
            problems.append(f"{name}: {value!r} is {type(value).__name__}, expected {kind.__name__}")
    for name, choices in CONFIG_CHOICES.items():
        if parameters.get(name) not in choices:
            problems.append(f"{name}: {parameters.get(name)!r} not in {sorted(choices)}")
    if parameters.get("input_size") is not None:
        size = parameters["input_size"]
        if not (len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
            problems.append(f"input_size: {size!r} is not [height, width]")
    assert "use_sim_time" not in parameters, "use_sim_time is set by the launch file"
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# (7) launch/localize.launch.py (parsed, never imported: launch/launch_ros are not installed here)
# --------------------------------------------------------------------------------------------------
def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _call_name(node) == name]


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def test_launch_file_declares_arguments_and_starts_the_node():
    tree = ast.parse(LAUNCH_FILE.read_text(encoding="utf-8"), filename=str(LAUNCH_FILE))
    constants = _module_constants(tree)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions

    declared: dict[str, object] = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        assert call.args and isinstance(call.args[0], ast.Constant), (
            "DeclareLaunchArgument needs a literal name"
        )
        default = _keyword(call, "default_value")
        declared[call.args[0].value] = _resolve(default, constants) if default is not None else None
    missing = set(LAUNCH_ARGUMENTS) - set(declared)
    assert not missing, f"launch arguments not declared: {sorted(missing)}"
    for name, default in LAUNCH_ARGUMENTS.items():
        if default is not None:
            assert declared[name] == default, (
                f"launch argument {name}: default {declared[name]!r} != {default!r}"
            )

    used = {
        call.args[0].value
        for call in _calls(tree, "LaunchConfiguration")
        if call.args and isinstance(call.args[0], ast.Constant)
    }
    assert used <= set(declared), (
        f"LaunchConfiguration of undeclared arguments: {sorted(used - set(declared))}"
    )
    # every argument is referenced again after its declaration (LaunchConfiguration("x") or a name table)
    mentions = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]
    unused = sorted(name for name in declared if mentions.count(name) < 2)
    assert not unused, f"launch arguments declared but never used: {unused}"

    share = _calls(tree, "get_package_share_directory")
    assert share and _resolve(share[0].args[0], constants) == PACKAGE
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert {"config", CONFIG_FILE.name} <= strings, (
        "params_file default must be share/<pkg>/config/localize.yaml"
    )

    nodes = _calls(tree, "Node")
    assert len(nodes) == 1
    (node,) = nodes
    assert _resolve(_keyword(node, "package"), constants) == PACKAGE
    assert (
        _resolve(_keyword(node, "executable"), constants) == "fol_vpr_node" and "fol_vpr_node" in EXECUTABLES
    )
    assert _resolve(_keyword(node, "name"), constants) == "fol_vpr"
    assert _keyword(node, "namespace") is not None and _keyword(node, "parameters") is not None
    remappings = _keyword(node, "remappings")
    assert isinstance(remappings, ast.List)
    sources = [_resolve(item.elts[0], constants) for item in remappings.elts if isinstance(item, ast.Tuple)]
    assert "image" in sources, "the node's `image` input must be remapped to image_topic"

    # parameters overridden from launch arguments exist in the parameter file
    parameters = _flatten(yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))["/**"]["ros__parameters"])
    assert {"map_path", "weights"} <= strings & set(parameters)
    assert "use_sim_time" in strings


# --------------------------------------------------------------------------------------------------
# (8) colcon / catkin_pkg, when installed (on a ROS machine, or pip install colcon-ros)
# --------------------------------------------------------------------------------------------------
def test_catkin_pkg_parses_package_xml():
    if importlib.util.find_spec("catkin_pkg") is None:
        pytest.skip("catkin_pkg is not installed")
    from catkin_pkg.package import parse_package

    messages: list[str] = []
    with warnings.catch_warnings():  # ament runs pytest with -We; catkin_pkg's own deprecations are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        package = parse_package(str(ROOT), warnings=messages)  # validates, raises InvalidPackage
    assert not messages, messages
    assert package.name == PACKAGE
    assert package.get_build_type() == "ament_cmake"


def test_colcon_identifies_an_ament_cmake_package(tmp_path):
    for module, pip_name in (
        ("colcon_core", "colcon-core"),
        ("colcon_ros", "colcon-ros"),
        ("colcon_package_information", "colcon-package-information"),  # provides `colcon list`
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{pip_name} is not installed")
    env = {**os.environ, "COLCON_HOME": str(tmp_path / "colcon_home")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from colcon_core.command import main; sys.exit(main(argv=sys.argv[1:]))",
            "--log-base",
            os.devnull,
            "list",
            "--base-paths",
            str(ROOT),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert [(row[0], row[-1]) for row in rows] == [(PACKAGE, "(ros.ament_cmake)")], result.stdout
