# LiteDA — pretrain -> adapt -> distill -> compress -> deploy/benchmark, tllib-style. `make help` lists it all.
SHELL := /bin/bash
PY ?= python3
DATASET ?= Office31
ROOT ?= data/office31
TASK ?= A2W
TASKS ?= A2W D2W W2D A2D D2A W2A
SEED ?= 0
SEEDS ?= 0
EPOCHS ?= 30
METHOD ?= dann
METHODS ?= dann cdan mcc
RUNS ?= runs
RESULTS ?= results
ARCH ?= mobilenet_v3_small
# MCC (eleventh session): the label-free IM validator prefers the MCC-adapted teacher to the CDAN one on all six
# Office-Caltech tasks (MCC lowers prediction entropy itself, so IM leans its way; target accuracy agrees on average)
TEACHER_METHOD ?= mcc
EXTRA ?=
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
# The recommended recipe keeps the compute-heavy convolutions and removes where the parameters are: SE -> ECA
# (-0.46 M) and a rank-25% SVD of the 576->1024->256 Linears (-0.64 M), recovered by self-distillation; the
# float result goes to ONNX and ONNX Runtime quantizes it to INT8 (the deploy stage), < 1 MB on disk.
COMPRESS_ARGS ?= --attention eca --lowrank-ratio 0.25 --lowrank-layers linear --ft-epochs 4
BENCH_ARGS ?= --runtime torch ort --precision fp32 fp16 int8 int8w
# The <= 1 MB recipe that keeps SE (`make compress-1mb`, issue #5): SE 1x1 convs and the Linear tail factorised at
# rank ratio 0.25 by an SVD whitened with each layer's input statistics (source + unlabeled target images), the
# recovery fine-tune kept only if it raises label-free agreement, static INT8 calibrated on unlabeled target;
# deploy its INT8 QDQ ONNX with `make bench DEPLOY=compressed_1mb`.
SMALL_ARGS ?= --lowrank-ratio 0.25 --lowrank-layers linear+se --lowrank-whiten full --ft-guard --quantize ptsq
# QAT of the compressed student (fake-quant fine-tune, distilled from its float self on unlabeled target), exported
# as INT8 QDQ: a static INT8 whose scales are trained, not calibrated. The learning rate is the one whose export
# agrees best with FP32 on unlabeled target-train (benchmarks/int8_fidelity.py --prebuilt). QAT=0: not in the grid.
QAT ?= 1
QAT_ARGS ?= --quantize qat --ft-epochs 2 --qat-lr 0.0005
# The distilled student run at a smaller input size (fewer MACs for every runtime, no weight changed), fine-tuned
# by distillation from its full-size self on the same crops; deployed FP32/INT8 like the others. LOWRES=0: not in
# the grid.
LOWRES ?= 160
LOWRES_ARGS ?= --ft-epochs 4
# The distilled student with ReLU in place of Hardswish (EfficientNet-Lite's quantization recipe), recovered by
# distillation from itself: ONNX Runtime fuses Conv+ReLU into one INT8 kernel, where each Hardswish was a float
# island, so its INT8 file is the fast one; deployed FP32/INT8 like the others. With LOWRES, the ReLU student is
# also taken to LOWRES px (relu_lowres: the fastest deployable). RELU=0: neither in the grid.
RELU ?= 1
RELU_ARGS ?= --activation relu --ft-epochs 4
# A teacher larger than the student may get fewer epochs than the rows of the table (a CPU budget; say so).
TEACHER_EPOCHS ?= $(EPOCHS)
# More teachers for the distill stage: run folders of the same task and seed (e.g. EXTRA_TEACHERS=mcc, a METHODS
# row), their probabilities averaged with the main teacher's (kd.py --teacher-ckpt, repeated).
EXTRA_TEACHERS ?=
# One adapted teacher for every student seed: TEACHER_SEED=0 distils seeds 1, 2, ... from the seed-0 teacher runs
# (a CPU budget: the student's seed spread then leaves out the teacher's). Empty: each seed its own teacher.
TEACHER_SEED ?=
# Extra distillation flags, e.g. --teacher-cache (teacher outputs computed once per target image: a large teacher
# then costs one pass, not one per step) or --pseudo-threshold 0.9.
KD_ARGS ?=
# What export/bench/trt-bench deploy for one TASK: the distilled student (kd) or its compressed version
DEPLOY ?= kd

# The teacher's run folder: "<method>" for the student's own arch (then it is also a METHODS row), else
# "<method>-<arch>"; the distill stage depends on it, so make trains it once, first.
TEACHER_RUN = $(if $(filter $(TEACHER),$(ARCH)),$(TEACHER_METHOD),$(TEACHER_METHOD)-$(TEACHER))
DEPS ?= .deps-installed
src = $(firstword $(subst 2, ,$(1)))
tgt = $(lastword $(subst 2, ,$(1)))
W_ARGS = $(if $(PRETRAINED),--pretrained $(PRETRAINED))
T_ARGS = --teacher $(TEACHER) $(if $(TEACHER_PRETRAINED),--teacher-pretrained $(TEACHER_PRETRAINED)) --teacher-method $(TEACHER_METHOD)
run_args = $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --seed $(2) --epochs $(EPOCHS) --runs-root $(RUNS) --resume --no-progress $(EXTRA)
RUN = $(RUNS)/$(DATASET)/$(1)/$(2)/seed$(3)
tseed = $(or $(TEACHER_SEED),$(1))
TEACHER_SEEDS = $(if $(TEACHER_SEED),$(TEACHER_SEED),$(SEEDS))
# A teacher that is a table row (source_only or a METHODS run of the student's arch) has its rule per SEEDS already
TEACHER_ROW = $(filter $(TEACHER_RUN),source_only $(METHODS))
TEACHER_RULE_SEEDS = $(if $(TEACHER_ROW),$(filter-out $(SEEDS),$(TEACHER_SEEDS)),$(TEACHER_SEEDS))
STAGE = $(PY) -m liteda.stage --log $(RUNS)/$(DATASET)/.stages.jsonl --total $(N_STAGES) --name

.PHONY: help deps demo test pretrain adapt distill compress compress-1mb export bench trt-bench all-tasks report clean-demo

help:
	@echo "LiteDA make targets (variables: DATASET=$(DATASET) ROOT=$(ROOT) TASK=$(TASK) SEED=$(SEED) METHOD=$(METHOD))"
	@echo "  make demo                  embedded default (digits -> MNIST-M style), offline, minutes on 2 cores"
	@echo "  make test                  the test suite (what .ci/run calls)"
	@echo "  make pretrain TASK=A2W     source-only (student ARCH=$(ARCH) and teacher TEACHER=$(TEACHER)) + oracle"
	@echo "  make adapt TASK=A2W METHOD=dann   one adaptation method"
	@echo "  make distill TASK=A2W      teacher (adapted with TEACHER_METHOD=$(TEACHER_METHOD)) -> student on the target"
	@echo "  make compress TASK=A2W     prune/quantize/low-rank/attention-swap the distilled student (COMPRESS_ARGS='$(COMPRESS_ARGS)')"
	@echo "  make compress-1mb TASK=A2W the <= 1 MB INT8 recipe that keeps SE (SMALL_ARGS; deploy: make bench DEPLOY=compressed_1mb)"
	@echo "  make export TASK=W2A       ONNX FP32/FP16/INT8 of the distilled student (DEPLOY=compressed: of the compressed one)"
	@echo "  make bench TASK=W2A        latency/FPS/size/accuracy per runtime x precision (BENCH_ARGS)"
	@echo "  make trt-bench TASK=W2A    the same with TensorRT FP16/INT8/FP8 (falls back to ORT without a GPU)"
	@echo "  make all-tasks             TASKS x SEEDS through every stage (+ METHODS rows, + QAT of the compressed student unless QAT=0,"
	@echo "                             + the distilled student at LOWRES=$(LOWRES) px unless LOWRES=0, + its ReLU version unless"
	@echo "                             RELU=0), then the report"
	@echo "  make report                tables, plots and report from existing runs into RESULTS=$(RESULTS)"
	@echo "  Other variables: SEEDS EPOCHS RUNS RESULTS PY STANDIN=$(STANDIN) PRETRAINED TEACHER TEACHER_PRETRAINED TEACHER_EPOCHS TEACHER_SEED EXTRA_TEACHERS KD_ARGS LOWRES LOWRES_ARGS RELU RELU_ARGS EXTRA"

# Installs into the Python that PY names (the current environment by default; use PY=.venv/bin/python for a venv).
$(DEPS): requirements.txt pyproject.toml
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

deps: $(DEPS)

demo: $(DEPS)
	$(PY) examples/demo.py

test: $(DEPS)
	$(PY) -m pytest -q tests

# ----------------------------------------------------------------------------- one task
pretrain: $(DEPS)
	$(PY) examples/source_only.py $(call run_args,$(TASK),$(SEED)) -a $(ARCH) $(W_ARGS)
	$(PY) examples/source_only.py $(call run_args,$(TASK),$(SEED)) -a $(TEACHER) $(if $(TEACHER_PRETRAINED),--pretrained $(TEACHER_PRETRAINED))
	$(PY) examples/oracle.py $(call run_args,$(TASK),$(SEED)) -a $(ARCH) $(W_ARGS)

adapt: $(DEPS)
	$(PY) examples/$(METHOD).py $(call run_args,$(TASK),$(SEED)) -a $(ARCH) $(W_ARGS)

distill: $(DEPS)
	$(PY) examples/kd.py $(call run_args,$(TASK),$(SEED)) -a $(ARCH) $(W_ARGS) $(T_ARGS) --teacher-epochs $(TEACHER_EPOCHS) $(KD_ARGS)

compress: $(DEPS)
	$(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(TASK)) -t $(call tgt,$(TASK)) --ckpt $(call RUN,$(TASK),kd,$(SEED))/model.pt --out $(call RUN,$(TASK),compressed,$(SEED)) --seed $(SEED) --no-progress $(COMPRESS_ARGS)

compress-1mb: $(DEPS)
	$(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(TASK)) -t $(call tgt,$(TASK)) --ckpt $(call RUN,$(TASK),kd,$(SEED))/model.pt --out $(call RUN,$(TASK),compressed_1mb,$(SEED)) --seed $(SEED) --no-progress $(SMALL_ARGS)

export: $(DEPS)
	$(PY) examples/export.py --run $(call RUN,$(TASK),$(DEPLOY),$(SEED)) --precision fp32 fp16 int8 int8w

bench: $(DEPS)
	$(PY) examples/bench.py --run $(call RUN,$(TASK),$(DEPLOY),$(SEED)) $(BENCH_ARGS)

trt-bench: $(DEPS)
	$(PY) examples/bench.py --run $(call RUN,$(TASK),$(DEPLOY),$(SEED)) --runtime torch ort trt cuda --precision fp32 fp16 bf16 int8 fp8

# ----------------------------------------------------------------------------- the grid (file targets)
# Each stage's target is its run's results.json: a finished stage is not run again, an interrupted one resumes
# from its checkpoint, and every stage writes only its own folder, so `make -j` is safe. Stage inputs are
# order-only prerequisites (`| ...`): `--phase analysis` adds to a finished run's results.json, which must not
# make the stages after it run again.
define TASK_SEED_RULES
$(call RUN,$(1),source_only,$(2))/results.json: | $(DEPS)
	@$$(STAGE) "$(1) source-only seed $(2)" -- $(PY) examples/source_only.py $(call run_args,$(1),$(2)) -a $(ARCH) $(W_ARGS)
$(call RUN,$(1),oracle,$(2))/results.json: | $(DEPS)
	@$$(STAGE) "$(1) oracle seed $(2)" -- $(PY) examples/oracle.py $(call run_args,$(1),$(2)) -a $(ARCH) $(W_ARGS)
$(foreach m,$(METHODS),
$(call RUN,$(1),$(m),$(2))/results.json: | $(DEPS)
	@$$(STAGE) "$(1) $(m) seed $(2)" -- $(PY) examples/$(m).py $(call run_args,$(1),$(2)) -a $(ARCH) $(W_ARGS)
)
$(call RUN,$(1),kd,$(2))/results.json: | $(foreach r,$(TEACHER_RUN) $(EXTRA_TEACHERS),$(call RUN,$(1),$(r),$(call tseed,$(2)))/results.json)
	@$$(STAGE) "$(1) distill seed $(2)" -- $(PY) examples/kd.py $(call run_args,$(1),$(2)) -a $(ARCH) $(W_ARGS) $(foreach r,$(TEACHER_RUN) $(EXTRA_TEACHERS),--teacher-ckpt $(call RUN,$(1),$(r),$(call tseed,$(2)))/model.pt) $(KD_ARGS)
$(call RUN,$(1),compressed,$(2))/results.json: | $(call RUN,$(1),kd,$(2))/results.json
	@$$(STAGE) "$(1) compress seed $(2)" -- $(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --ckpt $(call RUN,$(1),kd,$(2))/model.pt --out $(call RUN,$(1),compressed,$(2)) --seed $(2) --no-progress $(COMPRESS_ARGS)
$(foreach m,source_only $(METHODS),
$(call RUN,$(1),$(m),$(2))/tsne.png: | $(call RUN,$(1),$(m),$(2))/results.json
	@$$(STAGE) "$(1) $(m) analysis seed $(2)" -- $(PY) examples/$(m).py $(call run_args,$(1),$(2)) -a $(ARCH) $(W_ARGS) --phase analysis
)
$(call RUN,$(1),kd,$(2))/deploy/bench.json: | $(call RUN,$(1),kd,$(2))/results.json
	@$$(STAGE) "$(1) deploy seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),kd,$(2)) $(BENCH_ARGS)
$(call RUN,$(1),compressed,$(2))/deploy/bench.json: | $(call RUN,$(1),compressed,$(2))/results.json
	@$$(STAGE) "$(1) deploy compressed seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),compressed,$(2)) $(BENCH_ARGS)
$(call RUN,$(1),compressed_qat,$(2))/results.json: | $(call RUN,$(1),compressed,$(2))/results.json
	@$$(STAGE) "$(1) QAT seed $(2)" -- $(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --ckpt $(call RUN,$(1),compressed,$(2))/compressed.pt --out $(call RUN,$(1),compressed_qat,$(2)) --seed $(2) --no-progress $(QAT_ARGS)
$(call RUN,$(1),lowres,$(2))/results.json: | $(call RUN,$(1),kd,$(2))/results.json
	@$$(STAGE) "$(1) lower resolution seed $(2)" -- $(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --ckpt $(call RUN,$(1),kd,$(2))/model.pt --out $(call RUN,$(1),lowres,$(2)) --seed $(2) --no-progress --resolution $(LOWRES) $(LOWRES_ARGS)
$(call RUN,$(1),lowres,$(2))/deploy/bench.json: | $(call RUN,$(1),lowres,$(2))/results.json
	@$$(STAGE) "$(1) deploy lower resolution seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),lowres,$(2)) $(BENCH_ARGS)
$(call RUN,$(1),relu,$(2))/results.json: | $(call RUN,$(1),kd,$(2))/results.json
	@$$(STAGE) "$(1) ReLU student seed $(2)" -- $(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --ckpt $(call RUN,$(1),kd,$(2))/model.pt --out $(call RUN,$(1),relu,$(2)) --seed $(2) --no-progress $(RELU_ARGS)
$(call RUN,$(1),relu,$(2))/deploy/bench.json: | $(call RUN,$(1),relu,$(2))/results.json
	@$$(STAGE) "$(1) deploy ReLU student seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),relu,$(2)) $(BENCH_ARGS)
$(call RUN,$(1),relu_lowres,$(2))/results.json: | $(call RUN,$(1),relu,$(2))/results.json
	@$$(STAGE) "$(1) ReLU student at lower resolution seed $(2)" -- $(PY) examples/compress.py $(ROOT) -d $(DATASET) -s $(call src,$(1)) -t $(call tgt,$(1)) --ckpt $(call RUN,$(1),relu,$(2))/compressed.pt --out $(call RUN,$(1),relu_lowres,$(2)) --seed $(2) --no-progress --resolution $(LOWRES) $(LOWRES_ARGS)
$(call RUN,$(1),relu_lowres,$(2))/deploy/bench.json: | $(call RUN,$(1),relu_lowres,$(2))/results.json
	@$$(STAGE) "$(1) deploy ReLU student at lower resolution seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),relu_lowres,$(2)) $(BENCH_ARGS)
$(call RUN,$(1),compressed_qat,$(2))/deploy/bench.json: | $(call RUN,$(1),compressed_qat,$(2))/results.json
	@$$(STAGE) "$(1) deploy QAT seed $(2)" -- $(PY) examples/bench.py --run $(call RUN,$(1),compressed_qat,$(2)) $(BENCH_ARGS)
endef
# The teacher (when it is not a METHODS row) of each seed that some student distils from
define TEACHER_RULE
$(call RUN,$(1),$(TEACHER_RUN),$(2))/results.json: | $(DEPS)
	@$$(STAGE) "$(1) teacher $(TEACHER_RUN) seed $(2)" -- $(PY) examples/$(TEACHER_METHOD).py $(call run_args,$(1),$(2)) --epochs $(TEACHER_EPOCHS) -a $(TEACHER) $(if $(TEACHER_PRETRAINED),--pretrained $(TEACHER_PRETRAINED))
endef
$(foreach t,$(TASKS),$(foreach s,$(SEEDS),$(eval $(call TASK_SEED_RULES,$(t),$(s)))))
$(foreach t,$(TASKS),$(foreach s,$(TEACHER_RULE_SEEDS),$(eval $(call TEACHER_RULE,$(t),$(s)))))

# Stage-major order: with -j the long chains (teacher -> distill -> compress -> deploy) of every task start first.
QAT_RUN = $(if $(filter 1,$(QAT)),compressed_qat)
LOWRES_RUN = $(if $(filter-out 0,$(LOWRES)),lowres)
RELU_RUN = $(if $(filter 1,$(RELU)),relu $(if $(LOWRES_RUN),relu_lowres))
STAGE_ORDER = $(filter-out $(TEACHER_RUN),source_only kd compressed $(QAT_RUN) $(LOWRES_RUN) $(RELU_RUN) oracle $(METHODS))
TEACHER_GRID = $(foreach t,$(TASKS),$(foreach s,$(sort $(TEACHER_SEEDS) $(if $(TEACHER_ROW),$(SEEDS))),$(call RUN,$(t),$(TEACHER_RUN),$(s))/results.json))
GRID := $(TEACHER_GRID) $(foreach r,$(STAGE_ORDER),$(foreach t,$(TASKS),$(foreach s,$(SEEDS),$(call RUN,$(t),$(r),$(s))/results.json))) \
        $(foreach r,kd compressed $(QAT_RUN) $(LOWRES_RUN) $(RELU_RUN),$(foreach t,$(TASKS),$(foreach s,$(SEEDS),$(call RUN,$(t),$(r),$(s))/deploy/bench.json))) \
        $(foreach m,source_only $(METHODS),$(foreach t,$(TASKS),$(foreach s,$(SEEDS),$(call RUN,$(t),$(m),$(s))/tsne.png)))
N_STAGES := $(words $(GRID))

all-tasks: $(GRID)
	$(MAKE) report

report: $(DEPS)
	$(PY) -m liteda.report --runs $(RUNS) --dataset $(DATASET) --out $(RESULTS)

clean-demo:
	rm -rf $(RUNS)/Digits
