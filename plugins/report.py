"""Results folder from existing runs: tllib-style tables (Markdown + CSV), plots (PNG) and a report (MD + HTML).

    python -m liteda.report --runs runs --dataset OfficeCaltech --out results

Reads ``results.json`` of every training run (liteda.run/1), of compression (liteda.compress/1, in
``<task>/compressed/seed<k>/``) and deployment benchmarks (liteda.deploy_bench/1, ``<task>/kd/seed<k>/deploy/``).
Nothing is trained here; every number comes from those files.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import statistics
import sys
from pathlib import Path
from typing import Optional

from .tables import accuracy_grid, collect_runs, order_tasks, table_rows, to_csv, to_markdown
from .utils import atomic_write_text, fail, machine_info, machine_label, run_cli, write_json

ADAPT_ORDER = ["dann", "cdan", "cdan_e", "mdd", "jan", "dan", "coral", "mcc", "iwan", "shot_im"]
ROW_LABELS = {"source_only": "source-only", "kd": "distilled student", "compressed": "compressed student",
              "kd_int8": "distilled student, ORT INT8",
              "deployed_int8": "deployed INT8 (ORT, compressed student)",
              "deployed_int8w": "deployed INT8 weights, FP32 compute (ORT, compressed student)",
              "deployed_qat_int8": "deployed INT8 from QAT (ORT QDQ, compressed student)",
              "compressed_qat": "compressed student + QAT",
              "lowres": "distilled student, lower input resolution",
              "deployed_lowres_fp32": "deployed FP32, lower input resolution (ORT, distilled student)",
              "relu": "distilled student, ReLU activations",
              "deployed_relu_int8": "deployed INT8, ReLU activations (ORT, distilled student)",
              "relu_lowres": "distilled student, ReLU, lower input resolution",
              "deployed_relu_lowres_int8": "deployed INT8, ReLU, lower input resolution (ORT, distilled student)",
              "kd_ens": "distilled student, two-teacher ensemble",
              "kd_mcc": "distilled student + MCC on the student",
              "oracle": "oracle (target labels)"}

KD_ROWS = ("kd", "kd_ens", "kd_mcc")  # distilled-student runs (their results.json name the teachers)


def row_label(run: str) -> str:
    """A table row's name: the fixed ones above, a teacher run folder "<method>-<arch>" as "teacher: ..."."""
    if run in ROW_LABELS:
        return ROW_LABELS[run]
    method, sep, arch = run.partition("-")
    return f"teacher: {method} {arch}" if sep else run


# ----------------------------------------------------------------------------- gathering
def _read(p: Path) -> Optional[dict]:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _task_seed(p: Path) -> tuple[str, int]:
    # .../<task>/<method>/seed<k>/...
    parts = p.parts
    i = next(i for i in range(len(parts) - 1, -1, -1) if parts[i].startswith("seed") and parts[i][4:].isdigit())
    return parts[i - 2], int(parts[i][4:])


def compressed_runs(base: Path, run: str = "compressed") -> list[dict]:
    """The compression runs in ``<task>/<run>/seed<k>/`` as table rows named ``run``."""
    out = []
    for p in sorted(base.glob(f"*/{run}/seed*/results.json")):
        r = _read(p)
        if r and r.get("schema") == "liteda.compress/1":
            task, seed = _task_seed(p)
            a = r["after"]
            out.append({"method": run, "task": task, "seed": seed, "target_test": a["target_test"],
                        "before": r["before"], "stages": r.get("stages", []),
                        "resources": {"params": a.get("params"), "macs": a.get("macs"), "model_mb": a.get("file_mb")},
                        "latency_ms": a.get("latency_ms_p50"), "techniques": r.get("techniques"), "_path": str(p)})
    return out


def deploy_rows(base: Path) -> list[dict]:
    rows = []
    for p in sorted(base.glob("*/*/seed*/deploy/bench.json")):
        doc = _read(p)
        if doc and doc.get("schema") == "liteda.deploy_bench/1":
            task, seed = _task_seed(p)
            for r in doc["rows"]:
                rows.append({**r, "task": task, "seed": seed, "run": p.parent.parent.parent.name})
    return rows


def copy_deploy_tables(base: Path, out: Path) -> None:
    """Each deployment benchmark's own table (runs/ is not committed) as ``out/deploy/<task>_<run>_s<k>.*``."""
    import shutil

    for p in sorted(base.glob("*/*/seed*/deploy/bench.json")):
        task, seed = _task_seed(p)
        (out / "deploy").mkdir(parents=True, exist_ok=True)
        for ext in (".json", ".md", ".csv"):
            if p.with_suffix(ext).is_file():
                shutil.copyfile(p.with_suffix(ext), out / "deploy" / f"{task}_{p.parent.parent.parent.name}_s{seed}{ext}")


# (run, ORT precision) -> accuracy row: static INT8 of the compressed student (the deployed one) and of the
# distilled student (what INT8 alone costs); weight-only INT8 of the compressed student (the small, exact one)
DEPLOYED_ROWS = {("compressed", "int8"): "deployed_int8", ("kd", "int8"): "kd_int8",
                 ("compressed", "int8w"): "deployed_int8w", ("compressed_qat", "int8"): "deployed_qat_int8",
                 ("lowres", "fp32"): "deployed_lowres_fp32", ("relu", "int8"): "deployed_relu_int8",
                 ("relu_lowres", "int8"): "deployed_relu_lowres_int8"}


def copy_run_records(base: Path, out: Path) -> int:
    """Every run's results.json and history.csv (and the stage log) under ``out/runs/``: the tables' inputs
    travel with them when runs/ (checkpoints) is not committed. Returns the number of files copied."""
    import shutil

    n = 0
    for p in sorted({*base.glob("*/*/seed*/results.json"), *base.glob("*/*/seed*/history.csv"),
                     *base.glob(".stages.jsonl")}):
        dst = out / "runs" / str(p.relative_to(base)).lstrip(".")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)  # follows a linked run folder: the copy is a real file
        n += 1
    return n


def deployed_int8_runs(rows: list[dict]) -> list[dict]:
    """The ORT INT8 artifacts of ``DEPLOYED_ROWS`` as accuracy rows."""
    return [{"method": DEPLOYED_ROWS[(r["run"], r["precision"])], "task": r["task"], "seed": r["seed"],
             "target_test": {"acc": r["acc"]}, "size_mb": r.get("size_mb")}
            for r in rows if r.get("runtime") == "ort" and (r.get("run"), r.get("precision")) in DEPLOYED_ROWS
            and r.get("acc") is not None]


def _is_ort(row: dict, precision: str) -> bool:
    return row.get("runtime") == "ort" and row.get("precision") == precision


def row_order(methods: set[str]) -> list[str]:
    adapt = [m for m in ADAPT_ORDER if m in methods]
    teachers = sorted(m for m in methods if "-" in m)
    others = sorted(methods - set(adapt) - set(teachers) - set(ROW_LABELS))
    head = [m for m in ("source_only",) if m in methods]
    tail = [m for m in (*KD_ROWS, "kd_int8", "lowres", "deployed_lowres_fp32", "relu", "deployed_relu_int8",
                        "relu_lowres", "deployed_relu_lowres_int8", "compressed", "deployed_int8",
                        "deployed_int8w", "deployed_qat_int8", "oracle")
            if m in methods]
    return head + adapt + others + teachers + tail


# ----------------------------------------------------------------------------- tables
def accuracy_table(runs: list[dict], metric=lambda r: r["target_test"]["acc"]) -> tuple[list[str], list[list[str]]]:
    g = accuracy_grid(runs, metric, rows=row_order({r["method"] for r in runs}))
    header, body = table_rows(g)
    for row in body:
        row[0] = row_label(row[0])
    return header, body


def teachers_used(runs: list[dict]) -> list[str]:
    """'<method> <arch>' of every teacher the distilled-student runs learned from (their results.json), and which
    teacher seeds taught which student seeds when they differ (make TEACHER_SEED=0: one teacher, several students)."""
    pairs: dict[str, set] = {}
    for r in runs:
        if r["method"] not in KD_ROWS:
            continue
        for t in (r.get("method_config") or {}).get("teachers", []):
            pairs.setdefault(f"{t.get('method') or '?'} {t.get('arch', '?')}", set()).add((t.get("seed"), r.get("seed")))
    out = []
    for name, seeds in sorted(pairs.items()):
        if any(ts != ss for ts, ss in seeds):
            by_teacher = {ts: sorted(ss for t2, ss in seeds if t2 == ts) for ts, _ in seeds}
            name += " (" + "; ".join(f"teacher seed {ts} for student seeds {', '.join(map(str, sv))}"
                                     for ts, sv in sorted(by_teacher.items(), key=str)) + ")"
        out.append(name)
    return out


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def resource_table(runs: list[dict], dep: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "params (M)", "MACs (M)", "size (MB)"]
    body = []
    for m in row_order({r["method"] for r in runs if r.get("resources")}):
        rs = [r["resources"] for r in runs if r["method"] == m and r.get("resources")]
        params, macs, mb = (_mean(x.get(k) for x in rs) for k in ("params", "macs", "model_mb"))
        body.append([row_label(m), _f(params, 1e6, 3), _f(macs, 1e6, 1), _f(mb, 1, 2)])
    dh = ["Artifact", "size (MB)", "target-test acc %", "bs1 p50 ms", "bs32 img/s", "tasks"]
    db = []
    for run in ("kd", "lowres", "relu", "relu_lowres", "compressed", "compressed_qat"):
        for key in sorted({r["name"] for r in dep if r.get("run") == run}):
            rs = [r for r in dep if r["name"] == key and r.get("run") == run]
            db.append([f"{row_label(run)}: {key}", _f(_mean(r.get("size_mb") for r in rs), 1, 2),
                       _f(_mean(r.get("acc") for r in rs), 1, 1), _f(_mean(r.get("p50_ms") for r in rs), 1, 2),
                       _f(_mean(r.get("bs32_img_s") for r in rs), 1, 0), str(len({r["task"] for r in rs}))])
    return header, body, dh, db


def compression_table(comp: list[dict], dep: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per task and seed: the student, then the target-test accuracy after each compression stage (each after
    its recovery fine-tune), the compressed model's size, and its INT8 artifacts (ORT static, weight-only, and the
    QAT export where the grid ran QAT)."""
    if not comp:
        return [], []
    ops = [st["op"] + (f":{st['kind']}" if st.get("kind") else "") for st in comp[0]["stages"]]
    def by_task(run: str, precision: str) -> dict:
        return {(r["task"], r["seed"]): r for r in dep if r.get("run") == run and _is_ort(r, precision)}

    artifacts = [("ORT INT8", by_task("compressed", "int8")), ("INT8-weights", by_task("compressed", "int8w")),
                 ("QAT INT8", by_task("compressed_qat", "int8"))]
    artifacts = [(name, rows) for name, rows in artifacts if rows or name != "QAT INT8"]
    header = ["Task", "student", *[f"after {o}" for o in ops], "params (M)", "float file (MB)",
              *[f"{name} {col}" for name, _ in artifacts for col in ("acc", "(MB)")]]
    body = []
    tasks = order_tasks({c["task"] for c in comp})
    for c in sorted(comp, key=lambda c: (tasks.index(c["task"]), c["seed"])):
        accs = [st.get("target_test_acc") for st in c["stages"]]
        arts = [rows.get((c["task"], c["seed"]), {}) for _, rows in artifacts]
        body.append([f"{c['task']} s{c['seed']}", _f(c["before"]["target_test"]["acc"], 1, 1),
                     *[_f(a, 1, 1) for a in accs] + ["–"] * (len(ops) - len(accs)),
                     _f(c["resources"].get("params"), 1e6, 3), _f(c["resources"].get("model_mb"), 1, 2),
                     *[v for a in arts for v in (_f(a.get("acc"), 1, 1), _f(a.get("size_mb"), 1, 2))]])
    return header, body


def validator_table(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Label-free validators of each trained run (last epoch) beside the target-test accuracy they should track:
    a user picks a method or teacher by the validator, never by the accuracy column."""
    header = ["Task", "Run", "IM score (↑)", "SND (↑)", "target-test acc %"]
    body = []
    order = row_order({r["method"] for r in runs})
    for r in sorted(runs, key=lambda r: (r["task"], r["seed"], order.index(r["method"]))):
        if r.get("regime") == "oracle" or "validator" not in r:
            continue
        snd = _last_history_value(Path(r["_path"]).parent / "history.csv", "target_test_snd")
        body.append([f"{r['task']} s{r['seed']}", row_label(r["method"]),
                     f"{r['validator']['im_score']:.3f}", "–" if snd is None else f"{snd:.3f}",
                     f"{r['target_test']['acc']:.1f}"])
    return header, body



def _validators(r: dict) -> dict[str, Optional[float]]:
    snd = _last_history_value(Path(r["_path"]).parent / "history.csv", "target_test_snd") if "_path" in r else None
    return {"IM": r["validator"]["im_score"], "SND": snd}


def _spearman(x: list[float], y: list[float]) -> Optional[float]:
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
    return None if rho != rho else float(rho)


def validator_agreement(runs: list[dict], min_runs: int = 3) -> tuple[list[str], list[list[str]]]:
    """How well each label-free validator ranks the trained runs of one task and seed (oracle excluded): the
    rank correlation with target-test accuracy, and the accuracy of the run it would pick vs the best one.
    This is the check a user cannot do without labels; it says how far to trust the validator's pick."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        if r.get("regime") != "oracle" and "validator" in r:
            groups.setdefault((r["task"], r["seed"]), []).append(r)
    header = ["Task", "runs", "Spearman IM", "IM pick (acc %)", "Spearman SND", "SND pick (acc %)", "best acc %"]
    body, picks = [], {"IM": [], "SND": [], "best": []}
    tasks = order_tasks(t for t, _ in groups)
    for (task, seed), rs in sorted(groups.items(), key=lambda kv: (tasks.index(kv[0][0]), kv[0][1])):
        if len(rs) < min_runs:
            continue
        acc = [r["target_test"]["acc"] for r in rs]
        vals = [_validators(r) for r in rs]
        row = [f"{task} s{seed}", str(len(rs))]
        for name in ("IM", "SND"):
            v = [x[name] for x in vals]
            if any(x is None for x in v):
                row += ["–", "–"]
                continue
            k = max(range(len(rs)), key=v.__getitem__)
            rho = _spearman(v, acc)
            row += ["–" if rho is None else f"{rho:+.2f}", f"{row_label(rs[k]['method'])} ({acc[k]:.1f})"]
            picks[name].append(acc[k])
        picks["best"].append(max(acc))
        body.append(row + [f"{max(acc):.1f}"])
    if body:
        mean = lambda xs: f"{statistics.fmean(xs):.1f}" if len(xs) == len(body) else "–"  # noqa: E731
        body.append(["mean", "", "", mean(picks["IM"]), "", mean(picks["SND"]), mean(picks["best"])])
    return header, body

def _last_history_value(path: Path, key: str) -> Optional[float]:
    import csv

    try:
        rows = list(csv.DictReader(path.open()))
        return float(rows[-1][key]) if rows and rows[-1].get(key) else None
    except (OSError, ValueError, KeyError):
        return None


def _f(v: Optional[float], div: float, digits: int) -> str:
    return "–" if v is None else f"{v / div:.{digits}f}"


# ----------------------------------------------------------------------------- plots
def plot_a_distance(runs: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(f"{r['task']} {r['method']}", r["analysis"]["a_distance"]) for r in runs if r.get("analysis")]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(pts) + 2), 3.2))
    ax.bar(range(len(pts)), [v for _, v in pts], color="tab:blue")
    ax.set_xticks(range(len(pts)), [k for k, _ in pts], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("A-distance (lower = closer domains)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_pareto(runs: list[dict], comp: list[dict], dep: list[dict], path: Path) -> bool:
    """Accuracy vs bs1 latency, marker area ~ file size: one point per artifact kind (mean over tasks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = []
    for run, key in sorted({(r.get("run", ""), r["name"]) for r in dep}):
        rs = [r for r in dep if r["name"] == key and r.get("run", "") == run]
        acc, lat, mb = (_mean(r.get(k) for r in rs) for k in ("acc", "p50_ms", "size_mb"))
        if None not in (acc, lat):
            pts.append((f"{run}:{key}", acc, lat, mb or 1.0))
    if comp:
        acc = _mean(c["target_test"]["acc"] for c in comp)
        lat = _mean(c.get("latency_ms") for c in comp)
        mb = _mean(c["resources"].get("model_mb") for c in comp)
        if lat is not None:
            pts.append(("compressed (torch)", acc, lat, mb or 1.0))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc, lat, mb in pts:
        ax.scatter(lat, acc, s=40 + 40 * mb, alpha=0.6)
        ax.annotate(name, (lat, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("bs1 latency p50 (ms)"), ax.set_ylabel("target-test accuracy (%)")
    ax.set_title("accuracy vs latency (marker area ~ size MB)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def collect_images(runs: list[dict], out: Path) -> dict[str, list[tuple[str, Path]]]:
    """Per-run PNGs the stages wrote, grouped by kind (first task only for curves/t-SNE to keep it short)."""
    tasks = order_tasks({r["task"] for r in runs})
    first = tasks[0] if tasks else None
    groups: dict[str, list[tuple[str, Path]]] = {"curves": [], "tsne": [], "confusion": []}
    for r in sorted(runs, key=lambda r: row_order({x["method"] for x in runs}).index(r["method"])):
        d = Path(r["_path"]).parent
        if r["task"] == first and r["seed"] == min(x["seed"] for x in runs):
            for kind, f in (("curves", "curves.png"), ("tsne", "tsne.png")):
                if (d / f).is_file():
                    groups[kind].append((f"{r['task']} {r['method']}", d / f))
        if r["method"] == "kd" and (d / "confusion_target_test.png").is_file() and r["seed"] == 0:
            groups["confusion"].append((f"{r['task']} distilled student", d / "confusion_target_test.png"))
    return groups


# ----------------------------------------------------------------------------- report
def build(runs_root: Path, dataset: str, out: Path) -> dict:
    base = runs_root / dataset
    if not base.is_dir():
        fail(f"no runs for dataset '{dataset}' under '{runs_root}'")
    runs = collect_runs(runs_root, dataset)
    comp, dep = compressed_runs(base), deploy_rows(base)
    variants = [r for v in ("lowres", "relu", "relu_lowres") for r in compressed_runs(base, v)]  # the student's variants
    copy_deploy_tables(base, out)
    copy_run_records(base, out)
    all_rows = runs + comp + variants + deployed_int8_runs(dep)
    if not all_rows:
        fail(f"no finished runs under '{base}'")
    out.mkdir(parents=True, exist_ok=True)
    header, body = accuracy_table(all_rows)
    # PROTOCOL.md asks for both: all target images (tllib's transductive number; 80% of them were seen unlabeled)
    ah, ab = accuracy_table(runs, lambda r: (r.get("target_all") or {}).get("acc"))
    sh, sb = accuracy_table(runs, lambda r: (r.get("timing") or {}).get("seconds_per_epoch"))
    rh, rb, dh, db = resource_table(runs + comp + variants, dep)
    protocol = sorted({r.get("protocol", "heldout") for r in runs}) or ["heldout"]
    weights = sorted({r.get("weights", "?") for r in runs})
    seeds = sorted({r["seed"] for r in all_rows})
    info = machine_info()
    atomic_write_text(out / "accuracy.md", to_markdown(header, body))
    atomic_write_text(out / "accuracy.csv", to_csv(header, body))
    atomic_write_text(out / "accuracy_all_target.md", to_markdown(ah, ab))
    atomic_write_text(out / "accuracy_all_target.csv", to_csv(ah, ab))
    atomic_write_text(out / "seconds_per_epoch.md", to_markdown(sh, sb))
    if comp:
        atomic_write_text(out / "compression.md", to_markdown(*compression_table(comp, dep)))
    atomic_write_text(out / "resources.md", to_markdown(rh, rb) + "\n" + to_markdown(dh, db))
    atomic_write_text(out / "resources.csv", to_csv(rh, rb) + "\n" + to_csv(dh, db))
    figs = {}
    if plot_a_distance(runs, out / "a_distance.png"):
        figs["A-distance per run"] = out / "a_distance.png"
    if plot_pareto(runs, comp, dep, out / "pareto.png"):
        figs["Accuracy vs latency vs size"] = out / "pareto.png"
    images = collect_images(runs, out)
    machines = sorted({machine_label(r["machine"]) for r in runs if r.get("machine")}) or [machine_label(info)]
    epochs = sorted({r.get("epochs") for r in runs if r.get("epochs")})
    setup = (f"Dataset **{dataset}**, protocol **{', '.join(protocol)}** (held-out: train on source-train + "
             f"unlabeled target-train, report target-test), epochs {', '.join(map(str, epochs))}, seeds "
             f"{', '.join(map(str, seeds))}. Weights: {'; '.join(weights)}. Training machine: {'; '.join(machines)}. "
             + (f"Distilled student's teacher: {'; '.join(teachers_used(runs))}. " if teachers_used(runs) else "")
             + "Regenerate: `make report` "
             f"(or `python -m liteda.report --runs {runs_root} --dataset {dataset} --out {out}`).")
    md = "\n".join([
        f"# LiteDA report — {dataset}", "", "## Setup", setup, "",
        "## Protocol", "Source-only and adaptation runs never read a target label (unlabeled target batches carry "
        "label -1); the last epoch is reported, no checkpoint selection. The oracle trains on labeled target-train "
        "with the same epochs and iterations. Compression calibrates and fine-tunes on unlabeled target images "
        "only. Each artifact's accuracy is measured by running that artifact.", "",
        "## Target-test accuracy (%)", to_markdown(header, body),
        "## Accuracy on all target images (%)", "The same models scored on every target image (train + test "
        "split), the number tllib's transductive tables report; target-train images were seen unlabeled in "
        "training (by the oracle with their labels: its row here is partly training accuracy).", "",
        to_markdown(ah, ab),
        "## Training seconds per epoch", f"Machine: {'; '.join(machines)}.", "", to_markdown(sh, sb),
        "## Resources", to_markdown(rh, rb), to_markdown(dh, db),
        "## Compression, stage by stage", "Target-test accuracy (%) of the distilled student, after each "
        "compression stage (each followed by its self-distillation fine-tune on unlabeled images) and of the "
        "compressed model's two ONNX Runtime INT8 artifacts: static INT8 (INT8 compute, calibrated on unlabeled "
        "target images) and INT8 weights with FP32 compute (dequantized once at load).", "",
        to_markdown(*compression_table(comp, dep)) if comp else "No compressed run yet.",
        "## Label-free validators vs target accuracy", "Computed from target predictions only (no labels); "
        "higher should mean better adaptation. Use them, not target accuracy, to choose a method or teacher.",
        "", to_markdown(*validator_table(runs)),
        "How well each validator ranks a task's trained runs (rank correlation with target-test accuracy; the "
        "run it would pick and that run's accuracy, vs the best run; computed afterwards, with labels):", "",
        to_markdown(*validator_agreement(runs)),
        "## What helped and what did not", what_helped(all_rows), "",
    ])
    md_imgs = "\n".join(f"### {k}\n![{k}]({p.name})" for k, p in figs.items())
    atomic_write_text(out / "report.md", md + "\n## Plots\n" + md_imgs + "\n" + _md_run_images(images, out))
    atomic_write_text(out / "report.html", to_html(md, figs, images))
    summary = {"machine": info, "dataset": dataset, "seeds": seeds, "weights": weights,
               "accuracy": {"header": header, "rows": body}, "n_runs": len(all_rows)}
    write_json(out / "summary.json", summary)
    print(to_markdown(header, body))
    print(f"report: {out / 'report.html'} and {out / 'report.md'}")
    return summary


def what_helped(rows: list[dict]) -> str:
    """Plain statements derived from the averages (no hand-written numbers)."""
    g = accuracy_grid(rows)
    tasks = g["tasks"]

    def avg(m):
        cells = g["grid"].get(m, {})
        vals = [statistics.fmean(cells[t].values()) for t in tasks if t in cells]
        return statistics.fmean(vals) if len(vals) == len(tasks) and vals else None

    base, oracle = avg("source_only"), avg("oracle")
    lines = []
    for m in g["rows"]:
        a = avg(m)
        if a is None or m in ("source_only",):
            continue
        parts = []
        if base is not None and m != "source_only":
            parts.append(f"{a - base:+.1f} pt vs source-only")
        if oracle is not None and m != "oracle":
            parts.append(f"{a - oracle:+.1f} pt vs oracle")
        lines.append(f"- {row_label(m)}: average {a:.1f}% ({', '.join(parts)})")
    return "\n".join(lines) if lines else "- not enough finished runs for averages over every task"


def _md_run_images(images: dict, out: Path) -> str:
    """Copies the runs' PNGs into ``out/figures`` (runs/ is not committed) and links them relatively."""
    import shutil

    chunks = []
    (out / "figures").mkdir(exist_ok=True)
    for kind, items in images.items():
        for title, p in items:
            name = f"{title.replace(' ', '_')}_{Path(p).name}"
            shutil.copyfile(p, out / "figures" / name)
            chunks.append(f"### {kind}: {title}\n![{title}](figures/{name})")
    return "\n".join(chunks)


def _img_tag(p: Path, alt: str) -> str:
    data = base64.b64encode(Path(p).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def to_html(md: str, figs: dict, images: dict) -> str:
    """Self-contained HTML: the Markdown rendered minimally (headings, tables, lists, code), images inlined."""
    body = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("|"):
            tbl = []
            while i < len(lines) and lines[i].startswith("|"):
                tbl.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, rows = tbl[0], [r for r in tbl[2:]]
            body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</tbody></table>")
            continue
        if ln.startswith("#"):
            level = len(ln) - len(ln.lstrip("#"))
            body.append(f"<h{level}>{html.escape(ln.lstrip('# '))}</h{level}>")
        elif ln.startswith("- "):
            body.append(f"<li>{_inline(ln[2:])}</li>")
        elif ln.strip():
            body.append(f"<p>{_inline(ln)}</p>")
        i += 1
    body.append("<h2>Plots</h2>")
    body += [_img_tag(p, k) for k, p in figs.items()]
    for kind, items in images.items():
        body += [_img_tag(p, f"{kind}: {t}") for t, p in items]
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>LiteDA report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs")
    p.add_argument("--dataset", default="OfficeCaltech")
    p.add_argument("--out", default="results")
    a = p.parse_args(argv)
    build(Path(a.runs), a.dataset, Path(a.out))


if __name__ == "__main__":
    sys.exit(run_cli(main))
