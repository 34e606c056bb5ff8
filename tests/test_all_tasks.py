"""`make all-tasks` on the embedded default: every stage through the grid, the results folder, resume without
redoing stages, a failed stage that does not stop the others; the grid's plan as the registries make it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import img_sources

ROOT = Path(__file__).resolve().parents[1]
TINY = "--scratch -i 2 -b 8 --resize-size 36 --crop-size 32 --scale 0.6 1.0"


def make(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["make", "-C", str(ROOT), "all-tasks", "DATASET=Digits", f"ROOT={tmp / 'digits'}", "TASKS=S2M", "EPOCHS=1",
           "SEEDS=0", f"RUNS={tmp / 'runs'}", f"RESULTS={tmp / 'results'}", "METHODS=dann", "STANDIN=0",
           "TEACHER=mobilenet_v3_small", "TEACHER_METHOD=dann", "TEACHER_EPOCHS=1", f"TRAIN_ARGS={TINY}", "DEPS=",
           "KD_ARGS=",
           f"PY={sys.executable}",
           "COMPRESS_ARGS=--ft-epochs 1 --ft-iters 1 -b 8 --latency-runs 2 --calib-batches 1",
           "BENCH_ARGS=--iters 3 --warmup 1 --calib-size 8 --max-images 16", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "LITEDA_THREADS": "1"})



@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_tiny_all_tasks_produces_results_and_resumes(tmp_path):
    r = make(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = tmp_path / "runs" / "Digits" / "S2M"
    for stage in ("source_only", "oracle", "dann", "kd", "1mb", "kd/seed0/deploy", "1mb/seed0/deploy"):
        folder = runs / stage if "/" in stage else runs / stage / "seed0"
        assert (folder / "record.json").is_file(), stage
    assert (runs / "1mb" / "seed0" / "deploy" / "model_int8.onnx").is_file()  # the small student on ORT
    chosen = json.loads((runs / "recommended" / "seed0" / "recommended.json").read_text())  # across kd and 1mb
    assert {c["name"].split("/")[0] for c in chosen["candidates"]} == {"kd", "1mb"} and "float student" in chosen["rule"]
    assert (runs / "source_only" / "seed0" / "tsne.png").is_file()
    res = tmp_path / "results"
    for f in ("headline.md", "accuracy.md", "accuracy.csv", "accuracy_all_target.md", "seconds_per_epoch.md",
              "resources.md", "report.md", "report.html", "summary.json"):
        assert (res / f).is_file(), f
    label = json.loads((runs / "1mb" / "seed0" / "record.json").read_text())["label"]
    acc, headline = (res / "accuracy.md").read_text(), (res / "headline.md").read_text()
    for row in ("source-only", "dann", "distilled student", "oracle (target labels)", label, f"{label}, ort-int8"):
        assert row in acc, row
    assert f"{label}, ort-int8" in headline and "size (MB)" in headline
    report = (res / "report.md").read_text()
    assert "Distilled student's teacher: dann mobilenet_v3_small" in report
    assert report.index("## Headline") < report.index("### The artifact to ship") < report.index("## Setup")
    assert (res / "recommended.md").is_file() and (res / "recommended" / "S2M_s0.json").is_file()
    for f in ("S2M/dann/seed0/results.json", "S2M/kd/seed0/record.json", "S2M/1mb/seed0/results.json"):
        assert (res / "runs" / f).is_file(), f  # the tables' inputs are copied beside them
    srcs = img_sources((res / "report.html").read_text())
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "[stage]" in r.stdout and "ETA" in r.stdout  # one progress line per stage

    # a second run redoes nothing; a lost stage is redone alone
    again = make(tmp_path)
    assert again.returncode == 0 and "0 to run" in again.stdout and "[stage]" not in again.stdout
    (runs / "oracle" / "seed0" / "record.json").unlink()
    third = make(tmp_path)
    started = [ln for ln in third.stdout.splitlines() if ln.startswith("[stage]") and ln.endswith("start")]
    assert started == ["[stage] S2M oracle seed 0: start"], third.stdout[-2000:]


def grid_plan(tmp_path, *extra: str) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "liteda", "grid", "ROOT", "-d", "OfficeCaltech", "--runs", str(tmp_path),
                        "-n", *extra], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_each_student_seed_gets_its_own_teacher_unless_told(tmp_path):
    plan = grid_plan(tmp_path, "--tasks", "A2W", "--seeds", "1", "2", "--teacher", "resnet18")
    teachers = [ln for ln in plan if "teacher mcc-resnet18" in ln.split(":")[0]]
    assert len(teachers) == 2 and all("-a resnet18" in t for t in teachers)
    shared = grid_plan(tmp_path, "--tasks", "A2W", "--seeds", "1", "2", "--teacher", "resnet18", "--teacher-seed", "0")
    teachers = [ln for ln in shared if "teacher mcc-resnet18" in ln.split(":")[0]]
    assert len(teachers) == 1 and "--seed 0 " in teachers[0]
    kds = [ln for ln in shared if ln.split(":")[0].endswith("distill seed 1") or ln.split(":")[0].endswith("distill seed 2")]
    assert len(kds) == 2 and all(f"--teacher-run {tmp_path}/OfficeCaltech/A2W/mcc-resnet18/seed0" in k for k in kds)


def test_a_teacher_that_is_a_table_row_runs_once_and_comes_first(tmp_path):
    plan = grid_plan(tmp_path, "--tasks", "W2A", "--methods", "mcc", "--teacher", "mobilenet_v3_small")
    mcc = [ln for ln in plan if "adapt -m mcc" in ln and "--phase analysis" not in ln]
    assert len(mcc) == 1
    keys = [ln.split(":")[0] for ln in plan]
    assert keys.index(mcc[0].split(":")[0]) < next(i for i, k in enumerate(keys) if k.endswith("distill seed 0"))


def test_only_runs_a_stage_and_what_it_needs(tmp_path):
    plan = grid_plan(tmp_path, "--tasks", "W2A", "--only", "compress")
    kinds = sorted(" ".join(ln.split(":")[0].split()[2:]).rsplit(" seed", 1)[0] for ln in plan)
    assert kinds == ["compress 1mb", "distill", "teacher mcc-mobilenet_v3_large"]


def test_a_failed_stage_skips_its_dependents_and_the_report_lists_it(tmp_path):
    """A distillation that cannot run (its teacher flags are bad): the rows that do not need it are still
    trained and reported, the grid exits non-zero and the report says what failed and why."""
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "data")
    r = subprocess.run([sys.executable, "-m", "liteda", "grid", str(data), "-d", "Custom", "--tasks", "src2tgt",
                        "--epochs", "1", "--methods", "--recipes", "--runs", str(tmp_path / "runs"),
                        "--results", str(tmp_path / "results"), "--no-analysis", "--teacher", "mobilenet_v3_small",
                        "--teacher-method", "source_only",
                        "--train-args", "--scratch -i 1 -b 8 --resize-size 36 --crop-size 32 --no-progress",
                        "--kd-args", "--kd-T -1", "--only", "source_only", "distill", "bench"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "LITEDA_THREADS": "1"})
    assert r.returncode == 2 and "stage(s) failed or were skipped" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    failures = json.loads((tmp_path / "runs" / "Custom" / "grid_failures.json").read_text())
    assert {f["stage"] for f in failures} == {"src2tgt distill seed 0", "src2tgt deploy kd seed 0"}
    assert (tmp_path / "runs" / "Custom" / "src2tgt" / "source_only" / "seed0" / "record.json").is_file()
    report = (tmp_path / "results" / "report.md").read_text()
    assert "src2tgt distill seed 0: " in report and "--kd-T must be positive" in report


def test_the_makefile_default_single_flag_values_reach_their_stages(tmp_path, capsys):
    """`make all-tasks` passes `--kd-args "--teacher-cache"`: a lone value starting with `--` (which argparse
    would take for a flag) must reach the distillation stage, as a quoted value with spaces does."""
    from liteda.grid import main as grid_main

    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "data")
    grid_main([str(data), "-d", "Custom", "--tasks", "src2tgt", "--methods", "--recipes", "--runs", str(tmp_path),
               "--kd-args", "--teacher-cache", "--train-args", "--freeze-stages 4", "--only", "distill", "-n"])
    distill = [line for line in capsys.readouterr().out.splitlines() if "distill seed 0:" in line]
    assert distill and distill[0].endswith("--teacher-cache") and "--freeze-stages 4" in distill[0]


def test_two_grids_that_differ_only_in_kd_flags_write_separate_logs(tmp_path):
    from liteda.grid import build_parser, plan, stage_log

    def distill_log(*kd: str) -> Path:
        a = build_parser().parse_args(["ROOT", "-d", "OfficeCaltech", "--tasks", "A2W", "--runs", str(tmp_path),
                                       "--methods", "--recipes", *kd, "--only", "distill"])
        st = next(st for st in plan(a) if st.kind == "distill")
        return stage_log(st, tmp_path / "OfficeCaltech")

    plain, strong = distill_log(), distill_log("--kd-args=--target-aug strong")
    assert plain != strong and plain.parent == strong.parent == tmp_path / "OfficeCaltech" / "logs"
    assert "kd_strongaug" in strong.name and strong.name.endswith("_distill.log")


def test_a_recipe_folder_compressed_from_another_run_stops_the_grid(tmp_path):
    """`1mb/seed0` of the plain `kd` run must not pass for the `1mb` of `kd_strongaug` (same folder name)."""
    from liteda.record import DatasetRef, StageRecord, Transform, write_record

    task = tmp_path / "OfficeCaltech" / "A2W"
    (task / "kd" / "seed0").mkdir(parents=True)
    (task / "1mb" / "seed0").mkdir(parents=True)
    write_record(task / "1mb" / "seed0", StageRecord(
        kind="compress", name="1mb", label="1mb", seed=0, parents={"model": "../../kd/seed0"},
        dataset=DatasetRef("OfficeCaltech", "ROOT", "A", "W", ["a", "b"]), transform=Transform(256, 224, [0.5] * 3, [0.5] * 3)))
    args = ["grid", "ROOT", "-d", "OfficeCaltech", "--tasks", "A2W", "--runs", str(tmp_path), "--methods",
            "--recipes", "1mb", "-n"]
    same = subprocess.run([sys.executable, "-m", "liteda", *args], capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr
    other = subprocess.run([sys.executable, "-m", "liteda", *args, "--kd-args=--target-aug strong"],
                           capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and len(other.stderr.strip().splitlines()) == 1
    assert "1mb/seed0' was compressed from" in other.stderr and "kd_strongaug" in other.stderr


def test_a_finished_run_trained_with_other_settings_stops_the_grid(tmp_path):
    """A 30-epoch `kd` folder must not pass for a 50-epoch grid's (the folder name does not carry epochs or the
    input size): one-line error naming the folder and the setting."""
    from liteda.utils import write_json

    run = tmp_path / "OfficeCaltech" / "A2W" / "source_only" / "seed0"
    run.mkdir(parents=True)
    (run / "record.json").write_text("{}")
    write_json(run / "results.json", {"arch": "mobilenet_v3_small", "seed": 0, "epochs": 30, "crop_size": 224})
    args = ["grid", "ROOT", "-d", "OfficeCaltech", "--tasks", "A2W", "--runs", str(tmp_path), "--methods",
            "--recipes", "--only", "source_only", "-n"]
    same = subprocess.run([sys.executable, "-m", "liteda", *args, "--epochs", "30"], capture_output=True, text=True,
                          timeout=120)
    assert same.returncode == 0 and same.stdout.startswith("done  A2W source-only"), same.stderr
    more = subprocess.run([sys.executable, "-m", "liteda", *args, "--epochs", "50"], capture_output=True, text=True,
                          timeout=120)
    assert more.returncode != 0 and len(more.stderr.strip().splitlines()) == 1
    assert "source_only/seed0' was trained with epochs=30, this grid asks for epochs=50" in more.stderr


def test_a_teacher_that_is_a_table_row_with_other_epochs_is_refused_at_planning(tmp_path):
    """`--teacher mobilenet_v3_small --teacher-epochs 10` beside the 30-epoch MCC row: one folder, two experiments;
    the teacher must not silently become the 30-epoch row."""
    r = subprocess.run([sys.executable, "-m", "liteda", "grid", "ROOT", "-d", "OfficeCaltech", "--runs", str(tmp_path),
                        "--tasks", "W2A", "--methods", "mcc", "--teacher", "mobilenet_v3_small", "--teacher-epochs",
                        "10", "--recipes", "-n"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "would both train" in r.stderr and "epochs=30 and epochs=10" in r.stderr
