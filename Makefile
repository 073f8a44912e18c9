# daydream: the two commands of the quick start.
#   make run    set up .venv and train the main job
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
# The torch build to install first. 2.13.0 is a CPU wheel on the CI machines and a CUDA
# wheel from PyPI on a Linux GPU workstation; override for another CUDA index, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= dmc_walker_walk
STEPS ?= 100000
# Model size for `make run`: the config's 12m on a CUDA machine, tiny on CPU-only machines
# (the 12m update takes seconds on a laptop CPU). Set SIZE=12m|25m|50m|tiny to choose.
SIZE ?= auto
ARGS ?=
export MUJOCO_GL ?= egl

VPY := $(VENV)/bin/python

.PHONY: setup run test clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH_SPEC)
	$(VPY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed
	@bash scripts/setup_system.sh $(VPY)

run: setup
	size=$(SIZE); if [ "$$size" = auto ]; then \
	  size=$$($(VPY) -c "import torch; print('12m' if torch.cuda.is_available() else 'tiny')"); fi; \
	echo "make run: $(CONFIG), $(STEPS) env steps, model size $$size, logdir runs/$(CONFIG)"; \
	$(VENV)/bin/daydream train --config $(CONFIG) --set train.steps=$(STEPS) --set size=$$size $(ARGS)

test: setup
	$(VPY) -m pytest -q -p no:cacheprovider $(ARGS)

clean-venv:
	rm -rf $(VENV)
