"""`make demo` at a tiny size: every stage of the demo runs through the grid and the report names each row."""
import json
import os
import subprocess
import sys


def test_tiny_demo_runs_every_stage_and_writes_the_report(tmp_path):
    r = subprocess.run([sys.executable, "-m", "liteda", "demo", "--root", str(tmp_path / "digits"),
                        "--runs", str(tmp_path / "runs"), "--set", "epochs=1",
                        "--set", "train-args=--scratch --resize-size 36 --crop-size 32 --no-prelogits "
                                 "--bottleneck-dim 32 -i 2 -b 16",
                        "--set", "compress-args=--ft-epochs 1 --ft-iters 1 --latency-runs 1 --calib-batches 1",
                        "--set", "bench-args=--iters 2 --warmup 1 --calib-size 8 --max-images 16"],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "LITEDA_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    task = tmp_path / "runs" / "Digits" / "S2M"
    for run in ("source_only", "dann_tradeoff0.3", "kd", "oracle", "1mb", "kd/seed0/deploy", "1mb/seed0/deploy"):
        folder = task / run if "/" in run else task / run / "seed0"
        assert (folder / "record.json").is_file(), run
    assert (task / "1mb" / "seed0" / "deploy" / "model_int8.onnx").is_file()
    report = tmp_path / "runs" / "Digits" / "report"
    headline = (report / "headline.md").read_text()
    label = json.loads((task / "1mb" / "seed0" / "record.json").read_text())["label"]
    for row in ("source-only", "dann_tradeoff0.3", "distilled student", f"{label}, ort-int8", "oracle"):
        assert row in headline, row
    assert (report / "report.html").is_file() and "[demo] pipeline done" in r.stdout
    assert headline in r.stdout  # the demo prints its three-way table ...
    assert (report / "resources.md").read_text() in r.stdout  # ... and the resource table


def test_demo_set_names_a_known_flag():
    r = subprocess.run([sys.executable, "-m", "liteda", "demo", "--set", "epoch=1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--set 'epoch=1'" in r.stderr and r.stderr.count("\n") == 1
