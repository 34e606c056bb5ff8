"""The report's tables, built from collected rows (``collect.py``); each returns ``(header, body)``.

Accuracy cells are mean ± std over seeds (``liteda.tables``); rows follow ``order`` and carry their records'
labels. Nothing here names a stage: groups (``source_only``, ``adapt``, ``distill``, ``compress``, ``deployed``,
``oracle``, ...) come from the records' kinds.
"""
from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..tables import accuracy_grid, average_by_seed, average_over_tasks, fmt_ms, order_tasks, table_rows
from .collect import STUDENT_ARCH, Stage, group_of, group_rank, label_of, row_labels

Table = tuple[list[str], list[list[str]]]
Metric = Callable[[dict], Optional[float]]

# The groups the product's three-way table shows: unadapted, adapted, distilled, deployed small, oracle.
HEADLINE_GROUPS = ("source_only", "adapt", "distill", "deployed", "oracle")


def target_test_acc(r: dict) -> Optional[float]:
    return (r.get("target_test") or {}).get("acc")


def target_all_acc(r: dict) -> Optional[float]:
    return (r.get("target_all") or {}).get("acc")


def seconds_per_epoch(r: dict) -> Optional[float]:
    return (r.get("timing") or {}).get("seconds_per_epoch")


def _f(v: Optional[float], div: float = 1, digits: int = 2) -> str:
    return "–" if v is None else f"{v / div:.{digits}f}"


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def _relabel(body: list[list[str]], labels: dict[str, str]) -> list[list[str]]:
    for row in body:
        row[0] = labels.get(row[0], row[0])
    return body


# ----------------------------------------------------------------------------- accuracy
# The target metrics every results.json carries (metrics.classification_metrics): (column, key, decimals)
METRICS = (("acc %", "acc", 1), ("loss", "loss", 3), ("precision %", "precision_macro", 1),
           ("recall %", "recall_macro", 1), ("F1 %", "f1_macro", 1), ("NMI", "nmi", 3), ("Rand", "rand", 3),
           ("ARI", "ari", 3))


def metrics_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None,
                  task: Optional[str] = None) -> Table:
    """Every row's target-test metrics (accuracy, cross-entropy, macro precision/recall/F1, NMI, Rand index,
    adjusted Rand index), mean ± std over seeds: averaged over the tasks, or of one ``task``. A metric a row's
    records do not hold is "–" (a deployed file benchmarked before bench recorded more than its accuracy)."""
    if task is not None:
        rows = [r for r in rows if r["task"] == task]
    grids = [(col, accuracy_grid(rows, lambda r, k=key: (r.get("target_test") or {}).get(k), rows=order), digits)
             for col, key, digits in METRICS]
    keys = [k for k in order if any(k in g["grid"] for _, g, _ in grids)]
    body = [[k, *[fmt_ms(average_over_tasks(g, k), digits) for _, g, digits in grids]] for k in keys]
    body = [line for line in body if any(cell != "–" for cell in line[1:])]
    return ["Method", *[col for col, _, _ in grids]], _relabel(body, labels or row_labels(list(rows)))


def metrics_by_task(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """:func:`metrics_table` for each task in turn (a ``Task`` column first)."""
    header, body = ["Task", "Method", *[col for col, _, _ in METRICS]], []
    for task in order_tasks({r["task"] for r in rows}):
        body += [[task.replace("2", "→"), *line] for line in metrics_table(rows, order, labels, task)[1]]
    return header, body


def accuracy_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None,
                   metric: Metric = target_test_acc) -> Table:
    """Rows x tasks + Avg + seeds of ``metric`` (rows without it are left out)."""
    header, body = table_rows(accuracy_grid(rows, metric, rows=order))
    return header, _relabel(body, labels or row_labels(list(rows)))


def headline_rows(rows: Sequence[dict]) -> list[dict]:
    """The product's three-way comparison: source-only, each adaptation method and the distilled student (all the
    student arch), each deployed file of a compressed model and each artifact bench recommended, and the oracle."""
    picked = {r["method"] for r in rows if r.get("recommended")}  # a pick on some seed shows the artifact's row

    def shown(r: dict) -> bool:
        if r.get("group") not in HEADLINE_GROUPS:
            return False
        if r["group"] == "deployed":
            return r.get("parent_kind") == "compress" or r["method"] in picked
        return r.get("arch", STUDENT_ARCH) == STUDENT_ARCH
    return [r for r in rows if shown(r)]


def headline_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """Target-test accuracy per task and Avg, then the row's size (MB) and bs1 p50 latency (ms) where it has them."""
    rows = headline_rows(rows)
    header, body = table_rows(accuracy_grid(rows, target_test_acc, rows=order))
    for line in body:  # line[0] is still the row key here
        mine = [r for r in rows if r["method"] == line[0]]
        line[-1:-1] = [_f(_mean(r.get("size_mb") for r in mine)), _f(_mean(r.get("p50_ms") for r in mine))]
    header[-1:-1] = ["size (MB)", "bs1 p50 (ms)"]
    return header, _relabel(body, labels or row_labels(rows))


def per_seed_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """Each row's average over every task, one column per seed (the values behind the Avg column's mean ± std);
    "–" where that seed lacks a task."""
    g = accuracy_grid(rows, target_test_acc, rows=order)
    avg = {k: average_by_seed(g, k) for k in g["rows"]}
    seeds = sorted({s for v in avg.values() for s in v})
    body = [[k, *[_f(avg[k].get(s), digits=1) for s in seeds]] for k in g["rows"] if avg[k]]
    return ["Method", *[f"seed {s}" for s in seeds]], _relabel(body, labels or row_labels(list(rows)))


def _signed(cell: str) -> str:
    return cell if cell[:1] in ("-", "–") else f"+{cell}"


def oracle_margin_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """Each headline row minus the oracle on the same task and seed, in points: per task the mean ± std over the
    seeds both have, Avg over the seeds with every task, and the task where the row is furthest below the oracle
    (mean over seeds). Paired per seed, so the oracle's own seed-to-seed spread is not counted twice."""
    heads = headline_rows(rows)
    oracle_key = next((k for k in order if any(r["method"] == k and r.get("group") == "oracle" for r in heads)), None)
    header = ["Method", "Avg", "worst task", "seeds"]
    if oracle_key is None:
        return header, []
    oracle = {(r["task"], r["seed"]): target_test_acc(r) for r in heads if r["method"] == oracle_key}
    margins = [{"method": r["method"], "task": r["task"], "seed": r["seed"],
                "margin": target_test_acc(r) - oracle[(r["task"], r["seed"])]}
               for r in heads if r["method"] != oracle_key and target_test_acc(r) is not None
               and oracle.get((r["task"], r["seed"])) is not None]
    g = accuracy_grid(margins, lambda r: r["margin"], rows=order)
    header, body = table_rows(g)
    for line in body:  # line[0] is still the row key here
        cells = g["grid"][line[0]]
        worst = min(cells, key=lambda t: statistics.fmean(cells[t].values()))
        line[1:-1] = [_signed(c) for c in line[1:-1]]
        line.insert(-1, f"{worst.replace('2', '→')} {statistics.fmean(cells[worst].values()):+.1f}")
    header.insert(-1, "worst task")
    return header, _relabel(body, labels or row_labels(list(rows)))


# ----------------------------------------------------------------------------- stages, resources, artifacts
def stages_table(stages: Sequence[Stage], order: Sequence[str] = ()) -> Table:
    """Every stage record in the tree: its label, kind, run name, tasks, seeds, parents and artifacts; in table
    order (a bench stage after the stage it deploys)."""
    by_dir = {s.run_dir.resolve(): s for s in stages}
    pos = {k: i for i, k in enumerate(order)}
    rows: dict[tuple, dict] = {}
    for s in stages:
        parents = {}
        for role in sorted(s.rec.parents):
            p = by_dir.get(s.rec.parent(s.run_dir, role).resolve())
            parents[role] = p.rec.name if p else s.rec.parents[role]
        deploys = s.rec.kind == "bench"
        key = (s.rec.kind, s.rec.name, tuple(f"{role}: {name}" for role, name in parents.items()))
        row = rows.setdefault(key, {"label": label_of(s.rec), "group": "deployed" if deploys else group_of(s.rec),
                                    "pos": pos.get(parents.get("model") if deploys else s.rec.name, len(pos)),
                                    "tasks": set(), "seeds": set(), "artifacts": set()})
        row["tasks"].add(s.rec.task)
        row["seeds"].add(s.rec.seed)
        row["artifacts"].update(s.rec.artifacts)
    header = ["Stage", "kind", "run", "tasks", "seeds", "parents", "artifacts"]
    body = [[r["label"], kind, name, " ".join(order_tasks(r["tasks"])), ",".join(map(str, sorted(r["seeds"]))),
             "; ".join(parents) or "–", ", ".join(sorted(r["artifacts"])) or "–"]
            for (kind, name, parents), r in sorted(rows.items(),
                                                   key=lambda kv: (group_rank(kv[1]["group"]), kv[1]["pos"], kv[0]))]
    return header, body


def resource_table(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """Parameters, MACs and file size of every model that has them (mean over tasks and seeds)."""
    labels = labels or row_labels(list(rows))
    header = ["Model", "params (M)", "MACs (M)", "size (MB)"]
    body = []
    for key in order:
        rs = [r["resources"] for r in rows if r["method"] == key and r.get("resources")]
        if rs:
            params, macs, mb = (_mean(x.get(k) for x in rs) for k in ("params", "macs", "model_mb"))
            body.append([labels.get(key, key), _f(params, 1e6, 3), _f(macs, 1e6, 1), _f(mb)])
    return header, body


def artifact_table(bench: Sequence[dict], order: Sequence[str]) -> Table:
    """Every benchmarked artifact, by the stage it deploys: size, accuracy of that artifact, bs1 p50, bs32 img/s
    (mean over tasks and seeds; each run's own table, machine included, is in ``deploy/``)."""
    pos = {k: i for i, k in enumerate(order)}
    keys = sorted({(b["parent"], b["name"]) for b in bench}, key=lambda k: (pos.get(k[0], len(pos)), k))
    header = ["Artifact", "size (MB)", "target-test acc %", "bs1 p50 ms", "bs32 img/s", "tasks"]
    body = []
    for parent, name in keys:
        rs = [b for b in bench if (b["parent"], b["name"]) == (parent, name)]
        body.append([f"{rs[0]['parent_label']}: {name}", _f(_mean(r.get("size_mb") for r in rs)),
                     _f(_mean(r.get("acc") for r in rs), 1, 1), _f(_mean(r.get("p50_ms") for r in rs)),
                     _f(_mean(r.get("bs32_img_s") for r in rs), 1, 0), str(len({r["task"] for r in rs}))])
    return header, body


def compression_table(comp: Sequence[dict], bench: Sequence[dict]) -> Table:
    """One compress stage, per task and seed: the model it started from, the target-test accuracy after each of
    its steps (each after its recovery fine-tune), the compressed model's size, and each of its ONNX Runtime
    artifacts that ran (accuracy of that file and its size)."""
    if not comp:
        return [], []
    key = comp[0]["method"]
    ops = [st["op"] + (f":{st['kind']}" if st.get("kind") else "") for st in comp[0]["stages"]]
    mine = [b for b in bench if b.get("parent") == key and b.get("runtime") == "ort" and b.get("acc") is not None]
    names = sorted({b["name"] for b in mine})
    arts = {(b["name"], b["task"], b["seed"]): b for b in mine}
    header = ["Task", "student", *[f"after {o}" for o in ops], "params (M)", "float file (MB)",
              *[f"{n} {col}" for n in names for col in ("acc", "(MB)")]]
    body = []
    tasks = order_tasks({c["task"] for c in comp})
    for c in sorted(comp, key=lambda c: (tasks.index(c["task"]), c["seed"])):
        accs = [st.get("target_test_acc") for st in c["stages"]]
        cells = [arts.get((n, c["task"], c["seed"]), {}) for n in names]
        body.append([f"{c['task']} s{c['seed']}", _f(target_test_acc(c.get("before") or {}), 1, 1),
                     *[_f(a, 1, 1) for a in accs] + ["–"] * (len(ops) - len(accs)),
                     _f(c["resources"].get("params"), 1e6, 3), _f(c["resources"].get("model_mb")),
                     *[v for a in cells for v in (_f(a.get("acc"), 1, 1), _f(a.get("size_mb")))]])
    return header, body


def compression_summary(comp: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> Table:
    """One line per compress recipe: its steps, the target-test accuracy of the student it started from and of
    the compressed model, parameters and float file size (means over tasks and seeds)."""
    labels = labels or row_labels(list(comp))
    header = ["Compressed model", "steps", "student acc %", "compressed acc %", "params (M)", "file (MB)", "runs"]
    body = []
    for key in (k for k in order if any(c["method"] == k for c in comp)):
        cs = [c for c in comp if c["method"] == key]
        body.append([labels.get(key, key), ", ".join(cs[0]["techniques"]) or "–",
                     _f(_mean(target_test_acc(c.get("before") or {}) for c in cs), 1, 1),
                     _f(_mean(target_test_acc(c) for c in cs), 1, 1),
                     _f(_mean(c["resources"].get("params") for c in cs), 1e6, 3),
                     _f(_mean(c["resources"].get("model_mb") for c in cs)), str(len(cs))])
    return header, body


# ----------------------------------------------------------------------------- validators
def last_history_value(path: Path, key: str) -> Optional[float]:
    """The last epoch's ``key`` in a run's history.csv (None when absent or unreadable)."""
    try:
        with path.open() as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1][key]) if rows and rows[-1].get(key) else None
    except (OSError, ValueError, KeyError):
        return None


def _snd(r: dict) -> Optional[float]:
    return last_history_value(Path(r["_dir"]) / "history.csv", "target_test_snd") if r.get("_dir") else None


def _candidates(runs: Sequence[dict]) -> list[dict]:
    """Runs a label-free validator chooses among: every trained run with a validator, the oracle excluded."""
    return [r for r in runs if r.get("kind") != "oracle" and "validator" in r]


def validator_table(runs: Sequence[dict], order: Sequence[str]) -> Table:
    """Label-free validators of each trained run (last epoch) beside the target-test accuracy they should track:
    a user picks a method or teacher by the validator, never by the accuracy column."""
    pos = {k: i for i, k in enumerate(order)}
    header = ["Task", "Run", "IM score (↑)", "SND (↑)", "target-test acc %"]
    body = []
    for r in sorted(_candidates(runs), key=lambda r: (r["task"], r["seed"], pos.get(r["method"], len(pos)))):
        body.append([f"{r['task']} s{r['seed']}", r.get("label") or r["method"],
                     f"{r['validator']['im_score']:.3f}", _f(_snd(r), 1, 3), f"{r['target_test']['acc']:.1f}"])
    return header, body


def spearman(x: list[float], y: list[float]) -> Optional[float]:
    """Spearman rank correlation (None when either side is constant)."""
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
    return None if rho != rho else float(rho)


def validator_agreement(runs: Sequence[dict], min_runs: int = 3) -> Table:
    """How well each label-free validator ranks the trained runs of one task and seed (oracle excluded): the
    rank correlation with target-test accuracy, and the accuracy of the run it would pick vs the best one.
    This is the check a user cannot do without labels; it says how far to trust the validator's pick."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in _candidates(runs):
        groups.setdefault((r["task"], r["seed"]), []).append(r)
    header = ["Task", "runs", "Spearman IM", "IM pick (acc %)", "Spearman SND", "SND pick (acc %)", "best acc %"]
    body, picks = [], {"IM": [], "SND": [], "best": []}
    tasks = order_tasks(t for t, _ in groups)
    for (task, seed), rs in sorted(groups.items(), key=lambda kv: (tasks.index(kv[0][0]), kv[0][1])):
        if len(rs) < min_runs:
            continue
        acc = [r["target_test"]["acc"] for r in rs]
        vals = {"IM": [r["validator"]["im_score"] for r in rs], "SND": [_snd(r) for r in rs]}
        row = [f"{task} s{seed}", str(len(rs))]
        for name, v in vals.items():
            if any(x is None for x in v):
                row += ["–", "–"]
                continue
            k = max(range(len(rs)), key=v.__getitem__)
            rho = spearman(v, acc)
            row += ["–" if rho is None else f"{rho:+.2f}", f"{rs[k].get('label') or rs[k]['method']} ({acc[k]:.1f})"]
            picks[name].append(acc[k])
        picks["best"].append(max(acc))
        body.append(row + [f"{max(acc):.1f}"])
    if body:
        mean = lambda xs: f"{statistics.fmean(xs):.1f}" if len(xs) == len(body) else "–"  # noqa: E731
        body.append(["mean", "", "", mean(picks["IM"]), "", mean(picks["SND"]), mean(picks["best"])])
    return header, body


# ----------------------------------------------------------------------------- prose from numbers
def teachers_used(runs: Sequence[dict]) -> list[str]:
    """'<teacher run> <arch>' of every teacher the distilled models learned from (their records' teacher parents),
    and which teacher seeds taught which student seeds when they differ (one teacher for several students)."""
    pairs: dict[str, set] = {}
    for r in runs:
        if r.get("group") != "distill":
            continue
        for t in r.get("teachers") or []:
            pairs.setdefault(f"{t['name']} {t['arch']}", set()).add((t.get("seed"), r.get("seed")))
    out = []
    for name, seeds in sorted(pairs.items()):
        if any(ts != ss for ts, ss in seeds):
            by_teacher = {ts: sorted(ss for t2, ss in seeds if t2 == ts) for ts, _ in seeds}
            name += " (" + "; ".join(f"teacher seed {ts} for student seeds {', '.join(map(str, sv))}"
                                     for ts, sv in sorted(by_teacher.items(), key=str)) + ")"
        out.append(name)
    return out


def what_helped(rows: Sequence[dict], order: Sequence[str], labels: Optional[dict[str, str]] = None) -> str:
    """Plain statements derived from the averages (no hand-written numbers): each row vs source-only and oracle."""
    labels = labels or row_labels(list(rows))
    g = accuracy_grid(rows, target_test_acc, rows=order)
    tasks = g["tasks"]
    group = {r["method"]: r.get("group") for r in rows}

    def avg(m: Optional[str]) -> Optional[float]:
        cells = g["grid"].get(m, {}) if m else {}
        vals = [statistics.fmean(cells[t].values()) for t in tasks if t in cells]
        return statistics.fmean(vals) if len(vals) == len(tasks) and vals else None

    first = lambda grp: next((m for m in g["rows"] if group.get(m) == grp), None)  # noqa: E731
    base_key, oracle_key = first("source_only"), first("oracle")
    base, oracle = avg(base_key), avg(oracle_key)
    lines = []
    for m in g["rows"]:
        a = avg(m)
        if a is None or m == base_key:
            continue
        parts = []
        if base is not None:
            parts.append(f"{a - base:+.1f} pt vs source-only")
        if oracle is not None and m != oracle_key:
            parts.append(f"{a - oracle:+.1f} pt vs oracle")
        lines.append(f"- {labels.get(m, m)}: average {a:.1f}% ({', '.join(parts)})")
    return "\n".join(lines) if lines else "- not enough finished runs for averages over every task"
