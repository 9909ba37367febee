# make run   set up, then train: softmax + center loss, then the center-only second stage
# make test  set up, then run the test suite
#
# Each builds its own virtual environment, so the system's numpy does not matter.
# GPU=1 / GPU=0 forces the MXNet build. By default the CUDA build is taken when
# nvidia-smi lists a GPU whose compute capability the wheel's kernels run on
# (5.0 to 8.9: it carries sm_50..sm_86 machine code and no PTX); when every
# card is newer (Hopper, Blackwell) the CPU build, said on stderr. A driver
# older than R510 does not know the compute_cap field: a GPU then picks CUDA.
PYTHON ?= python3
define PICK_GPU
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then echo 0; \
elif ! caps=$$(nvidia-smi --query-gpu=index,name,compute_cap --format=csv,noheader 2>/dev/null); then echo 1; \
else echo "$$caps" | awk -F', *' ' \
  $$NF !~ /^[0-9]+[.][0-9]+$$/ { old = 1; next } \
  { split($$NF, v, "."); if (v[1] >= 5 && v[1] <= 8) ok = 1; else if (!seen++) card = "GPU " $$1 " (" $$2 ", compute capability " $$NF ")" } \
  END { if (ok || old) print 1; else { print 0; \
    print "make: " card " is newer than the CUDA build of mxnet 1.9.1 runs on (compute capability 5.0 to 8.9: sm_50..sm_86 machine code, no PTX); building the CPU environment" > "/dev/stderr" } }'; \
fi
endef
ifndef GPU
GPU := $(shell $(PICK_GPU))
endif
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
	@case "$$(uname -s)" in Linux) ;; *) echo "make: this project runs on Linux with Python 3.11 or 3.12 (README.md); this is $$(uname -s)" >&2; exit 2;; esac
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
