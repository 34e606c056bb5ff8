"""The report is driven by stage records: every stage in a runs tree appears with its label, the headline table
holds the deployed file of a compressed model, and a stage nobody told the report about still shows up."""
import json
import shutil
from pathlib import Path

import pytest
from conftest import img_sources

from liteda import record
from liteda.record import DatasetRef, StageRecord, Transform, write_record
from liteda.utils import UserError, write_json

SMALL = "≤ 1 MB INT8 student (whitened SVD + PTSQ)"  # a compress recipe's label, as its record gives it
TASKS = ("A2W", "W2A")


def _rec(kind, name, label, task, seed, arch="mobilenet_v3_small", parents=None, results="results.json"):
    src, tgt = task.split("2")
    return StageRecord(kind=kind, name=name, label=label, seed=seed, arch=arch, parents=parents or {},
                       dataset=DatasetRef("Fake", "data/fake", src, tgt, ["a", "b"]), results=results,
                       transform=Transform(36, 32, [0.5] * 3, [0.25] * 3), artifacts={"model": "model.pt"},
                       weights="scratch")


def _train(base, kind, name, label, task, seed, acc, arch="mobilenet_v3_small", parents=None, extra=None):
    d = base / task / name / f"seed{seed}"
    write_json(d / "results.json", {
        "schema": "liteda.run/1", "method": name, "task": task, "seed": seed, "epochs": 2,
        "target_test": {"acc": acc}, "target_all": {"acc": acc + 1}, "validator": {"im_score": acc / 100},
        "timing": {"seconds_per_epoch": 3.0}, "resources": {"params": 1.5e6, "macs": 6e7, "model_mb": 6.1},
        "analysis": {"a_distance": 1.2}, **(extra or {})})
    write_record(d, _rec(kind, name, label, task, seed, arch, parents))
    (d / "history.csv").write_text("epoch,loss,train_acc,source_test_acc,source_test_loss,target_test_acc,"
                                   "target_test_loss\n" + "".join(
                                       f"{e},{2 / e},{acc - 10 / e},{acc + 5},{1 / e},{acc - 5 / e},{1.5 / e}\n"
                                       for e in (1, 2)))
    return d


def _compress(base, name, label, task, seed, parent):
    d = base / task / name / f"seed{seed}"
    write_json(d / "results.json", {
        "schema": "liteda.compress/1", "techniques": ["lowrank", "quantize:ptsq"],
        "before": {"target_test": {"acc": 80.0}},
        "after": {"target_test": {"acc": 77.0}, "params": 4e5, "macs": 2e7, "file_mb": 1.6, "latency_ms_p50": 2.5},
        "stages": [{"op": "lowrank", "target_test_acc": 78.0},
                   {"op": "quantize", "kind": "ptsq", "target_test_acc": 77.0}]})
    write_record(d, _rec("compress", name, label, task, seed, parents={"model": f"../../{parent}/seed{seed}"}))
    return d


def _bench(run_dir, label, task, seed, int8_mb):
    d = run_dir / "deploy"
    rows = [{"name": "torch-fp32", "runtime": "torch", "precision": "fp32", "size_mb": 1.6, "acc": 77.0, "p50_ms": 3.0},
            {"name": "ort-fp32", "runtime": "ort", "precision": "fp32", "size_mb": 1.5, "acc": 77.0, "p50_ms": 1.5,
             "bs32_img_s": 900.0},
            {"name": "ort-int8", "runtime": "ort", "precision": "int8", "size_mb": int8_mb, "acc": 76.5, "p50_ms": 0.7,
             "bs32_img_s": 2000.0, "target_test": {"acc": 76.5, "loss": 0.6, "confusion": [[3, 1], [0, 4]]}},
            {"name": "ort-fp16", "runtime": "ort", "precision": "fp16", "size_mb": 0.8, "acc": None, "note": "skipped"}]
    write_json(d / "bench.json", {"schema": "liteda.deploy_bench/1", "machine": {}, "rows": rows})
    (d / "bench.md").write_text("| name |\n|---|\n| ort-int8 |\n")
    # as the deploy stage writes it: the deployed run's name and label, its folder as the parent
    write_record(d, _rec("bench", run_dir.parent.name, label, task, seed, parents={"model": ".."},
                         results="bench.json"))


def make_runs_tree(root: Path) -> Path:
    """Two tasks x two seeds through every stage kind, plus a compress recipe named arbitrarily and a stage of a
    kind the report does not know; returns the runs root (``root/runs``)."""
    base = root / "runs" / "Fake"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(record, "KINDS", record.KINDS + ("soup",))  # a new kind of stage, registered by its writer
        for t_i, task in enumerate(TASKS):
            for seed in (0, 1):
                off = t_i * 5 + seed
                _train(base, "source_only", "source_only", "source-only", task, seed, 60.0 + off)
                _train(base, "adapt", "dann", "dann", task, seed, 70.0 + off)
                _train(base, "adapt", "brand_new_method", "brand-new method", task, seed, 71.0 + off)
                _train(base, "adapt", "mcc-resnet18", "mcc (resnet18)", task, seed, 85.0 + off, arch="resnet18")
                _train(base, "distill", "kd", "distilled student", task, seed, 80.0 + off,
                       parents={"teacher": f"../../mcc-resnet18/seed{seed}", "init": f"../../source_only/seed{seed}"})
                run = _compress(base, "tiny_recipe", SMALL, task, seed, "kd")
                _bench(run, SMALL, task, seed, int8_mb=0.9)
                _bench(base / task / "kd" / f"seed{seed}", "distilled student", task, seed, int8_mb=1.7)
                _train(base, "oracle", "oracle", "oracle (target labels)", task, seed, 90.0 + off)
                d = base / task / "model_soup" / f"seed{seed}"
                write_json(d / "results.json", {"target_test": {"acc": 81.0 + off}})
                write_record(d, _rec("soup", "model_soup", "model soup of the students", task, seed))
    (base / TASKS[0] / "dann" / "seed0" / "curves.png").write_bytes(_png())
    (base / ".stages.jsonl").write_text('{"stage": "A2W dann seed 0", "seconds": 1}\n')
    return root / "runs"


@pytest.fixture()
def runs_tree(tmp_path):
    return make_runs_tree(tmp_path)


def _png() -> bytes:
    import io

    from liteda.plots import plt

    fig, ax = plt.subplots(figsize=(1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _rows(md: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell."""
    return {cells[0]: cells for ln in md.splitlines() if ln.startswith("| ")
            for cells in [[c.strip() for c in ln.strip().strip("|").split("|")]]}



@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The results folder of :func:`make_runs_tree`, built once for the tests that only read it."""
    from liteda.report.cli import main

    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "results"
    main(["--runs", str(make_runs_tree(tmp)), "--dataset", "Fake", "--out", str(out)])
    return out


def test_every_stage_appears_with_its_label_in_pipeline_order(report):
    acc = _rows((report / "accuracy.md").read_text())
    labels = [k for k in acc if k != "Method"]
    assert labels == ["source-only", "dann", "brand-new method", "teacher: mcc (resnet18)", "distilled student",
                      SMALL, "distilled student, ort-fp32", "distilled student, ort-int8", f"{SMALL}, ort-fp32",
                      f"{SMALL}, ort-int8", "model soup of the students", "oracle (target labels)"]
    assert acc["dann"][1:4] == ["70.5 ± 0.7", "75.5 ± 0.7", "73.0 ± 0.7"]
    stages = (report / "stages.md").read_text()
    for label in (*labels[:6], "model soup of the students", "oracle (target labels)"):
        assert f"| {label} |" in stages, label
    assert "| bench | tiny_recipe | A2W W2A | 0,1 | model: tiny_recipe |" in stages
    md = (report / "report.md").read_text()
    assert all(label in md for label in labels)
    assert "Distilled student's teacher: mcc-resnet18 resnet18" in md
    assert "### " + SMALL + " (`tiny_recipe`)" in md


def test_headline_holds_the_deployed_int8_file_of_the_compressed_student(report):
    md = (report / "report.md").read_text()
    assert md.index("## Headline") < md.index("## Setup") < md.index("## Target-test accuracy")
    head = _rows((report / "headline.md").read_text())
    assert head["Method"] == ["Method", "A→W", "W→A", "Avg", "size (MB)", "bs1 p50 (ms)", "seeds"]
    assert list(head)[1:] == ["source-only", "dann", "brand-new method", "distilled student",
                              f"{SMALL}, ort-fp32", f"{SMALL}, ort-int8", "oracle (target labels)"]
    int8 = head[f"{SMALL}, ort-int8"]
    assert int8[1:] == ["76.5 ± 0.0", "76.5 ± 0.0", "76.5 ± 0.0", "0.90", "0.70", "0,1"]
    assert head["dann"][4:6] == ["6.10", "–"]  # a trained model: its file size, no deployed latency
    csv_header = (report / "headline.csv").read_text().splitlines()[0]
    assert csv_header == "Method,A→W,W→A,Avg,size (MB),bs1 p50 (ms),seeds"
    summary = json.loads((report / "summary.json").read_text())
    assert [r[0] for r in summary["headline"]["rows"]] == list(head)[1:]


def test_every_headline_row_against_the_oracle_paired_per_task_and_seed(report):
    """Margins are row minus oracle on the same task and seed (the oracle here is 90 + task offset + seed)."""
    md = (report / "report.md").read_text()
    assert md.index("## Headline") < md.index("### Against the oracle") < md.index("## Setup")
    m = _rows((report / "against_oracle.md").read_text())
    assert m["Method"] == ["Method", "A→W", "W→A", "Avg", "worst task", "seeds"]
    assert "oracle (target labels)" not in m
    assert m["distilled student"][1:] == ["-10.0 ± 0.0", "-10.0 ± 0.0", "-10.0 ± 0.0", "A→W -10.0", "0,1"]
    # the deployed file scores 76.5 everywhere: A2W oracle 90/91, W2A 95/96
    assert m[f"{SMALL}, ort-int8"][1:] == ["-14.0 ± 0.7", "-19.0 ± 0.7", "-16.5 ± 0.7", "W→A -19.0", "0,1"]
    assert (report / "against_oracle.csv").read_text().startswith("Method,A→W,W→A,Avg,worst task,seeds")


def test_per_seed_averages_are_the_values_behind_the_avg_column(report):
    seeds = _rows((report / "accuracy_per_seed.md").read_text())
    assert seeds["Method"] == ["Method", "seed 0", "seed 1"]
    # distilled student: 80 + task offset (0, 5) + seed -> (80 + 85) / 2 + seed
    assert seeds["distilled student"][1:] == ["82.5", "83.5"]
    assert _rows((report / "accuracy.md").read_text())["distilled student"][3] == "83.0 ± 0.7"


def test_compression_and_artifacts_come_from_the_records(report):
    comp = (report / "compression_tiny_recipe.md").read_text()
    assert ("| Task | student | after lowrank | after quantize:ptsq | params (M) | float file (MB) | ort-fp32 acc |"
            in comp)
    assert "| A2W s0 | 80.0 | 78.0 | 77.0 | 0.400 | 1.60 | 77.0 | 1.50 | 76.5 | 0.90 |" in comp
    arts = _rows((report / "artifacts.md").read_text())
    assert arts[f"{SMALL}: ort-int8"][1:] == ["0.90", "76.5", "0.70", "2000", "2"]
    assert arts["distilled student: torch-fp32"][2] == "77.0"  # every runtime here, not only ONNX Runtime
    assert arts[f"{SMALL}: ort-fp16"][2] == "–"  # a row that could not run stays visible


def test_outputs_are_written_and_self_contained(report):
    for f in ("report.md", "report.html", "report.pdf", "summary.json", "accuracy.csv", "accuracy_all_target.md",
              "seconds_per_epoch.md", "resources.md", "validators.csv", "validator_agreement.md", "a_distance.png",
              "pareto.png", "metrics_per_task.md", "compression_summary.md", "deploy/A2W_tiny_recipe_s0.json",
              "deploy/W2A_kd_s1.md", "runs/stages.jsonl", "runs/A2W/tiny_recipe/seed0/deploy/record.json",
              "runs/A2W/tiny_recipe/seed0/deploy/bench.json", "runs/W2A/kd/seed1/results.json",
              "runs/W2A/model_soup/seed1/record.json"):
        assert (report / f).is_file(), f
    summary = json.loads((report / "summary.json").read_text())
    srcs = img_sources((report / "report.html").read_text())
    assert len(srcs) == len(summary["figures"]) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert summary["dataset"] == "Fake" and summary["seeds"] == [0, 1] and 2 <= summary["pdf_pages"] <= 5
    kinds = {(s["kind"], s["name"]) for s in summary["stages"]}
    assert kinds >= {("compress", "tiny_recipe"), ("bench", "tiny_recipe"), ("soup", "model_soup")}


def test_figures_are_grids_with_a_panel_per_task(report):
    """One curves grid per trained regime, the deployed file's confusion on every task; no per-run copies."""
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert figures == ["confusion_deployed.png", *(f"curves_{k}.png" for k in sorted(
        ("source_only", "dann", "brand_new_method", "mcc-resnet18", "kd", "oracle")))]
    md = (report / "report.md").read_text()
    assert "![Target-test confusion matrices of the deployed " + SMALL in md
    # no model files in this tree: the report says which t-SNE grids are missing and why
    parts = ("source-only", "teacher: mcc (resnet18)", "distilled student", f"deployed: {SMALL}",
             "oracle (target labels)")
    assert ("- t-SNE not drawn, no model file in the run folder: "
            + "; ".join(f"{p} (A→W, W→A)" for p in parts) + ".") in md


def test_every_metric_of_a_deployed_file_from_its_confusion_matrix(report):
    """bench recorded the INT8 file's loss and confusion matrix: precision, recall, F1, NMI, Rand and ARI follow."""
    from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score, rand_score

    rows = _rows((report / "metrics.md").read_text())
    y_true, y_pred = [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]  # [[3, 1], [0, 4]]
    f1 = f1_score(y_true, y_pred, average="macro") * 100
    assert rows[f"{SMALL}, ort-int8"][1:] == [
        "76.5 ± 0.0", "0.600 ± 0.000", "90.0 ± 0.0", "87.5 ± 0.0", f"{f1:.1f} ± 0.0",
        *(f"{m(y_true, y_pred):.3f} ± 0.000" for m in (normalized_mutual_info_score, rand_score, adjusted_rand_score))]
    assert rows[f"{SMALL}, ort-fp32"][2:] == ["–"] * 7  # bench recorded its accuracy only
    per_task = [[c.strip() for c in ln.strip().strip("|").split("|")]
                for ln in (report / "metrics_per_task.md").read_text().splitlines()[2:]]
    assert ["A→W", "source-only", "60.5 ± 0.7"] in [line[:3] for line in per_task]
    assert ["W→A", "source-only", "65.5 ± 0.7"] in [line[:3] for line in per_task]


def test_python_m_entry_point_and_bad_dataset(runs_tree, tmp_path):
    import subprocess
    import sys

    from liteda.report.cli import main

    with pytest.raises(UserError, match="no runs for dataset 'Nope'"):
        main(["--runs", str(runs_tree), "--dataset", "Nope", "--out", str(tmp_path / "r")])
    r = subprocess.run([sys.executable, "-m", "liteda.report", "--runs", str(runs_tree), "--dataset", "Nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no runs for dataset 'Nope'")


def test_the_artifact_bench_recommends_joins_the_headline(runs_tree, tmp_path):
    """bench's label-free pick (here the distilled student's torch-fp32 on one seed) is a headline row, even
    though it is neither an ONNX Runtime file nor one of a compressed model."""
    from liteda.report.cli import main
    from liteda.utils import read_json, write_json

    bench = runs_tree / "Fake" / "W2A" / "kd" / "seed0" / "deploy" / "bench.json"
    doc = read_json(bench)
    write_json(bench, {**doc, "recommended": {"artifact": "torch-fp32"}})
    main(["--runs", str(runs_tree), "--dataset", "Fake", "--out", str(tmp_path / "results")])
    head = _rows((tmp_path / "results" / "headline.md").read_text())
    assert "distilled student, torch-fp32" in head and "distilled student, ort-int8" not in head


def test_metrics_table_averages_every_target_metric_over_tasks_and_seeds():
    from liteda.report.tables import metrics_table

    def run(method, task, seed, acc, nmi):
        return {"method": method, "task": task, "seed": seed,
                "target_test": {"acc": acc, "loss": 0.5, "precision_macro": acc, "recall_macro": acc, "f1_macro": acc,
                                "nmi": nmi, "rand": 0.9, "ari": nmi / 2}}

    rows = [run("dann", t, s, 70.0 + s, 0.6 + 0.1 * s) for t in ("A2W", "W2A") for s in (0, 1)]
    rows += [{"method": "kd/ort-int8", "task": "A2W", "seed": 0, "target_test": {"acc": 80.0}}]  # accuracy only
    header, body = metrics_table(rows, ["dann", "kd/ort-int8"], {"dann": "DANN"})
    assert header == ["Method", "acc %", "loss", "precision %", "recall %", "F1 %", "NMI", "Rand", "ARI"]
    assert body == [["DANN", "70.5 ± 0.7", "0.500 ± 0.000", "70.5 ± 0.7", "70.5 ± 0.7", "70.5 ± 0.7",
                     "0.650 ± 0.071", "0.900 ± 0.000", "0.325 ± 0.035"]]


def test_rand_index_is_computed_beside_nmi_and_ari():
    import torch

    from liteda.metrics import classification_metrics

    m = classification_metrics(torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), torch.tensor([0, 1, 1]), 2)
    assert m["rand"] == pytest.approx(1 / 3) and {"nmi", "ari"} <= set(m)


def test_bench_rows_record_each_artifact_confusion_matrix():
    """bench adds the artifact's target metrics (confusion matrix, loss, ...) beside its existing columns."""
    import numpy as np

    from liteda.deploy.artifact import LoadedArtifact
    from liteda.deploy.bench import COLUMNS, benchmark_artifact

    images = np.zeros((6, 3, 4, 4), dtype=np.float32)
    images[:, 0, 0, 0] = [0, 1, 2, 0, 1, 2]  # the "model" predicts the class written into each image

    def run(x):
        return np.eye(3, dtype=np.float32)[x[:, 0, 0, 0].astype(int)] * 5

    labels = np.array([0, 1, 2, 1, 1, 2])
    row = benchmark_artifact(LoadedArtifact("fake", "ort", "fp32", run), images, labels, iters=2, warmup=1)
    assert row["acc"] == pytest.approx(100 * 5 / 6) and row["target_test"]["acc"] == pytest.approx(row["acc"])
    assert row["target_test"]["confusion"] == [[1, 0, 0], [1, 2, 0], [0, 0, 2]]
    assert {"loss", "precision_macro", "recall_macro", "f1_macro", "nmi", "rand", "ari"} <= set(row["target_test"])
    assert {"name", "size_mb", "acc", "p50_ms", "bs32_img_s"} <= set(row) and "target_test" not in COLUMNS


def test_record_copies_in_a_results_folder_are_not_stages(runs_tree, tmp_path):
    """A report written inside the runs tree (as the demo does) holds copies of the records; a rebuild reads
    the stages once, not their copies too."""
    from liteda.report.cli import main
    from liteda.report.collect import collect

    inside = runs_tree / "Fake" / "report"
    main(["--runs", str(runs_tree), "--dataset", "Fake", "--out", str(inside)])
    shutil.copytree(inside / "runs" / "A2W", runs_tree / "Fake" / "old_copy" / "runs" / "A2W")  # a copy elsewhere
    c = collect(runs_tree, "Fake")
    assert len(c.stages) == len({(s.rec.kind, s.rec.name, s.rec.task, s.rec.seed) for s in c.stages}) == 40
    assert not any("report" in s.run_dir.parts or "old_copy" in s.run_dir.parts for s in c.stages)


def test_a_tree_of_links_to_chosen_runs_is_a_runs_tree(runs_tree, tmp_path):
    """Symlinked run folders are followed (each real folder once): a study reports a chosen subset of a bigger
    runs tree without copying it, and a link loop does not hang the walk."""
    from liteda.report.collect import collect

    chosen = tmp_path / "chosen" / "Fake"
    for task in TASKS:
        (chosen / task).mkdir(parents=True)
        for run in ("source_only", "kd", "tiny_recipe", "oracle"):
            (chosen / task / run).symlink_to(runs_tree / "Fake" / task / run, target_is_directory=True)
    (chosen / "A2W" / "loop").symlink_to(chosen, target_is_directory=True)
    c = collect(tmp_path / "chosen", "Fake")
    got = {(s.rec.kind, s.rec.name) for s in c.stages}
    assert got == {("source_only", "source_only"), ("distill", "kd"), ("bench", "kd"), ("compress", "tiny_recipe"),
                   ("bench", "tiny_recipe"), ("oracle", "oracle")}
    assert len(c.stages) == len(got) * len(TASKS) * 2  # two seeds each, every stage once
    assert all(chosen in s.run_dir.parents for s in c.stages)  # named by the link, not the real folder


def test_chain_follows_the_shipped_model_back_through_its_records(runs_tree):
    from liteda.report.chain import chain_models, deployed_confusions
    from liteda.report.collect import collect

    c = collect(runs_tree, "Fake")
    chain = chain_models(c)
    assert [(m.role, m.key) for m in chain] == [("source_only", "source_only"), ("teacher", "mcc-resnet18"),
                                                 ("distilled", "kd"), ("deployed", "tiny_recipe"),
                                                 ("oracle", "oracle")]
    assert chain[3].stages[("W2A", 1)].rec.kind == "compress" and chain[1].title == "teacher: mcc (resnet18)"
    panels = deployed_confusions(c)
    assert [(p["task"], p["seed"], p["artifact"]) for p in panels] == [("A2W", 0, "ort-int8"), ("W2A", 0, "ort-int8")]


def test_tsne_and_a_distance_of_a_saved_model_are_computed_once_and_cached(tmp_path, monkeypatch):
    """A run without an analysis phase (here a compressed student's parent, any model file) gets its t-SNE and
    A-distance from its model file and its own image lists; a rebuild reads them from the run folder."""
    import numpy as np
    import torch

    from conftest import make_folder_dataset
    from liteda.classifier import build_classifier, model_record
    from liteda.datasets import prepare_domains
    from liteda.report import features
    from liteda.report.collect import Stage
    from liteda.utils import atomic_torch_save

    data, run = make_folder_dataset(tmp_path / "data"), tmp_path / "run"
    prepare_domains("Custom", data, ["src", "tgt"], run / "splits")
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small", 3, pretrained=False, bottleneck_dim=16)
    atomic_torch_save(model_record(model.eval(), "mobilenet_v3_small", ["a", "b", "c"], 32, 16, 36), run / "model.pt")
    rec = StageRecord(kind="adapt", name="mcc-teacher", label="teacher", seed=0, arch="mobilenet_v3_small",
                      dataset=DatasetRef("Custom", str(data), "src", "tgt", ["a", "b", "c"]),
                      transform=Transform(36, 32, [0.5] * 3, [0.25] * 3), artifacts={"model": "model.pt"})
    monkeypatch.setenv("LITEDA_CACHE", str(tmp_path / "cache"))
    emb, why = features.run_embedding(Stage(run, rec, {}))
    assert why == "" and emb.points.shape == (sum(emb.n_images), 2) and emb.n_source == emb.n_images[0]
    assert -2.0 <= emb.a_distance <= 2.0 and (run / features.CACHE_FILE).is_file()
    monkeypatch.setattr(features, "compute", lambda *a: pytest.fail("recomputed although cached"))
    again, _ = features.run_embedding(Stage(run, rec, {}))
    assert again.a_distance == emb.a_distance and (again.points == emb.points).all()
    (run / "model.pt").touch()  # another model file: the cache no longer applies
    assert features.signature(Stage(run, rec, {}), run / "model.pt") != str(
        np.load(run / features.CACHE_FILE)["signature"])
