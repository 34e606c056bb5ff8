"""The report's figures (PNG) from collected rows, and the per-run images the stages wrote.

Per-run plots drawn while training (curves, confusion, t-SNE) live in ``liteda.plots`` and ``liteda.analysis``;
here only the figures that compare runs, and the choice of which per-run images the report shows.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional, Sequence

from ..tables import order_tasks


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def plot_a_distance(runs: Sequence[dict], order: Sequence[str], path: Path) -> bool:
    """Proxy A-distance of every run that measured it (``--phase analysis``), one bar per task and run."""
    from ..plots import plt

    pos = {k: i for i, k in enumerate(order)}
    have = sorted((r for r in runs if (r.get("analysis") or {}).get("a_distance") is not None),
                  key=lambda r: (r["task"], pos.get(r["method"], len(pos)), r["seed"]))
    pts = [(f"{r['task']} {r['method']} s{r['seed']}", r["analysis"]["a_distance"]) for r in have]
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


def plot_pareto(bench: Sequence[dict], compressed: Sequence[dict], path: Path) -> bool:
    """Accuracy vs bs1 latency, marker area ~ file size: one point per deployed artifact and per compressed model
    in PyTorch (mean over tasks and seeds)."""
    from ..plots import plt

    pts = []
    for parent, name in sorted({(b["parent"], b["name"]) for b in bench}):
        rs = [b for b in bench if (b["parent"], b["name"]) == (parent, name)]
        acc, lat, mb = (_mean(r.get(k) for r in rs) for k in ("acc", "p50_ms", "size_mb"))
        if None not in (acc, lat):
            pts.append((f"{parent}:{name}", acc, lat, mb or 1.0))
    for key in sorted({c["method"] for c in compressed}):
        rs = [c for c in compressed if c["method"] == key]
        lat, mb = (_mean(r.get(k) for r in rs) for k in ("p50_ms", "size_mb"))
        acc = _mean((r.get("target_test") or {}).get("acc") for r in rs)
        if None not in (acc, lat):
            pts.append((f"{key} (torch)", acc, lat, mb or 1.0))
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


def run_images(runs: Sequence[dict], order: Sequence[str]) -> dict[str, list[tuple[str, Path]]]:
    """Per-run PNGs the stages wrote, by kind: curves and t-SNE of the first task and seed (to keep the report
    short), the target-test confusion of every distilled model on every task (first seed)."""
    if not runs:
        return {}
    pos = {k: i for i, k in enumerate(order)}
    first_seed = min(r["seed"] for r in runs)
    groups: dict[str, list[tuple[str, Path]]] = {"curves": [], "tsne": [], "confusion": []}
    distill_seed = min((r["seed"] for r in runs if r.get("group") == "distill"), default=None)
    tasks = order_tasks({r["task"] for r in runs})
    for r in sorted(runs, key=lambda r: (pos.get(r["method"], len(pos)), tasks.index(r["task"]), r["seed"])):
        d, title = Path(r["_dir"]), f"{r['task']} {r.get('label') or r['method']}"
        if r["task"] == tasks[0] and r["seed"] == first_seed:
            for kind in ("curves", "tsne"):
                if (d / f"{kind}.png").is_file():
                    groups[kind].append((title, d / f"{kind}.png"))
        if r.get("group") == "distill" and r["seed"] == distill_seed and (d / "confusion_target_test.png").is_file():
            groups["confusion"].append((title, d / "confusion_target_test.png"))
    return {k: v for k, v in groups.items() if v}
