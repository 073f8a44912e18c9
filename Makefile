# daydream: the two commands of the quick start.
#   make run    set up .venv and train the main job (the simulated A1; LONG=1 for the full budget)
#   make test   set up .venv, lint (ruff) and run the test suite
PYTHON ?= python3
VENV ?= .venv
# The torch build to install first. 2.13.0 is a CPU wheel on the CI machines and a CUDA
# wheel from PyPI on a Linux GPU workstation; override for another CUDA index, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
# The main job: DayDreamer's task on the simulated Unitree A1 (start on the back, no resets),
# with a learner and ACTORS actor processes (`daydream run`), then its report (learning
# curve, gait video, evaluation, training episodes beside random actions). By default
# configs/a1_roll_cpu.yaml: a tiny learner for 20k env steps, 11-15 minutes on 2 CPU
# cores, in which the robot learns to push itself over (benchmarks/RESULTS.md). LONG=1 is
# DayDreamer's full run (configs/a1_walk.yaml: 100k env steps, about 1.4 h of robot time;
# hours on a GPU workstation). STEPS=N overrides the config's env-step budget.
LONG ?= 0
ifeq ($(LONG),1)
CONFIG ?= a1_walk
else
CONFIG ?= a1_roll_cpu
endif
ACTORS ?= 1
STEPS ?= 0
# Model size: the config's own on a CUDA machine, tiny on CPU-only machines (the larger
# updates take seconds on a laptop CPU). Set SIZE=tiny|daydreamer|size12m|size25m|size50m to choose.
SIZE ?= auto
ARGS ?=
export MUJOCO_GL ?= egl

VPY := $(VENV)/bin/python

.PHONY: setup run test clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH_SPEC)
	$(VPY) -m pip install -q -e ".[learner,sim,ros,test]"
	touch $@

setup: $(VENV)/.installed
	@bash scripts/setup_system.sh $(VPY)

run: setup
	size=$(SIZE); if [ "$$size" = auto ]; then \
	  size=$$($(VPY) -c "import torch; print('' if torch.cuda.is_available() else 'tiny')"); fi; \
	set -- --config $(CONFIG) --actors $(ACTORS); \
	if [ "$(STEPS)" != 0 ]; then set -- "$$@" --set train.steps=$(STEPS); fi; \
	if [ -n "$$size" ]; then set -- "$$@" --set size=$$size; fi; \
	echo "make run: daydream run $$* $(ARGS)"; \
	$(VENV)/bin/daydream run "$$@" $(ARGS)

test: setup
	$(VPY) -m ruff check daydream tests benchmarks
	$(VPY) -m pytest -q -p no:cacheprovider -n 2 --dist load $(ARGS)

clean-venv:
	rm -rf $(VENV)
