# Fresh-machine entry points: `make demo` (main job on the bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data
OUT ?= out
WEIGHTS ?=

.PHONY: venv demo demo-images test lint bench clean

$(STAMP): setup.py requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-ci.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fol-vpr demo --data $(DATA) --out $(OUT)/demo $(if $(WEIGHTS),--weights $(WEIGHTS),)

demo-images: $(STAMP)
	$(BIN)/fol-vpr demo-images --data $(DATA) --out $(OUT)/demo_images $(if $(WEIGHTS),--weights $(WEIGHTS),)

test: $(STAMP)
	$(BIN)/ruff check fol_vpr_ros test
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check fol_vpr_ros test

bench: $(STAMP)
	$(BIN)/fol-vpr bench describe --out $(OUT)/bench
	$(BIN)/fol-vpr bench rerank --out $(OUT)/bench
	$(BIN)/fol-vpr bench map --out $(OUT)/bench

clean:
	rm -rf $(VENV) $(OUT) build install log *.egg-info
