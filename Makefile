# Every target installs what it needs first: `make eval-r50` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Kinetics-400 when the user says where it is, else the built-in synthetic sample.
ifdef KINETICS_CSV
DATA := data=kinetics400 data.csv=$(KINETICS_CSV) data.root=$(KINETICS_ROOT)
else
DATA := data=sample
endif
ARGS ?=

.PHONY: install eval-r50 eval-r101 test
install: $(STAMP)

# torch/torchvision are pinned here only to pick the CPU-machine wheels that lie on this
# workplace's disk; the package itself does not pin them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

eval-r50: install
	@echo "data: $(DATA)"
	$(PY) -m benchmark.eval model=slowfast_r50 $(DATA) $(ARGS)

eval-r101: install
	@echo "data: $(DATA)"
	$(PY) -m benchmark.eval model=slowfast_r101 $(DATA) $(ARGS)

test: install
	$(PY) -m pytest -q
