#!/bin/bash
# The distilled student's full W->A run (30 epochs, cached teacher, --freeze-stages 4) on an NVIDIA GPU, once per
# --amp mode, to measure what mixed precision does to speed and accuracy of a whole run (not one step):
#   bash benchmarks/studies/gpu_h200/gpu_kd_amp.sh DATA_ROOT TEACHER_MODEL_PT MBV3_WEIGHTS SPLITS_DIR OUT
# SPLITS_DIR: the CPU run's image lists, so that both score on the same target-test images.
set -u
R=$1 T=$2 W=$3 SPLITS=$4 OUT=$5
export PYTHONUNBUFFERED=1 LITEDA_CACHE=/tmp/liteda_cache MPLBACKEND=Agg
mkdir -p "$OUT"
for amp in none fp16 bf16; do
  echo "=== kd --amp $amp ($(date +%T))"
  mkdir -p "/tmp/kd_$amp/splits" && cp "$SPLITS"/*.txt "/tmp/kd_$amp/splits/"
  timeout 150 python3 -m liteda distill "$R" -d OfficeCaltech -s W -t A --seed 0 --epochs 30 --no-progress --freeze-stages 4 \
    -a mobilenet_v3_small --pretrained "$W" --teacher-ckpt "$T" --teacher-cache --device cuda --amp "$amp" \
    --cache-dir /tmp/liteda_cache --log "/tmp/kd_$amp" && cp "/tmp/kd_$amp/results.json" "$OUT/kd_amp_$amp.json"
done
