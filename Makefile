# make run   set up, then train: softmax + center loss, then the center-only second stage
# make test  set up, then run the test suite
#
# Each builds its own virtual environment, so the system's numpy does not matter.
# GPU=1 / GPU=0 forces the MXNet build; by default the CUDA build is taken when
# `nvidia-smi -L` lists a GPU.
PYTHON ?= python3
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && echo 1 || echo 0)
ifeq ($(GPU),1)
REQS := requirements-gpu.txt
VENV := .venv-gpu
else
REQS := requirements.txt
VENV := .venv
endif
PY := $(VENV)/bin/python

.PHONY: setup run test clean print-reqs
setup: $(VENV)/.installed

$(VENV)/.installed: $(REQS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r $(REQS) pytest
	touch $@

run: setup
	$(PY) main.py --train --center_loss
	$(PY) main.py --second_train

test: setup
	$(PY) -m pytest -q tests

print-reqs:  # which requirements file and environment this machine gets
	@echo $(REQS) $(VENV)

clean:
	rm -rf ckpt .pytest_cache
