"""Feature analysis: A-distance on synthetic features, t-SNE plot, and the runner's --phase analysis."""
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from liteda.analysis import a_distance, analyse_run, capped_loader, extract_features, plot_tsne
from liteda.metrics import soft_neighborhood_density
from liteda.runner import main


def gaussian(n, d=8, shift=0.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


def test_a_distance_separable_vs_overlapping():
    separable = a_distance(gaussian(200), gaussian(200, shift=4.0, seed=1))
    overlapping = a_distance(gaussian(200), gaussian(200, seed=1))
    assert separable == pytest.approx(2.0, abs=0.05)
    assert abs(overlapping) < 0.5
    assert separable > overlapping
    assert a_distance(gaussian(200), gaussian(200, seed=1)) == overlapping  # seeded split: deterministic


def test_plot_tsne_writes_png(tmp_path):
    plot_tsne(gaussian(20), gaussian(15, shift=2.0, seed=1), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_capped_loader_and_extract_features():
    ds = TensorDataset(torch.randn(30, 4), torch.zeros(30))
    loader = capped_loader(DataLoader(ds, batch_size=7), 10)
    assert len(loader.dataset) == 10
    model = torch.nn.Linear(4, 3)
    model.extract = model.forward  # what analyse_run calls
    model.train()
    f = extract_features(model, loader)
    assert f.shape == (10, 3) and model.training  # mode restored


def test_analyse_run_on_a_toy_model(tmp_path):
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def extract(self, x):
            return self.lin(x)

    src = DataLoader(TensorDataset(gaussian(40, 4), torch.zeros(40)), batch_size=8)
    tgt = DataLoader(TensorDataset(gaussian(30, 4, shift=5.0, seed=1), torch.zeros(30)), batch_size=8)
    out = analyse_run(Toy(), src, tgt, tmp_path, max_images=25)
    assert (out["n_source"], out["n_target"], out["tsne_png"]) == (25, 25, "tsne.png")
    assert (tmp_path / "tsne.png").is_file() and -2.0 <= out["a_distance"] <= 2.0


def test_runner_analysis_phase(run_args, tmp_path):
    fast = ["--resize-size", "18", "--crop-size", "16", "-b", "4"]
    main("dann", "adapt", run_args(*fast))
    res = main("dann", "adapt", run_args(*fast, "--phase", "analysis"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["analysis"] == res["analysis"] and saved["target_test"]["n"] > 0  # earlier results kept
    assert (tmp_path / "run" / "tsne.png").is_file()
    assert res["analysis"]["n_source"] == res["n_source_train"] and res["analysis"]["n_target"] == res["n_target_train"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert "target_test_snd" in history[0].split(",")


def test_soft_neighborhood_density_by_hand():
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    z = torch.nn.functional.normalize(logits.softmax(1), dim=1)
    total = 0.0
    for i in range(3):
        sims = torch.stack([z[i] @ z[j] / 0.05 for j in range(3) if j != i])
        q = sims.softmax(0)
        total += float(-(q * q.log()).sum())
    assert soft_neighborhood_density(logits) == pytest.approx(total / 3, rel=1e-5)
    # Identical predictions: every neighbour equally close -> the maximum, log(n - 1).
    assert soft_neighborhood_density(torch.zeros(5, 3)) == pytest.approx(float(torch.log(torch.tensor(4.0))), rel=1e-5)
