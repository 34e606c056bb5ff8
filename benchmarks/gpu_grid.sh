#!/bin/bash
# The Office-Caltech grid of the recommended recipe, and the candidate recipes it is compared with, on a lent
# NVIDIA GPU machine, in one call that spends its minutes on training, not set-up:
#   here:  python benchmarks/gpu_pack.py --root ../shared/datasets/office_caltech_10 --weights ../shared/weights
#   there: bash benchmarks/gpu_grid.sh .gpu_pack "$OUT" [SECONDS]          (carry: .gpu_pack)
# Phases run in priority order until SECONDS (default 540) are spent; each phase is `liteda grid` (resumable,
# stages in parallel on the one GPU), then its tables and every run's JSON/CSV (no checkpoints) are packed into
# "$OUT/<phase>.tgz" at once, so a phase cut short still returns what finished.
#   office   the six A/W/D tasks, seeds 0 1 2, each seed its own teacher (make all-tasks defaults: a 30-epoch
#            teacher, the student on strong target views)
#   caltech  the six Caltech tasks with the same recipe, frozen before they are looked at
#   select   candidate: teachers keep their epoch with the highest IM score on unlabeled target-train
#            (--select im for the teacher only; a runs tree of its own), with their ≤ 1 MB files
#   srcsel   candidate: both: strong source views and the IM-selected epoch (--source-aug strong --select im)
#   srcselho candidate: srcsel with the IM score read on a fifth of target-train the teacher does not train on
#            (--select-holdout 0.2: on its own training images the score peaks late)
#   selftrain candidate: teachers with FixMatch's self-training term on strong target views (--self-training 1;
#            a runs tree of its own, since the students' folder names are the default's), with their ≤ 1 MB files
#   align    candidate: the default teachers' students on labels aligned to the source class frequencies
#            (--distribution-alignment; a runs tree of its own, since the ≤ 1 MB folders are named after the
#            recipe, not the student)
#   srcaug   candidate: teachers adapted on strong views of the labeled source images (--source-aug strong for
#            the teacher only; a runs tree of its own, since the students' folder names are the default's), with
#            their ≤ 1 MB files
#   mdd      candidate: teachers adapted with MDD instead of MCC (a runs tree of its own, since the students'
#            folder names are the default's; no better than MCC over three A→W seeds,
#            benchmarks/studies/officecaltech_a2w_teachers/)
#   plain    candidate: the same teachers' students without strong target views
#   t10      candidate: the 10-epoch teacher's student (the earlier default)
#   cluster  candidate: + cross-entropy on the teacher's clustering-refined labels (--cluster-weight 0.3)
#   views    candidate: the teacher labels each target image on ten views, not two (--teacher-views 10)
#   mixup    candidate: + soft cross-entropy on source/target pixel mixes (--domain-mixup 0.3)
#   ls       candidate: teachers adapted with label smoothing 0.1 on their source loss (SDAT's smoother source
#            loss; a runs tree of its own, since the students' folder names are the default's)
#   recipes  the other compression recipes of the office students (binary layers, ECA, ReLU, 160 px, both, 160 px
#            pruned to multiples of 16) and their bench
#   full     candidate: teachers fine-tuned end to end (--freeze-stages 0 for the teacher only; a runs tree of
#            its own, since the teacher's folder name is the default's)
#            (last: worse than the default on A→W, benchmarks/studies/officecaltech_a2w_teachers/)
# DRY=1 prints the planned stages only. The candidates are chosen between by the label-free validators of each report, never by target accuracy.
set -u
PACK=${1:?pack folder from benchmarks/gpu_pack.py} OUT=${2:?output folder} BUDGET=${3:-540}
PHASES=${PHASES:-office caltech selftrain select srcsel srcselho align srcaug mdd plain t10 cluster views mixup ls recipes full}
JOBS=${JOBS:-12}
T0=$(date +%s)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg LITEDA_CACHE=/tmp/liteda_cache
mkdir -p "$OUT" /tmp/pkg
# the checkout is not installed there: the import name `liteda` is the plugins/ folder (pyproject's mapping)
ln -sfn "$PWD/plugins" /tmp/pkg/liteda && export PYTHONPATH=/tmp/pkg${PYTHONPATH:+:$PYTHONPATH}
ls "$PACK"/wheels/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --target /tmp/site \
  "$PACK"/wheels/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, liteda; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

ROOT=$PACK/office_caltech_10 W=$PACK/weights
GRID=(python3 -m liteda grid "$ROOT" -d OfficeCaltech --epochs 30 --arch mobilenet_v3_small
      --pretrained "$W/mobilenet_v3_small-imagenet-standin.pth" --methods mcc --teacher tf_efficientnet_lite0
      --teacher-pretrained "$W/tf_efficientnet_lite0-imagenet.pth" --teacher-method mcc --recipes 1mb
      --train-args "--freeze-stages 4 --workers 2" -j "$JOBS" --threads 1 ${DRY:+--dry-run})
OFFICE="A2W D2W W2D A2D D2A W2A" CALTECH="A2C W2C D2C C2A C2W C2D"
KD="--teacher-cache --target-aug strong"  # the default distillation flags (Makefile KD_ARGS)

left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() {  # $1 phase, $2 runs root: every run's results (no checkpoints) and the report
  tar czf "$OUT/$1.tgz" --exclude='*.pt' --exclude='*.onnx' --exclude='*.npz' --exclude='*.engine' \
    --exclude='splits' "$2" "/tmp/report_$1" 2>/dev/null
  echo "[$1] packed $(du -h "$OUT/$1.tgz" | cut -f1) at $(( $(date +%s) - T0 )) s"
}
phase() {  # $1 name, $2 runs root, $3 tasks, rest: grid flags
  local name=$1 runs=$2 tasks=$3; shift 3
  local t; t=$(left)
  if [ "$t" -lt 60 ]; then echo "[$name] skipped: $t s left"; return; fi
  echo "=== $name ($t s left)"
  timeout --signal=INT "$(( t - 30 ))" "${GRID[@]}" --runs "$runs" --tasks $tasks --seeds 0 1 2 "$@" \
    --results "/tmp/report_$name" 2>&1 | tail -n 25
  [ -d "/tmp/report_$name" ] || python3 -m liteda report --runs "$runs" --dataset OfficeCaltech --out "/tmp/report_$name" >/dev/null 2>&1
  pack "$name" "$runs"
}
for p in $PHASES; do
  case $p in
    office)  phase office  /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "$KD" ;;
    caltech) phase caltech /tmp/runs_default "$CALTECH" --teacher-epochs 30 --kd-args "$KD" ;;
    full)    phase full    /tmp/runs_full "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--freeze-stages 0" --only distill ;;
    select)  phase select  /tmp/runs_select "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--select im" --only distill compress bench ;;
    srcsel)  phase srcsel  /tmp/runs_srcsel "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--source-aug strong --select im" --only distill compress bench ;;
    srcselho) phase srcselho /tmp/runs_srcselho "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--source-aug strong --select im --select-holdout 0.2" --only distill compress bench ;;
    selftrain) phase selftrain /tmp/runs_selftrain "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--self-training 1" --only distill compress bench ;;
    align)   phase align   /tmp/runs_align "$OFFICE" --teacher-epochs 30 --kd-args "$KD --distribution-alignment" \
               --only distill compress bench ;;
    srcaug)  phase srcaug  /tmp/runs_srcaug "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--source-aug strong" --only distill compress bench ;;
    mdd)     phase mdd     /tmp/runs_mdd "$OFFICE" --teacher-epochs 30 --teacher-method mdd --kd-args "$KD" \
               --only distill ;;
    plain)   phase plain   /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "--teacher-cache" --only distill ;;
    t10)     phase t10     /tmp/runs_t10 "$OFFICE" --teacher-epochs 10 --kd-args "--teacher-cache" --only distill ;;
    cluster) phase cluster /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "$KD --cluster-weight 0.3" \
               --only distill ;;
    views)   phase views   /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "$KD --teacher-views 10" \
               --only distill ;;
    mixup)   phase mixup   /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "$KD --domain-mixup 0.3" \
               --only distill ;;
    ls)      phase ls      /tmp/runs_ls "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --teacher-args "--label-smoothing 0.1" --only distill ;;
    recipes) phase recipes /tmp/runs_default "$OFFICE" --teacher-epochs 30 --kd-args "$KD" \
               --recipes 1mb binary binary-int8 eca relu lowres relu160 prune160 --only compress bench ;;
    *) echo "unknown phase $p" ;;
  esac
done
echo "done in $(( $(date +%s) - T0 )) s"
