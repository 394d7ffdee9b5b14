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

.PHONY: install eval-r50 eval-r101 test sweep flops report
install: $(STAMP)

# torch/torchvision are pinned here only to pick the CPU-machine wheels that lie on this
# workplace's disk; the package itself does not pin them.
# pytorchvideo 0.1.0 (the release behind the zoo's numbers, pure Python) is extracted into
# .venv/refs for the tests only (tests/test_protocols.py); without the package index they skip.
REFS := $(VENV)/refs
# mmaction2 and its engine without their declared dependencies (they would install three OpenCV
# packages over one cv2); the extra `mmaction` in pyproject.toml lists what they need. The
# constraints keep torch, numpy, av, pandas and pyarrow at the versions installed before.
MMACTION := mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0
# torchcodec (decoder=torchcodec) loads FFmpeg's shared libraries from the system: apt-get them
# when missing (root, as here and in CI); elsewhere that decoder stops a run with what to install.
FFMPEG_LIBS := ldconfig -p | grep -q 'libavutil\.so\.'
$(STAMP): pyproject.toml
	@$(FFMPEG_LIBS) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		     --no-install-recommends ffmpeg; } ; } \
		|| echo "FFmpeg's shared libraries are missing and could not be installed here:" \
		        "decoder=torchcodec will not run (apt-get install ffmpeg as root)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip freeze | grep -iE '^(torch|torchvision|numpy|av|pandas|pyarrow)==' > $(VENV)/constraints.txt
	$(PY) -m pip install -q --no-deps -c $(VENV)/constraints.txt $(MMACTION)
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[test,mmaction]'
	mkdir -p $(REFS)
	$(PY) -m pip download -q --no-deps --no-binary :all: pytorchvideo==0.1.0 -d $(REFS) \
		&& tar -xzf $(REFS)/pytorchvideo-0.1.0.tar.gz -C $(REFS) \
		|| echo "pytorchvideo 0.1.0 not downloaded: the zoo protocol's tests will skip"
	touch $(STAMP)

# What there is to name: make list [WHAT=models|data|protocols|decoders] (benchmark/list.py).
WHAT ?=
.PHONY: list
list: install
	@$(PY) -m benchmark.list $(WHAT)

eval-r50: install
	@echo "data: $(DATA)"
	$(PY) -m benchmark.eval model=slowfast_r50 $(DATA) $(ARGS)

eval-r101: install
	@echo "data: $(DATA)"
	$(PY) -m benchmark.eval model=slowfast_r101 $(DATA) $(ARGS)

# The layers' import contracts first (pyproject [tool.importlinter], docs/architecture.md).
# Tiny models and generated or shared test videos; the full-size work is make test-slow's.
test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 -m "not slow"

# The tests marked slow: full-size models (slowfast_r50/r101, the ten mmaction2 configs built,
# their FLOPs), mmaction2's own pipeline for the six configs make test proves on fewer videos,
# the regression check with its cost part and under two of its four view faults (make test
# checks the other two). CI runs both (.ci/run).
.PHONY: test-slow
test-slow: install
	$(PY) -m pytest -q -m slow

# The SLURM launcher on a real scheduler: a one-node cluster (munged, slurmctld, slurmd) from a
# temporary config, installed with apt-get when missing, stopped when done (docs/scale-out.md).
.PHONY: slurm-test
slurm-test: install
	bash tests/slurm/cluster.sh $(PY)

# Depth x device on the sample set, one combined table (multirun/DATE/TIME/sweep.md and
# results/sweeps/). A device that is not here (cuda on a CPU machine) is a skipped row.
SWEEP ?= model=slowfast_r50,slowfast_r101 device=cpu,cuda
sweep: install
	$(PY) -m benchmark.eval -m $(SWEEP) $(DATA) $(ARGS)

# The model card's pipeline against the harness, in one process, same videos and weights:
# results/bench-<device>.csv/.md and bench.json in the run dir (docs/speed.md).
# Quick: make bench ARGS="bench.rss_videos=0"; on a CPU without bf16: ARGS="precision=fp32".
.PHONY: bench
bench: install
	$(PY) -m benchmark.bench $(ARGS)

# Where a model's forward pass spends its time: results/profiles/ (docs/speed.md).
# ARGS="--device cuda --precision bf16 --batch 60" on a GPU.
.PHONY: profile
profile: install
	$(PY) -m benchmark.profile $(ARGS)

# The same model and data under every protocol (conf/protocol/): results/protocols.csv/.md.
# Default: the toy model on the toy set; ARGS="model=slowfast_r50 data=kinetics400 ..." for yours.
# Then each transformers model under its authors' protocol and the model card's (the checkpoint's
# processor): results/protocols-<model>.csv/.md, with the hub cache's weights (else random init),
# HF_PROTOCOL_ARGS on top (full-size models: on a CPU minutes a video; device=cuda, data=... there).
HF_PROTOCOL_MODELS ?= videomae_base_k400 videomae_base_ssv2 timesformer_base_k400 vivit_b_16x2_k400 xclip_base_p32_k400
HF_PROTOCOL_ARGS ?= data.limit=4
.PHONY: protocols
protocols: install
	$(PY) -m benchmark.protocols $(ARGS)
	for model in $(HF_PROTOCOL_MODELS); do \
		$(PY) -m benchmark.protocols --model $$model $(HF_PROTOCOL_ARGS) || exit 1; done

# On a lent GPU machine (no registry there: no install step; wheels from .ci/gpu-wheels):
# issue 14's tests, model-only fuse comparison, profiles and bench (header of .ci/gpu-check).
.PHONY: gpu-check
gpu-check:
	.ci/gpu-check $(STAGES)

# PyAV, torchcodec and decord on the six shared videos and the sample set, and the toy model's
# accuracy under each: results/decoders.csv/.md, results/decoders-accuracy.csv/.md, docs/decoders.md.
.PHONY: decoders
decoders: install
	$(PY) -m benchmark.decoders $(ARGS)

# Every zoo model's GFLOPs per view and params beside the published numbers: results/flops.csv/.md
flops: install
	$(PY) -m benchmark.flops

# Decode every listed video before a long run: check.csv in outputs/check/..., the fingerprint.
.PHONY: check
check: install
	$(PY) -m benchmark.check $(DATA) $(ARGS)

# Rebuild tables and plots from finished runs: make report RUNS="outputs/2025-01-01/12-00-00 ..."
report: install
	$(PY) -m benchmark.report $(RUNS)

# The CI regression check: the committed toy SlowFast on the toy set's held-out split, 10x3,
# against results/regression/baseline.json (docs/regression.md).
.PHONY: toy-model regression regression-baseline
regression: install
	$(PY) -m benchmark.regression $(ARGS)

# Record a new baseline deliberately (the check never writes one); prints what moved.
regression-baseline: install
	$(PY) -m benchmark.regression --record $(ARGS)

# Retrain the toy model (seeded; recipe in conf/train_toy.yaml, written beside the checkpoint).
toy-model: install
	$(PY) -m benchmark.toy $(ARGS)
