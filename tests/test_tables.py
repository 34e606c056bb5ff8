import math

import pytest

from liteda.tables import accuracy_grid, table_rows, to_csv, to_markdown


def _run(method, task, seed, acc):
    return {"method": method, "task": task, "seed": seed, "target_test": {"acc": acc}}


def test_mean_std_over_seeds_and_avg_column():
    runs = [_run("dann", "A2W", 0, 80.0), _run("dann", "A2W", 1, 84.0), _run("dann", "W2A", 0, 60.0),
            _run("dann", "W2A", 1, 70.0), _run("source_only", "A2W", 0, 75.0)]
    header, body = table_rows(accuracy_grid(runs, rows=["source_only", "dann"]))
    assert header[:3] == ["Method", "A→W", "W→A"]
    dann = body[1]
    # A2W: mean 82, sample std sqrt(8) = 2.83; W2A: 65 ± 7.07; Avg per seed: (70, 77) -> 73.5 ± 4.95
    assert dann[1] == "82.0 ± 2.8" and dann[2] == "65.0 ± 7.1"
    assert dann[3] == f"73.5 ± {math.sqrt(((70 - 73.5) ** 2 + (77 - 73.5) ** 2) / 1):.1f}"
    assert body[0][2] == "–" and body[0][3] == "–"  # source-only lacks W2A: no average
    assert "| dann |" in to_markdown(header, body)
    assert to_csv(header, body).splitlines()[0].startswith("Method,")
    assert dann[4] == "0,1" and body[0][4] == "0"


def test_seeds_column_says_which_seeds_the_average_is_over():
    runs = [_run("kd", "A2W", 0, 90.0), _run("kd", "W2A", 0, 80.0), _run("kd", "A2W", 1, 94.0)]
    header, body = table_rows(accuracy_grid(runs))
    assert body[0][3] == "85.0" and body[0][4] == "0,1 (Avg: 0)"  # seed 1 lacks W2A: not in the Avg


def test_compression_table_rows_follow_the_stages():
    from liteda.report.tables import compression_table

    comp = [{"method": "any_recipe", "task": "W2A", "seed": 0, "before": {"target_test": {"acc": 60.0}},
             "stages": [{"op": "attention", "kind": "eca", "target_test_acc": 61.0},
                        {"op": "lowrank", "target_test_acc": 58.5}],
             "resources": {"params": 682249, "model_mb": 2.89}}]
    dep = [{"parent": "any_recipe", "name": "ort-int8", "task": "W2A", "seed": 0, "runtime": "ort", "precision": "int8",
            "acc": 58.0, "size_mb": 0.8},
           {"parent": "kd", "name": "ort-int8", "task": "W2A", "seed": 0, "runtime": "ort", "precision": "int8",
            "acc": 99.0, "size_mb": 2.1},  # another stage's artifact: not this table's
           {"parent": "any_recipe", "name": "ort-int8w", "task": "W2A", "seed": 0, "runtime": "ort",
            "precision": "int8w", "acc": 58.5, "size_mb": 0.7}]
    header, body = compression_table(comp, dep)
    assert header[1:4] == ["student", "after attention:eca", "after lowrank"]
    assert body == [["W2A s0", "60.0", "61.0", "58.5", "0.682", "2.89", "58.0", "0.80", "58.5", "0.70"]]


def test_deployed_rows_name_each_ort_artifact():
    from liteda.report.collect import deployed_rows

    dep = [{"parent": r, "parent_label": label, "name": f"{rt}-{p}", "task": "A2W", "seed": 0, "runtime": rt,
            "precision": p, "acc": 50.0}
           for r, label, rt, p in (("small", "small student", "ort", "int8"),
                                   ("small", "small student", "ort", "int8w"),
                                   ("kd", "distilled student", "ort", "int8"),
                                   ("kd", "distilled student", "torch", "fp32"),
                                   ("small", "small student", "ort", "fp16"))]
    dep.append({**dep[0], "name": "ort-fp32", "acc": None})  # could not run: no accuracy row
    rows = deployed_rows(dep)
    assert [r["label"] for r in rows] == ["small student, ort-int8", "small student, ort-int8w",
                                          "distilled student, ort-int8", "small student, ort-fp16"]
    assert rows[0]["method"] == "small/ort-int8" and rows[0]["group"] == "deployed"


def _record(kind, name, arch="mobilenet_v3_small", label=None):
    from liteda.record import DatasetRef, StageRecord, Transform

    return StageRecord(kind=kind, name=name, label=label or name, seed=0, arch=arch,
                       dataset=DatasetRef("Fake", "data", "A", "W", ["a"]),
                       transform=Transform(36, 32, [0.5] * 3, [0.2] * 3))


def test_rows_in_pipeline_order_with_teachers_named():
    from liteda.report.collect import group_of, label_of, order_keys

    recs = [_record("oracle", "oracle"), _record("distill", "kd"),
            _record("adapt", "cdan-tf_efficientnet_lite0", "tf_efficientnet_lite0", "cdan tf_efficientnet_lite0"),
            _record("adapt", "cdan"), _record("source_only", "source_only"), _record("compress", "compressed")]
    rows = [{"method": r.name, "group": group_of(r)} for r in recs]
    assert order_keys(rows) == ["source_only", "cdan", "cdan-tf_efficientnet_lite0", "kd", "compressed", "oracle"]
    assert label_of(recs[2]) == "teacher: cdan tf_efficientnet_lite0"
    assert label_of(recs[3]) == "cdan" and label_of(recs[1]) == "kd"  # the record's own label otherwise


def test_teachers_named_with_their_seed_when_students_share_one():
    from liteda.report.tables import teachers_used

    def kd(seed, tseed):
        return {"method": "kd", "group": "distill", "seed": seed, "teachers": [
            {"name": "cdan-tf_efficientnet_lite0", "arch": "tf_efficientnet_lite0", "seed": tseed}]}
    assert teachers_used([kd(0, 0), kd(1, 1)]) == ["cdan-tf_efficientnet_lite0 tf_efficientnet_lite0"]
    assert teachers_used([kd(0, 0), kd(1, 0), kd(2, 0)]) == [
        "cdan-tf_efficientnet_lite0 tf_efficientnet_lite0 (teacher seed 0 for student seeds 0, 1, 2)"]


def test_validator_agreement_ranks_runs_and_scores_the_pick():
    from liteda.report.tables import validator_agreement

    def run(method, task, acc, im, kind="adapt"):
        return {"method": method, "label": method, "task": task, "seed": 0, "kind": kind,
                "target_test": {"acc": acc}, "validator": {"im_score": im}}

    runs = [run("source_only", "W2A", 60.0, 0.1), run("dann", "W2A", 80.0, 0.3), run("cdan", "W2A", 70.0, 0.5),
            run("oracle", "W2A", 99.0, 0.9, kind="oracle"),  # never a candidate
            run("dann", "A2W", 50.0, 0.2), run("cdan", "A2W", 55.0, 0.4), run("mcc", "A2W", 65.0, 0.6)]
    header, body = validator_agreement(runs)
    assert header[2] == "Spearman IM"
    a2w, w2a, mean = body
    assert a2w[:4] == ["A2W s0", "3", "+1.00", "mcc (65.0)"] and a2w[-1] == "65.0"
    # W2A: IM ranks 60 < 80 > 70 as 1, 2, 3: rho = 0.5; it picks CDAN (70) while DANN (80) is best
    assert w2a[:4] == ["W2A s0", "3", "+0.50", "cdan (70.0)"] and w2a[-1] == "80.0"
    assert w2a[4] == "–"  # no SND without a history file
    assert mean[3] == "67.5" and mean[-1] == "72.5"
    assert validator_agreement(runs[:2])[1] == []  # fewer than 3 runs: no ranking to judge


def _bench_module(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_six_task_compression_table_averages_each_technique(tmp_path):
    from liteda.utils import write_json

    table = _bench_module("compress_table")

    def row(name, acc, delta, mb, onnx_mb=None):
        return {"technique": name, "target_test_acc": acc, "delta_acc": delta, "params": 1_000_000,
                "macs": 50e6, "file_mb": mb, "onnx_int8_mb": onnx_mb, "latency_ms_p50": 2.0}

    for task, base, d in (("W2A", 90.0, -1.0), ("A2W", 80.0, -3.0)):
        rows = [row("uncompressed student", base, 0.0, 4.0), row("ptsq", base + d, d, 1.0, 0.9)]
        if task == "W2A":
            rows.append(row("qat", base, 0.0, 1.0))  # only on one task: its average says so
        write_json(tmp_path / f"compress_{task}.json", {"header": f"x; machine {task}", "rows": rows})
    table.main([str(tmp_path)])
    header = (tmp_path / "compress_all_tasks.md").read_text()
    assert "| technique | A→W | W→A | Avg Δ |" in header
    lines = {l.split(" | ")[0].lstrip("| "): l for l in header.splitlines() if l.startswith("| ")}
    assert lines["uncompressed student"].startswith("| uncompressed student | 80.0 | 90.0 | 85.0 |")
    assert lines["ptsq"].startswith("| ptsq | -3.0 | -1.0 | -2.00 | 1.000 M | 50.0 | 1.00 | 0.900 | 2.00 |")
    assert lines["qat"].startswith("| qat | – | +0.0 | +0.00 (1/2) |")


def test_compression_benchmark_reuses_a_finished_recipe(tmp_path, monkeypatch):
    import liteda.compress.cli as compress_cli
    from liteda.utils import write_json

    bench = _bench_module("bench_compress")
    out = tmp_path / "r"
    argv = ["--run", "parent", "--prune", "0.3"]
    write_json(out / "results.json", {"command": " ".join([compress_cli.PROG, *argv, "--out", str(out)]), "x": 1})
    write_json(out / "record.json", {})
    calls = []
    monkeypatch.setattr(compress_cli, "main", lambda a: calls.append(a) or {"x": 2})
    assert bench.run_row(argv, out)["x"] == 1 and not calls  # finished with the same command: read back
    assert bench.run_row(argv + ["--prune-steps", "2"], out)["x"] == 2 and len(calls) == 1


def test_a_run_logged_under_its_own_folder_is_its_own_row(tmp_path):
    """Two distilled students (one from a teacher ensemble) are two rows, each with its record's label."""
    from liteda.record import write_record
    from liteda.report.collect import collect, order_keys
    from liteda.utils import write_json

    for kind, folder, label in (("distill", "kd", "distilled student"),
                                ("distill", "kd_ens", "distilled student, two-teacher ensemble"),
                                ("adapt", "mcc", "mcc"), ("compress", "relu", "ReLU student"),
                                ("oracle", "oracle", "oracle"), ("distill", "kd_mcc", "distilled + MCC")):
        d = tmp_path / "Digits" / "S2M" / folder / "seed0"
        rec = _record(kind, folder, label=label)
        rec.dataset.source, rec.dataset.target = "S", "M"
        write_record(d, rec)
        write_json(d / "results.json", {"schema": "liteda.run/1", "method": "kd", "task": "S2M", "seed": 0,
                                        "target_test": {"acc": 50.0}})
    c = collect(tmp_path, "Digits")
    assert sorted(r["method"] for r in c.runs if r["group"] == "distill") == ["kd", "kd_ens", "kd_mcc"]
    assert c.labels["kd_ens"] == "distilled student, two-teacher ensemble"
    assert order_keys(c.rows) == ["mcc", "kd", "kd_ens", "kd_mcc", "relu", "oracle"]
    assert {r["task"] for r in c.rows} == {"S2M"}


def test_metrics_a_record_lacks_are_recovered_from_its_confusion_matrix():
    """A record written before Rand index (or P/R/F1) was recorded gets them from its confusion matrix, equal to
    what classification_metrics computes from the labels; recorded values are kept."""
    import torch

    from liteda.metrics import classification_metrics
    from liteda.report.confusion import completed

    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0, 2, 0]), 4).float()  # class 3 never seen
    full = classification_metrics(logits, labels, 4)
    old = {k: full[k] for k in ("acc", "loss", "nmi", "confusion")}
    old["nmi"] = 0.123  # recorded: kept as recorded
    filled = completed(old)
    for k in ("precision_macro", "recall_macro", "f1_macro", "rand", "ari"):
        assert math.isclose(filled[k], full[k], rel_tol=1e-12), k
    assert filled["nmi"] == 0.123 and filled["loss"] == full["loss"]
    assert completed({"acc": 50.0}) == {"acc": 50.0}  # no confusion matrix: nothing to recover


def test_two_compressions_of_the_same_students_are_paired_by_task_and_seed(tmp_path):
    """Each pair's deployed-file accuracies, the guard each float stage applied, and the mean over the pairs; a
    run without a partner is left out, and a pair compressed from different parents is a one-line error."""
    from liteda.record import DatasetRef, StageRecord, Transform, write_record
    from liteda.utils import UserError, write_json

    compare = _bench_module("compare_compress_runs")

    def run(task, name, seed, file_acc, guard, parent="kd", bits=None):
        d = tmp_path / "OfficeCaltech" / task / name / f"seed{seed}"
        write_record(d, StageRecord(kind="compress", name=name, label=name, seed=seed,
                                    dataset=DatasetRef("OfficeCaltech", "root", task[0], task[-1], ["a", "b"]),
                                    transform=Transform(256, 224, [], []), artifacts={}, results="results.json"))
        write_json(d / "results.json", {"run": f"{task}/{parent}/seed{seed}", "before": {"target_test": {"acc": 90.0}},
                                        "stages": [{"op": "lowrank", "finetune": [{"epoch": 1}, {"ft_guard": guard}],
                                                    "target_test_acc": 89.0},
                                                   {"op": "quantize", "kind": "ptsq", "target_test_acc": 80.0,
                                                    "target_train_kl_strong": 0.02 if bits is None else 0.01,
                                                    **({} if bits is None else {"weight_bits": bits})}]})
        write_record(d / "deploy", StageRecord(kind="bench", name=name, label=name, seed=seed,
                                               dataset=DatasetRef("OfficeCaltech", "root", task[0], task[-1], ["a", "b"]),
                                               transform=Transform(256, 224, [], []), artifacts={}, results="bench.json"))
        write_json(d / "deploy" / "bench.json", {"machine": None, "rows": [{"name": "ort-int8", "acc": file_acc}]})

    old = {"kept": True, "agree_before": 99.0, "agree_after": 99.5}
    new = {"criterion": "kl_strong", "kept": False, "kl_strong_before": 0.02, "kl_strong_after": 0.09}
    run("A2W", "1mb", 0, 85.0, old)
    run("A2W", "1mb_kl", 0, 88.0, new, bits=8)
    run("D2W", "1mb", 0, 95.0, old)
    run("D2W", "1mb_kl", 0, 96.0, new, bits=8)
    run("D2W", "1mb", 1, 95.0, old)  # no partner: left out
    compare.main([str(tmp_path), "--a", "1mb", "--b", "1mb_kl", "--out", str(tmp_path / "cmp")])
    lines = (tmp_path / "cmp.md").read_text().splitlines()
    rows = [l for l in lines if l.startswith("| A2W") or l.startswith("| D2W") or l.startswith("| mean")]
    assert rows[0].startswith("| A2W | 0 | 90.0 | 89.0 | 89.0 | 85.0 | 88.0 | +3.0 | lowrank kept (agree 99 → 99.5) | "
                              "lowrank undone (kl_strong 0.02 → 0.09) | ptsq 7-bit | ptsq 8-bit | 0.0200 | 0.0100 |")
    assert rows[1].startswith("| D2W | 0 |")  # a run without weight_bits predates it: 7 bits
    assert rows[2] == "| mean (2 runs) |  | 90.0 |  |  | 90.0 | 92.0 | +2.00 |  |  |  |  | 0.0200 | 0.0100 |"
    run("A2W", "1mb_kl", 0, 88.0, new, parent="other")
    with pytest.raises(UserError, match="compressed from different runs"):
        compare.main([str(tmp_path), "--a", "1mb", "--b", "1mb_kl", "--out", str(tmp_path / "cmp")])


def test_recipe_candidates_ranks_by_validators_and_shows_deployed_files_as_references(tmp_path):
    """benchmarks/recipe_candidates.py: per task and seed the IM and SND picks among the candidates; a compression
    run given as a reference shows its deployed file's accuracy (the bench's recommended artifact); given as a candidate it is a one-line error."""
    import importlib.util
    import json
    from pathlib import Path

    from liteda.utils import UserError

    def run(name, acc, im, snd):
        d = tmp_path / name / "A2W" / "seed2"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"task": "A2W", "seed": 2, "target_test": {"acc": acc},
                                                    "validator": {"im_score": im}}))
        (d / "history.csv").write_text(f"epoch,target_test_snd\n1,0.0\n2,{snd}\n")
    run("a", 90.0, 2.2, 1.0)
    run("b", 95.0, 2.1, 2.0)
    f = tmp_path / "file" / "A2W" / "seed2"
    (f / "deploy").mkdir(parents=True)
    (f / "results.json").write_text(json.dumps({"task": "A2W", "before": {}, "after": {}}))
    (f / "deploy" / "bench.json").write_text(json.dumps({"task": "A2W", "recommended": {"artifact": "ort-int8"},
                                                       "rows": [{"name": "torch-int8", "acc": 91.0, "size_mb": 1.2},
                                                                {"name": "ort-int8", "acc": 93.0, "size_mb": 0.99}]}))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_candidates.py"
    spec = importlib.util.spec_from_file_location("recipe_candidates", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "table"
    mod.main(["--candidate", f"a={tmp_path}/a/A2W/seed*", "--candidate", f"b={tmp_path}/b/A2W/seed*",
              "--reference", f"file={tmp_path}/file/A2W/seed*", "--out", str(out)])
    md = out.with_suffix(".md").read_text()
    assert "| A2W s2 | 90.0 | 95.0 | a (90.0) | b (95.0) | 95.0 | 93.0 |" in md
    with pytest.raises(UserError, match="compression run"):
        mod.main(["--candidate", f"file={tmp_path}/file/A2W/seed*", "--out", str(out)])


def test_epoch_selection_reports_last_im_selected_and_hindsight_epochs(tmp_path):
    """benchmarks/epoch_selection.py: the IM epoch is the one with the highest IM score, on target-train when the
    run logged it there, else on target-test; the accuracies are read for the report only."""
    import importlib.util
    import json
    from pathlib import Path

    def run(name, cols, rows):
        d = tmp_path / name / "seed0"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"task": "A2W", "seed": 0}))
        (d / "history.csv").write_text(",".join(["epoch", "target_test_acc", *cols]) + "\n"
                                       + "".join(",".join(map(str, r)) + "\n" for r in rows))
    run("test_im", ["target_test_im_score"], [(1, 80, 1.0), (2, 95, 2.0), (3, 90, 1.5)])
    run("train_im", ["target_test_im_score", "target_train_im_score"], [(1, 80, 9.0, 1.0), (2, 95, 1.0, 0.5),
                                                                         (3, 90, 1.0, 2.0)])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "epoch_selection.py"
    spec = importlib.util.spec_from_file_location("epoch_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--runs", f"a={tmp_path}/test_im/seed*", "--runs", f"b={tmp_path}/train_im/seed*",
                    "--out", str(tmp_path / "sel")])
    a, b = res["runs"]
    assert (a["im_images"], a["im_epoch"], a["im_acc"], a["last_acc"]) == ("target-test", 2, 95.0, 90.0)
    assert (b["im_images"], b["im_epoch"], b["im_acc"], b["best_epoch"]) == ("target-train", 3, 90.0, 2)
    assert "Regenerate:" in (tmp_path / "sel.md").read_text()
