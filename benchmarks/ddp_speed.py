"""Data-parallel training on a CPU: images per second with 1 and with 2 processes (torchrun, gloo, one thread
each), and the demo's adaptation trained to the end with 1 and with 2 processes (same seed, same global batch).

    python benchmarks/ddp_speed.py --out benchmarks/results/ddp_speed

Every run is the real command (``liteda adapt -m dann`` with the demo's recipe on the embedded digits, made offline
by ``liteda.digits``), started as one process or as ``torchrun --standalone --nproc_per_node 2``. Speed: the mean
images/s (source + target images of all processes, training only) of the epochs after the first, for each input
size; 1- and 2-process runs alternate in rounds so that other jobs on the machine hit both alike. Accuracy: the
demo's DANN stage, all its epochs, target-test accuracy of the last epoch (one seed: the two runs differ by their
augmentation streams and per-process BatchNorm statistics, docs/distributed.md).
"""
from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from liteda.demo import DEMO_GRID
from liteda.tables import to_markdown
from liteda.utils import atomic_write_text, machine_info, read_json, write_json

TASK = ["-d", "Digits", "-s", "S", "-t", "M"]


def command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "liteda"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "liteda"]


def train(processes: int, root: str, runs: Path, flags: list[str]) -> tuple[dict, list[dict], float]:
    """One ``liteda adapt -m dann`` run into ``runs``; its results, history rows and wall seconds."""
    env = {**os.environ, "LITEDA_THREADS": "1", "OMP_NUM_THREADS": "1"}
    argv = [*command(processes), "adapt", "-m", "dann", root, *TASK, "--no-progress", "--runs-root", str(runs),
            "--cache-dir", str(runs.parent / "cache"), *flags]
    t0 = time.time()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"error: {shlex.join(argv)} failed:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    run = next(p.parent for p in runs.glob("Digits/S2M/*/seed*/results.json"))
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return read_json(run / "results.json"), rows, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/digits", help="where the embedded digits are (made if missing)")
    p.add_argument("--crops", type=int, nargs="+", default=[32, 64],
                   help="input sizes of the speed runs (32: the demo's; larger: more compute per image)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each speed run (the first is not timed)")
    p.add_argument("-i", "--iters", type=int, default=10, help="iterations per epoch of the speed runs")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the accuracy runs")
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false", help="speed only")
    p.add_argument("--out", default="benchmarks/results/ddp_speed")
    a = p.parse_args()
    recipe = shlex.split(DEMO_GRID["--train-args"]) + shlex.split(DEMO_GRID["--method-args"])
    info = machine_info()
    doc: dict = {"machine": info, "cores": os.cpu_count(), "threads_per_process": 1, "backend": "gloo",
                 "recipe": recipe, "speed": {}, "accuracy": {}, "load_average_1min": [os.getloadavg()[0]]}
    with tempfile.TemporaryDirectory() as tmp:
        for crop in a.crops:
            size = ["--resize-size", str(crop + crop // 8), "--crop-size", str(crop)]
            flags = [*recipe, *size, "--epochs", str(a.epochs), "-i", str(a.iters), "--seed", str(a.seed)]
            rates: dict[int, list[float]] = {1: [], 2: []}
            for r in range(a.rounds):
                for n in (1, 2):
                    _, rows, _ = train(n, a.root, Path(tmp) / f"speed{crop}_{n}_{r}", flags)
                    rates[n].append(statistics.mean(float(row["images_per_s"]) for row in rows[1:]))
                    print(f"{crop} px, {n} process(es), round {r + 1}: {rates[n][-1]:.1f} img/s", flush=True)
            doc["speed"][str(crop)] = {str(n): {"img_per_s": statistics.median(v), "rounds": v} for n, v in rates.items()}
        doc["load_average_1min"].append(os.getloadavg()[0])
        if a.accuracy:
            flags = [*recipe, "--epochs", DEMO_GRID["--epochs"], "--seed", str(a.seed)]
            for n in (1, 2):
                res, _, wall = train(n, a.root, Path(tmp) / f"accuracy_{n}", flags)
                doc["accuracy"][str(n)] = {"target_test_acc": res["target_test"]["acc"],
                                           "source_test_acc": res["source_test"]["acc"],
                                           "train_seconds": res["timing"]["train_seconds"], "wall_seconds": wall,
                                           "images_per_s": res["timing"]["images_per_s"]}
                print(f"accuracy, {n} process(es): target-test {res['target_test']['acc']:.1f} %, {wall:.0f} s",
                      flush=True)
            doc["load_average_1min"].append(os.getloadavg()[0])
    write_json(Path(a.out).with_suffix(".json"), doc)
    atomic_write_text(Path(a.out).with_suffix(".md"), markdown(doc, a))
    print(Path(a.out).with_suffix(".md").read_text())


def markdown(doc: dict, a: argparse.Namespace) -> str:
    load = " → ".join(f"{x:.1f}" for x in doc["load_average_1min"])
    busy = (" Other jobs shared the cores (load above the core count): absolute images/s are low, a second process "
            "got only part of a core, and the speed-ups are not those of a quiet machine."
            if max(doc["load_average_1min"]) > doc["cores"] else "")
    rows = []
    for crop, by_n in doc["speed"].items():
        one, two = by_n["1"]["img_per_s"], by_n["2"]["img_per_s"]
        rows.append([f"{crop} px", f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}×"])
    out = (f"# Data-parallel training on a CPU: 1 vs 2 processes\n\n"
           f"Machine: {doc['cores']}-core {doc['machine']['cpu']} CPU, torch {doc['machine']['torch']}; "
           f"torchrun --standalone, gloo, {doc['threads_per_process']} thread per process. "
           f"1-min load average {load}.{busy}\n"
           f"Run: `liteda adapt -m dann` on the embedded digits S→M with the demo's recipe "
           f"(`{' '.join(doc['recipe'])}`), MobileNetV3-Small from scratch, global batch 32 per domain (16 per process "
           f"with 2); input: `--crop-size` (`--resize-size` 9/8 of it). Images/s: source + target images of all "
           f"processes per second of training, mean of epochs 2-{a.epochs} ({a.iters} iterations each), median of "
           f"{a.rounds} alternating rounds.\n"
           f"Regenerate: `python benchmarks/ddp_speed.py --out {a.out}`\n\n"
           + to_markdown(["input", "1 process, images/s", "2 processes, images/s", "speed-up"], rows))
    if doc["accuracy"]:
        acc = doc["accuracy"]
        one = acc["1"]["images_per_s"]
        out += (f"\n\nThe demo's DANN stage to the end ({DEMO_GRID['--epochs']} epochs, seed {a.seed}, 32 px), "
                f"1 vs 2 processes: same seed and global batch; the augmentation streams and the per-process "
                f"BatchNorm statistics differ, so the runs are not bit-identical. One seed: the demo's seeds 0-2 "
                f"spread this row over 20 points ([demo_seeds.md](demo/demo_seeds.md)). Images/s: mean over all "
                f"epochs of the run.\n\n"
                + to_markdown(["processes", "target-test acc %", "source-test acc %", "images/s", "speed-up",
                               "train s", "wall s"],
                              [[n, f"{r['target_test_acc']:.1f}", f"{r['source_test_acc']:.1f}",
                                f"{r['images_per_s']:.1f}", f"{r['images_per_s'] / one:.2f}×",
                                f"{r['train_seconds']:.0f}", f"{r['wall_seconds']:.0f}"] for n, r in acc.items()]))
    return out + "\n"


if __name__ == "__main__":
    main()
