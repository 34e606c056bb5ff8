"""`make all-tasks` on the embedded default: every stage, the results folder, resume without redoing stages."""
import html.parser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = "--scratch -i 2 -b 8 --resize-size 36 --crop-size 32 --scale 0.6 1.0"


def make(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["make", "-C", str(ROOT), "all-tasks", "DATASET=Digits", f"ROOT={tmp / 'digits'}", "TASKS=S2M", "EPOCHS=1",
           "SEEDS=0", f"RUNS={tmp / 'runs'}", f"RESULTS={tmp / 'results'}", "METHODS=dann", "STANDIN=0",
           "TEACHER=mobilenet_v3_small", "TEACHER_METHOD=dann", f"EXTRA={TINY}", "DEPS=",
           "COMPRESS_ARGS=--prune 0.3 --ft-epochs 0 --resize-size 36 -b 8 --latency-runs 2",
           "BENCH_ARGS=--runtime torch ort --precision fp32 int8 int8w --iters 3 --warmup 1 --calib-size 8 --max-images 16",
           "QAT_ARGS=--quantize qat --ft-epochs 1 --ft-iters 1 --resize-size 36 -b 8 --latency-runs 2",
           "LOWRES=24", "LOWRES_ARGS=--ft-epochs 1 --ft-iters 1 -b 8 --latency-runs 2",
           "RELU_ARGS=--activation relu --ft-epochs 1 --ft-iters 1 --resize-size 36 -b 8 --latency-runs 2",
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "LITEDA_THREADS": "1"})


class _Imgs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_tiny_all_tasks_produces_results_and_resumes(tmp_path):
    r = make(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = tmp_path / "runs" / "Digits" / "S2M"
    for stage in ("source_only", "oracle", "dann", "kd"):
        assert (runs / stage / "seed0" / "results.json").is_file(), stage
    assert (runs / "compressed" / "seed0" / "results.json").is_file()
    assert (runs / "kd" / "seed0" / "deploy" / "bench.json").is_file()
    assert (runs / "compressed" / "seed0" / "deploy" / "model_int8.onnx").is_file()  # the pruned student on ORT
    assert (runs / "compressed" / "seed0" / "deploy" / "model_int8w.onnx").is_file()
    assert (runs / "compressed_qat" / "seed0" / "deploy" / "model_int8.onnx").is_file()  # QAT's own QDQ export
    assert (runs / "lowres" / "seed0" / "deploy" / "model_fp32.onnx").is_file()  # the student at 24 px
    assert (runs / "relu" / "seed0" / "deploy" / "model_int8.onnx").is_file()  # the ReLU student on ORT INT8
    assert (runs / "relu_lowres" / "seed0" / "deploy" / "model_int8.onnx").is_file()  # ... and at 24 px
    assert (runs / "source_only" / "seed0" / "tsne.png").is_file()
    res = tmp_path / "results"
    for f in ("accuracy.md", "accuracy.csv", "accuracy_all_target.md", "seconds_per_epoch.md", "resources.md", "report.md",
              "report.html", "summary.json"):
        assert (res / f).is_file(), f
    acc = (res / "accuracy.md").read_text()
    for row in ("source-only", "dann", "distilled student", "compressed student", "deployed INT8 (ORT, compressed",
                "deployed INT8 weights, FP32 compute", "deployed INT8 from QAT", "lower input resolution",
                "deployed FP32, lower input resolution", "ReLU activations", "deployed INT8, ReLU activations",
                "ReLU, lower input resolution",
                "oracle"):
        assert row in acc, row
    assert "Distilled student's teacher: dann mobilenet_v3_small" in (res / "report.md").read_text()
    for f in ("S2M/dann/seed0/results.json", "S2M/kd/seed0/history.csv", "S2M/compressed/seed0/results.json",
              "stages.jsonl"):  # the tables' inputs are copied beside them
        assert (res / "runs" / f).is_file(), f
    p = _Imgs()
    p.feed((res / "report.html").read_text())
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)

    # a second run redoes nothing; a lost stage is redone alone
    again = make(tmp_path)
    assert again.returncode == 0 and "[stage]" not in again.stdout
    (runs / "oracle" / "seed0" / "results.json").unlink()
    third = make(tmp_path)
    started = [ln for ln in third.stdout.splitlines() if ln.startswith("[stage]") and ln.endswith("start")]
    assert started == ["[stage] S2M oracle seed 0: start"], third.stdout[-2000:]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_extra_teachers_join_the_distill_stage(tmp_path):
    """EXTRA_TEACHERS=mcc: the distill stage waits for the task's mcc run and gives kd.py both teachers."""
    goal = tmp_path / "OfficeCaltech" / "A2W" / "kd" / "seed0" / "results.json"
    out = subprocess.run(["make", "-n", "-C", str(ROOT), str(goal), f"RUNS={tmp_path}", "DATASET=OfficeCaltech",
                          "METHODS=cdan mcc", "TEACHER=mobilenet_v3_small", "TEACHER_METHOD=cdan",
                          "EXTRA_TEACHERS=mcc", "DEPS="], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kd = next(ln for ln in out.stdout.splitlines() if "examples/kd.py" in ln)
    run = tmp_path / "OfficeCaltech" / "A2W"
    assert f"--teacher-ckpt {run}/cdan/seed0/model.pt --teacher-ckpt {run}/mcc/seed0/model.pt" in kd
    assert out.stdout.index("A2W mcc seed 0") < out.stdout.index("A2W distill seed 0")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_teacher_seed_distils_every_student_seed_from_one_teacher(tmp_path):
    """TEACHER_SEED=0 with SEEDS=1 2: one teacher run (seed 0) per task, both students learn from it."""
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "all-tasks", f"RUNS={tmp_path}", "DATASET=OfficeCaltech",
                          "TASKS=A2W", "SEEDS=1 2", "TEACHER_SEED=0", "METHODS=cdan", "TEACHER=resnet18",
                          "TEACHER_METHOD=mcc", "DEPS="], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    teachers = [ln for ln in out.stdout.splitlines() if "examples/mcc.py" in ln]
    assert len(teachers) == 1 and "--seed 0 " in teachers[0] and "-a resnet18" in teachers[0]
    kds = [ln for ln in out.stdout.splitlines() if "examples/kd.py" in ln]
    assert len(kds) == 2 and all(f"--teacher-ckpt {tmp_path}/OfficeCaltech/A2W/mcc-resnet18/seed0/model.pt" in k
                                 for k in kds)
