"""Distillation benchmark: source-only student, adapted teacher, distilled student, per task and seed.

Office-Caltech-10 with the stand-in weights of this machine (student MobileNetV3-Small stand-in, teacher timm
tf_efficientnet_lite0 with its ImageNet weights, adapted with --teacher-method). Runs that already have a
model.pt are reused (source-only and teachers); the kd student is always trained. Writes
<out>/<name>.{md,csv,json}.

    python benchmarks/bench_distill.py --tasks A2W D2W W2D A2D D2A W2A --seeds 0 1 2 --epochs 30

Tiny check (seconds): --root <folder dataset> -d Custom --tasks src2tgt --epochs 1 --student-pretrained ''
--teacher-pretrained '' --extra '--resize-size 36 --crop-size 32 -b 8 -i 2 --scratch' --out /tmp/bench
"""
from __future__ import annotations

import argparse
import csv
import io
import shlex
import statistics
import sys
from pathlib import Path

from liteda.distill import ensure_run, run_kd
from liteda.utils import atomic_write_text, machine_info, machine_label, read_json, run_cli, write_json

SHARED = Path("/work/shared")
COLUMNS = ["task", "seed", "source_only_acc", "teacher", "teacher_acc", "kd_acc", "kd_minus_source_only",
           "kd_train_seconds"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(SHARED / "datasets" / "office_caltech_10"))
    p.add_argument("-d", "--data", default="OfficeCaltech")
    p.add_argument("--tasks", nargs="+", default=["A2W", "D2W", "W2D", "A2D", "D2A", "W2A"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--student-pretrained", default=str(SHARED / "weights" / "mobilenet_v3_small-imagenet-standin.pth"),
                   help="'' for none (then --extra should hold --scratch)")
    p.add_argument("--teacher", default="tf_efficientnet_lite0")
    p.add_argument("--teacher-pretrained", default=str(SHARED / "weights" / "tf_efficientnet_lite0-imagenet.pth"))
    p.add_argument("--teacher-method", default="cdan")
    p.add_argument("--kd-args", default="", help="extra kd flags, e.g. '--kd-T 4 --pseudo-threshold 0.9'")
    p.add_argument("--extra", default="", help="flags for every run, e.g. '--freeze-stages 4'")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="distill")
    return p.parse_args(argv)


def common_argv(a, task: str, seed: int) -> list[str]:
    source, target = task.split("2")
    return [a.root, "-d", a.data, "-s", source, "-t", target, "--seed", str(seed), "--epochs", str(a.epochs),
            "--runs-root", a.runs_root, "--no-progress", *shlex.split(a.extra)]


def run_one(a, task: str, seed: int) -> dict:
    common = common_argv(a, task, seed)
    student = ["--pretrained", a.student_pretrained] if a.student_pretrained else []
    source_only = read_json(ensure_run("source_only", "source_only", common + student).parent / "results.json")
    teacher = ["--teacher", a.teacher, "--teacher-method", a.teacher_method]
    teacher += ["--teacher-pretrained", a.teacher_pretrained] if a.teacher_pretrained else []
    kd = run_kd(common + student + teacher + shlex.split(a.kd_args))
    t = kd["method_config"]["teachers"][0]
    return {"task": task, "seed": seed, "source_only_acc": source_only["target_test"]["acc"],
            "teacher": f"{t['arch']} ({a.teacher_method})", "teacher_acc": t["target_test_acc"],
            "kd_acc": kd["target_test"]["acc"],
            "kd_minus_source_only": kd["target_test"]["acc"] - source_only["target_test"]["acc"],
            "kd_train_seconds": kd["timing"]["train_seconds"]}


def mean_std(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def summary(rows: list[dict]) -> list[dict]:
    tasks = list(dict.fromkeys(r["task"] for r in rows)) + ["avg"]
    pick = lambda t: [r for r in rows if t == "avg" or r["task"] == t]  # noqa: E731
    keys = ("source_only_acc", "teacher_acc", "kd_acc", "kd_minus_source_only")
    return [{"task": t, "seeds": len({r["seed"] for r in pick(t)}), **{k: mean_std([r[k] for r in pick(t)]) for k in keys}}
            for t in tasks]


def markdown(a, rows: list[dict], summ: list[dict], command: str) -> str:
    weights = "stand-in ImageNet weights (see ../shared/README.md), not torchvision's" if a.student_pretrained else \
        "no pretrained student weights"
    lines = [f"# Distillation on {a.data} (target-test accuracy, %, held-out protocol)", "",
             f"Student MobileNetV3-Small, teacher {a.teacher} adapted with {a.teacher_method}; {weights}. "
             f"{a.epochs} epochs. Machine: {machine_label()}.", "", f"Command: `{command}`", "",
             "| task | seeds | source-only | teacher | kd student | kd - source-only |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['task']} | {s['seeds']} | {s['source_only_acc']} | {s['teacher_acc']} | {s['kd_acc']} | "
              f"{s['kd_minus_source_only']} |" for s in summ]
    lines += ["", "Per run:", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    return "n/a" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main(argv=None) -> None:
    a = parse_args(argv)
    rows = [run_one(a, task, seed) for task in a.tasks for seed in a.seeds]
    summ = summary(rows)
    command = " ".join(["python", "benchmarks/bench_distill.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    out = Path(a.out)
    atomic_write_text(out / f"{a.name}.csv", to_csv(rows))
    atomic_write_text(out / f"{a.name}.md", markdown(a, rows, summ, command))
    write_json(out / f"{a.name}.json", {"rows": rows, "summary": summ, "command": command, "machine": machine_info()})
    print(markdown(a, rows, summ, command))


if __name__ == "__main__":
    sys.exit(run_cli(main))
