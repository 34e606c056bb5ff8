"""Which figures the report draws, from the collected rows and the runs they point to (PNG only):

- ``pareto.png``: accuracy vs latency vs size of every deployed artifact and compressed model;
- ``a_distance.png``: the A-distance of every model that has one, a panel per task;
- ``figures/tsne_<part>.png``: per model of the chain (source-only, adapted teacher, distilled student, deployed
  student, oracle; ``chain.py``), its t-SNE on every task;
- ``figures/curves_<run>.png``: per trained regime, training and validation loss and accuracy on every task;
- ``figures/confusion_deployed.png``: the deployed file's target-test confusion matrix on every task.

Grids are drawn by ``grids.py``; features missing from the records are taken by ``features.py``.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..tables import order_tasks
from .chain import ChainModel, chain_models, deployed_confusions, deployed_key
from .collect import Collected
from .grids import a_distance_grid, confusion_grid, curves_grid, read_history, tsne_grid

FIGURES = "figures"


@dataclass
class Figure:
    caption: str
    path: Path
    kind: str            # pareto, a_distance, tsne, curves, confusion
    part: str = ""       # the chain part (tsne) or run name (curves) it shows


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- comparison figures
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (faster and at least as accurate),
    by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(bench: Sequence[dict], compressed: Sequence[dict], path: Path) -> bool:
    """Accuracy vs bs1 latency, marker area ~ file size: one point per deployed artifact and per compressed model
    in PyTorch (mean over tasks and seeds), the Pareto front (no point both faster and more accurate) joined.
    Points are numbered and named in the legend (several artifacts often share a latency)."""
    from ..plots import plt

    pts = []
    for parent, name in sorted({(b["parent"], b["name"]) for b in bench}):
        rs = [b for b in bench if (b["parent"], b["name"]) == (parent, name)]
        acc, lat, mb = (_mean(r.get(k) for r in rs) for k in ("acc", "p50_ms", "size_mb"))
        if None not in (acc, lat):
            pts.append((f"{parent}: {name}", acc, lat, mb))
    for key in sorted({c["method"] for c in compressed}):
        rs = [c for c in compressed if c["method"] == key]
        lat, mb = (_mean(r.get(k) for r in rs) for k in ("p50_ms", "size_mb"))
        acc = _mean((r.get("target_test") or {}).get("acc") for r in rs)
        if None not in (acc, lat):
            pts.append((f"{key}: compressed model in PyTorch", acc, lat, mb))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    front = pareto_front([(lat, acc) for _, acc, lat, _ in pts])
    ax.plot([pts[i][2] for i in front], [pts[i][1] for i in front], color="0.6", ls="--", lw=1, zorder=1,
            label="Pareto front")
    for i, (name, acc, lat, mb) in enumerate(pts, 1):
        size = "" if mb is None else f", {mb:.2f} MB"
        ax.scatter(lat, acc, s=30 + 60 * (mb or 0.5), alpha=0.65, color=colours[(i - 1) % len(colours)],
                   edgecolor="k", lw=0.4, zorder=2, label=f"{i}  {name}{size}")
        ax.annotate(str(i), (lat, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lats = [p[2] for p in pts]
    if max(lats) / max(min(lats), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency p50 (ms)"), ax.set_ylabel("target-test accuracy (%)")
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("accuracy vs latency (marker area ~ file size)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- grids
def _recorded_a_distance(results: dict) -> Optional[float]:
    return (results.get("analysis") or {}).get("a_distance")


def _analysis_png(stage) -> Optional[Path]:
    """The t-SNE the run's analysis phase drew, when it did."""
    name = (stage.results.get("analysis") or {}).get("tsne_png")
    return stage.run_dir / name if name and (stage.run_dir / name).is_file() else None


def tsne_figures(chain: Sequence[ChainModel], out: Path, notes: list[str]) -> tuple[list[Figure], dict]:
    """A t-SNE grid per chain part (first seed of each task): the run's own analysis drawing where it made one,
    else drawn here from its model file. Returns the figures and the A-distance the report measured itself,
    (task, seed, part title) -> value, for the parts whose records have none."""
    from ..analysis import MAX_IMAGES
    from .features import TSNE_POINTS, run_embedding

    figures, measured = [], {}
    missing: dict[str, dict[str, list[str]]] = {}  # why -> part -> tasks
    for m in chain:
        panels, drawn_here, drawn_by_run = [], False, False
        for task in m.tasks:
            stage = m.first_seed(task)
            dist = _recorded_a_distance(stage.results)
            png = _analysis_png(stage)
            if png is not None:
                panels.append((task, png, dist, ""))
                drawn_by_run = True
                continue
            emb, why = run_embedding(stage)
            if dist is None and emb is not None:
                dist = emb.a_distance
                measured[(task, stage.rec.seed, m.title)] = dist
            panels.append((task, emb, dist, why))
            drawn_here = drawn_here or emb is not None
            if emb is None:
                missing.setdefault(why, {}).setdefault(m.title, []).append(task.replace("2", "→"))
        path = out / FIGURES / f"tsne_{m.role}.png"
        seeds = sorted({m.first_seed(t).rec.seed for t in m.tasks})
        if tsne_grid(panels, f"{m.title}: source (red) vs target (blue) features", path):
            how = [f"drawn by the run's analysis phase from at most {MAX_IMAGES} images per domain"] * drawn_by_run \
                + [f"drawn here from at most {TSNE_POINTS} images per domain"] * drawn_here
            caption = (f"t-SNE of bottleneck features, source-train (red) vs target-train (blue), seed "
                       f"{', '.join(map(str, seeds))}, {' or '.join(how)}: {m.title}"
                       + (f"; {m.note}" if m.note else "") + f". A-distance over at most {MAX_IMAGES} images per domain (a linear domain classifier; "
                       "2: the domains are separable).")
            figures.append(Figure(caption, path, "tsne", m.role))
    for why, parts in missing.items():
        notes.append(f"t-SNE not drawn, {why}: " + "; ".join(f"{title} ({', '.join(tasks)})"
                                                           for title, tasks in parts.items()) + ".")
    return figures, measured


def a_distance_figure(c: Collected, chain: Sequence[ChainModel], measured: dict, out: Path) -> Optional[Figure]:
    """Every model with an A-distance (recorded by its analysis phase, or measured for the t-SNE), per task."""
    values: dict[str, dict[str, list[float]]] = {}
    names: list[tuple[int, str]] = []
    pos = {k: i for i, k in enumerate(c.order)}
    for r in c.runs:
        v = _recorded_a_distance(r)
        if v is not None:
            label = c.labels.get(r["method"], r["method"])
            values.setdefault(r["task"], {}).setdefault(label, []).append(v)
            names.append((pos.get(r["method"], len(pos)), label))
    keys = {m.title: m.key for m in chain}
    for (task, _, title), v in measured.items():
        values.setdefault(task, {}).setdefault(title, []).append(v)
        names.append((pos.get(keys[title], len(pos)), title))
    models = list(dict.fromkeys(label for _, label in sorted(names)))
    values = {t: values[t] for t in order_tasks(values)}
    path = out / "a_distance.png"
    if not a_distance_grid(values, models, path):
        return None
    return Figure("Proxy A-distance of source-train vs target-train bottleneck features per task (mean over the "
                  "seeds measured, whiskers ± std; lower: the model maps the two domains closer together).",
                  path, "a_distance")


def curves_figures(c: Collected, out: Path) -> list[Figure]:
    """One grid per trained regime (row key), from every run's ``history.csv``."""
    figures = []
    for key in c.order:
        runs = [r for r in c.runs if r["method"] == key]
        histories: dict[str, list[list[dict]]] = {}
        for r in sorted(runs, key=lambda r: r["seed"]):
            h = read_history(Path(r["_dir"]) / "history.csv")
            if h:
                histories.setdefault(r["task"], []).append(h)
        histories = {t: histories[t] for t in order_tasks(histories)}
        label = c.labels.get(key, key)
        path = out / FIGURES / f"curves_{_file_name(key)}.png"
        if curves_grid(histories, f"{label}: loss (top) and accuracy (bottom) per epoch", path):
            figures.append(Figure(f"Training curves of {label} on every task: train, validation (source-test: "
                                  "labeled source images held out of training) and target-test loss and "
                                  "accuracy per epoch; mean over seeds, band ± std.", path, "curves", key))
    return figures


def confusion_figure(c: Collected, out: Path, notes: list[str]) -> Optional[Figure]:
    panels = deployed_confusions(c)
    shipped = deployed_key(c)
    if not panels:
        if shipped is not None:
            notes.append("No confusion matrix of the deployed file: its bench records hold none (benchmarked before "
                         "bench recorded one); `liteda bench` again records it.")
        return None
    label = panels[0]["label"]
    path = out / FIGURES / "confusion_deployed.png"
    if not confusion_grid(panels, f"{label}: deployed file, target-test confusion", path):
        return None
    picked = "the artifact bench recommended (label-free)" if all(p["recommended"] for p in panels) else \
        "the artifact bench recommended where it recorded one, else its first ONNX Runtime file"
    tasks = {p["task"] for p in panels}
    missing = [t for t in order_tasks({b["task"] for b in c.bench if b["parent"] == shipped}) if t not in tasks]
    if missing:
        notes.append(f"No confusion matrix of the deployed file for {', '.join(missing)} (bench recorded none).")
    return Figure(f"Target-test confusion matrices of the deployed {label} on every task: {picked}, first seed; "
                  "colour: share of each true class (row), numbers: image counts.", path, "confusion")


def draw_figures(c: Collected, out: Path) -> tuple[list[Figure], list[str]]:
    """Every figure of the report, and notes on what could not be drawn. PNGs left in ``figures/`` by an earlier
    build that this one did not draw are removed (the folder holds this report's figures only)."""
    notes: list[str] = []
    figures = []
    if plot_pareto(c.bench, c.compressed, out / "pareto.png"):
        figures.append(Figure("Accuracy vs batch-1 latency of every deployed artifact and compressed model (mean "
                              "over tasks and seeds; marker area ~ file size).", out / "pareto.png", "pareto"))
    confusion = confusion_figure(c, out, notes)
    figures += [confusion] if confusion else []
    chain = chain_models(c)
    tsne, measured = tsne_figures(chain, out, notes)
    a_dist = a_distance_figure(c, chain, measured, out)
    figures += ([a_dist] if a_dist else []) + tsne + curves_figures(c, out)
    drawn = {f.path.resolve() for f in figures}
    for stale in (out / FIGURES).glob("*.png") if (out / FIGURES).is_dir() else ():
        if stale.resolve() not in drawn:
            stale.unlink()
    return figures, notes
