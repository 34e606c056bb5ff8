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
