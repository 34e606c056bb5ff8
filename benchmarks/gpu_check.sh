#!/bin/bash
# Everything this project measures on an NVIDIA GPU, in one call (a lent GPU comes with minutes, not hours):
#   bash benchmarks/gpu_check.sh DATA_ROOT KD_RUN MBV3_WEIGHTS OUT
# DATA_ROOT: Office-Caltech root holding amazon/ and webcam/; KD_RUN: a finished W->A student run folder
# (record.json, model.pt, splits/); MBV3_WEIGHTS: MobileNetV3-Small ImageNet weights; OUT: where the reports go.
# 1. what the machine has (GPU, torch, TensorRT or why not, ORT providers);
# 2. the student's deployment benchmark: PyTorch CPU, ORT CPU, TensorRT when installed, PyTorch CUDA fp32/fp16/bf16
#    eager and CUDA-graph;
# 3. training throughput on the GPU, FP32 vs bf16 vs fp16 AMP (benchmarks/train_speed.py);
# 4. smoke runs of the training loop on the GPU: DANN, CDAN, MDD and distillation (fp16 AMP, cached teacher).
set -u
R=$1 RUN=$2 W=$3 OUT=$4
export PYTHONUNBUFFERED=1 LITEDA_CACHE=/tmp/liteda_cache MPLBACKEND=Agg
mkdir -p "$OUT" /tmp/smoke
step() { echo "=== $* ($(date +%T))"; }
step environment
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 - <<'PY'
import torch, onnxruntime as ort
from liteda.deploy.tensorrt import trt_unavailable_reason
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0))
print("TensorRT:", trt_unavailable_reason() or "available")
print("onnxruntime", ort.__version__, ort.get_available_providers())
PY
step deployment benchmark
timeout 200 python3 -m liteda bench --run "$RUN" --runtime torch ort trt cuda --precision fp32 fp16 bf16 int8 \
  --iters 200 --out /tmp/deploy --report "$OUT/gpu_bench" --cache-dir /tmp/liteda_cache
step training throughput
timeout 200 python3 benchmarks/train_speed.py --root "$R" --pretrained "$W" -s W -t A --device cuda --amp none bf16 fp16 \
  --workers 4 --iters 20 --rounds 2 --threads 8 --cache-dir /tmp/liteda_cache --out "$OUT/train_speed_gpu"
step smoke runs
C="$R -d OfficeCaltech -s W -t A --pretrained $W --epochs 1 -i 4 --no-progress --runs-root /tmp/smoke --cache-dir /tmp/liteda_cache"
for m in dann cdan mdd; do timeout 60 python3 -m liteda adapt -m $m $C --device cuda --amp bf16 || echo "SMOKE FAIL $m"; done
timeout 120 python3 -m liteda distill $C --device cuda --amp fp16 --teacher-run /tmp/smoke/OfficeCaltech/W2A/dann/seed0 \
  --teacher-cache || echo "SMOKE FAIL kd"
tar czf "$OUT/smoke_runs.tgz" -C /tmp/smoke --exclude='*.pt' . 2>/dev/null
step done
