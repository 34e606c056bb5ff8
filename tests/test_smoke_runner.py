import json

from liteda.runner import main


def test_tiny_source_only_run_writes_results(run_args, tmp_path):
    res = main("source_only", "source_only", run_args())
    run = tmp_path / "run"
    for f in ("results.json", "model.pt", "checkpoint.pt", "history.csv", "curves.png"):
        assert (run / f).is_file(), f
    saved = json.loads((run / "results.json").read_text())
    assert saved["target_test"]["n"] == res["target_test"]["n"] > 0
    assert 0 <= saved["target_test"]["acc"] <= 100


def test_training_run_writes_its_stage_record(run_args, tmp_path):
    from liteda.record import read_record

    main("source_only", "source_only", run_args())
    run = tmp_path / "run"
    rec = read_record(run)
    assert (rec.kind, rec.name, rec.label, rec.seed) == ("source_only", "source_only", "source-only", 0)
    assert rec.dataset.name == "Custom" and rec.task == "src2tgt" and rec.dataset.classes == ["a", "b", "c"]
    assert rec.path(run, "model").name == "model.pt" and (rec.splits_dir(run) / "tgt_test.txt").is_file()
    assert (rec.transform.resize, rec.transform.crop) == (36, 32) and len(rec.transform.mean) == 3
