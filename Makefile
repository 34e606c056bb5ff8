# LiteDA — pretrain -> adapt -> distill -> compress -> deploy/benchmark, tllib-style. `make help` lists it all.
# Every stage is a `liteda` command; the grid (`liteda grid`) plans them from the registries, so a new method,
# compression recipe or deploy artifact is a name in METHODS / RECIPES / BENCH_ARGS, never a new rule here.
SHELL := /bin/bash
PY ?= python3
LITEDA = $(PY) -m liteda
DATASET ?= Office31
ROOT ?= data/office31
TASK ?= W2A
TASKS ?= A2W D2W W2D A2D D2A W2A
SEED ?= 0
SEEDS ?= 0 1 2
JOBS ?= 1
# Processes per training stage: above 1, each trains under torchrun (data parallel; -b stays the global batch).
NPROC ?= 1
RUNS ?= runs
RESULTS ?= benchmarks/results/$(shell echo $(DATASET) | tr A-Z a-z)
ARCH ?= mobilenet_v3_small

# ---- the recommended recipe (the defaults; docs/results.md has its numbers)
EPOCHS ?= 30
# Adaptation methods on the student itself: table rows beside source-only and the oracle.
METHODS ?= mcc
# The teacher is adapted with MCC (the label-free IM validator's pick, docs/results.md) before it teaches,
# for the student's 30 epochs (every row of a table inside the protocol's epoch range).
TEACHER_METHOD ?= mcc
TEACHER_EPOCHS ?= 30
# Every training stage fine-tunes from block 4 on (the frozen stem and first blocks keep ImageNet features).
TRAIN_ARGS ?= --freeze-stages 4
# Flags of every adaptation stage (the METHODS rows and the teacher's), e.g. --trade-off 0.3.
METHOD_ARGS ?=
# Teacher outputs are computed once per unlabeled target image: a larger teacher costs one pass, not one per step.
# The student learns them on FixMatch's strong view of each image (the IM validator's pick, docs/results.md).
KD_ARGS ?= --teacher-cache --target-aug strong
# Compression recipes of the distilled student (`liteda list recipes`); 1mb is the <= 1 MB INT8 deployable.
RECIPES ?= 1mb
COMPRESS_ARGS ?=
BENCH_ARGS ?=
# Which run `make export|bench|trt-bench` deploy: a recipe's run or the distilled student's (named by KD_ARGS).
DEPLOY ?= $(or $(firstword $(RECIPES)),$(if $(findstring strong,$(KD_ARGS)),kd_strongaug,kd))

# Offline machines: stand-in ImageNet weights from ../shared are used when present (STANDIN=0: library weights
# by name, which downloads). Results say which weights they used.
SHARED ?= ../shared
STANDIN ?= $(if $(wildcard $(SHARED)/weights/mobilenet_v3_small-imagenet-standin.pth),1,0)
ifeq ($(STANDIN),1)
PRETRAINED ?= $(SHARED)/weights/mobilenet_v3_small-imagenet-standin.pth
TEACHER ?= tf_efficientnet_lite0
TEACHER_PRETRAINED ?= $(SHARED)/weights/tf_efficientnet_lite0-imagenet.pth
else
PRETRAINED ?=
TEACHER ?= mobilenet_v3_large
TEACHER_PRETRAINED ?=
endif
TEACHER_SEED ?=

DEPS ?= .deps-installed
GRID = $(LITEDA) grid $(ROOT) -d $(DATASET) --epochs $(EPOCHS) --arch $(ARCH) --methods $(METHODS) \
	--teacher $(TEACHER) --teacher-method $(TEACHER_METHOD) --teacher-epochs $(TEACHER_EPOCHS) \
	--recipes $(RECIPES) --runs $(RUNS) -j $(JOBS) --nproc $(NPROC) \
	$(if $(PRETRAINED),--pretrained $(PRETRAINED)) $(if $(TEACHER_PRETRAINED),--teacher-pretrained $(TEACHER_PRETRAINED)) \
	$(if $(TEACHER_SEED),--teacher-seed $(TEACHER_SEED)) \
	--train-args "$(TRAIN_ARGS)" --method-args "$(METHOD_ARGS)" --kd-args "$(KD_ARGS)" --compress-args "$(COMPRESS_ARGS)" --bench-args "$(BENCH_ARGS)"
ONE = $(GRID) --tasks $(TASK) --seeds $(SEED)
DEPLOY_RUN = $(RUNS)/$(DATASET)/$(TASK)/$(DEPLOY)/seed$(SEED)

.PHONY: help deps demo test pretrain adapt distill compress export bench trt-bench all-tasks report clean-demo

help:
	@echo "LiteDA (DATASET=$(DATASET) ROOT=$(ROOT) TASK=$(TASK) SEED=$(SEED); every stage: liteda <command> -h)"
	@echo "  make demo                the whole pipeline on the embedded default, offline, minutes on 2 cores"
	@echo "  make test                the test suite (what .ci/run calls)"
	@echo "  make all-tasks           TASKS x SEEDS through every stage, then the report into RESULTS=$(RESULTS)"
	@echo "  make pretrain TASK=W2A   source-only and oracle"
	@echo "  make adapt TASK=W2A      the METHODS=$(METHODS) rows"
	@echo "  make distill TASK=W2A    the teacher ($(TEACHER), $(TEACHER_METHOD)) then the distilled student"
	@echo "  make compress TASK=W2A   the RECIPES=$(RECIPES) of the distilled student"
	@echo "  make export TASK=W2A     ONNX / INT8 artifacts of DEPLOY=$(DEPLOY)"
	@echo "  make bench TASK=W2A      accuracy, size, latency and FPS of each artifact of DEPLOY"
	@echo "  make trt-bench TASK=W2A  the same with TensorRT and PyTorch CUDA on an NVIDIA GPU"
	@echo "  make report              tables, plots and the report from finished runs"
	@echo "  Variables: SEEDS EPOCHS METHODS METHOD_ARGS TEACHER TEACHER_METHOD TEACHER_EPOCHS TEACHER_SEED RECIPES TRAIN_ARGS"
	@echo "             KD_ARGS COMPRESS_ARGS BENCH_ARGS JOBS NPROC RUNS RESULTS PY STANDIN=$(STANDIN) PRETRAINED TEACHER_PRETRAINED"

# Installs into the Python that PY names (the current environment by default; use PY=.venv/bin/python for a venv).
$(DEPS): requirements.txt pyproject.toml
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

deps: $(DEPS)

# Set-up (installing what the demo needs) and the demo itself are timed apart.
demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory deps; echo "[demo] set-up: $$(( $$(date +%s) - t0 )) s"
	@t0=$$(date +%s); $(LITEDA) demo; echo "[demo] demo: $$(( $$(date +%s) - t0 )) s (set-up excluded)"

test: $(DEPS)
	$(PY) -m pytest -q tests

all-tasks: $(DEPS)
	$(GRID) --tasks $(TASKS) --seeds $(SEEDS) --results $(RESULTS)

pretrain: $(DEPS)
	$(ONE) --only source_only oracle

adapt: $(DEPS)
	$(ONE) --only adapt

distill: $(DEPS)
	$(ONE) --only distill

compress: $(DEPS)
	$(ONE) --only compress

export: $(DEPS)
	$(LITEDA) export --run $(DEPLOY_RUN)

bench: $(DEPS)
	$(LITEDA) bench --run $(DEPLOY_RUN) $(BENCH_ARGS)

trt-bench: $(DEPS)
	$(LITEDA) bench --run $(DEPLOY_RUN) --runtime torch ort trt cuda --precision fp32 fp16 bf16 int8 fp8

report: $(DEPS)
	$(LITEDA) report --runs $(RUNS) --dataset $(DATASET) --out $(RESULTS)

clean-demo:
	rm -rf $(RUNS)/Digits
