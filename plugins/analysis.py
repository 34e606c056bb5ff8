"""Feature-space analysis of a trained run (PROTOCOL.md "Curves"): t-SNE of source vs target bottleneck
features and the proxy A-distance (Ben-David et al., 2010), as tllib's ``utils.analysis`` reports them.

Features are taken with ``model.extract`` in eval mode on source-train and target-train (eval transform), on a
fixed random subset of at most ``max_images`` per domain. No label of either domain is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

# Images per domain the features are taken on (a seeded subset of larger splits).
MAX_IMAGES = 1000


def capped_loader(loader: DataLoader, max_images: int, seed: int = 0) -> DataLoader:
    """The same dataset, restricted to a seeded random subset of ``max_images`` (image lists are class-sorted,
    so the first N would drop whole classes)."""
    n = len(loader.dataset)
    if n <= max_images:
        return loader
    return DataLoader(Subset(loader.dataset, capped_indices(n, max_images, seed)), batch_size=loader.batch_size,
                      shuffle=False)


def capped_indices(n: int, max_images: int, seed: int = 0) -> list[int]:
    """The sorted seeded random subset of ``range(n)`` that :func:`capped_loader` keeps (all when it fits), so
    features taken elsewhere (the report) come from the same images."""
    if n <= max_images:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=max_images, replace=False).tolist())


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader: DataLoader, device: str = "cpu") -> torch.Tensor:
    """Bottleneck features (``model.extract``) over a loader, in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    feats = [model.extract(x.to(device)).float().cpu() for x, _ in loader]
    model.train(was_training)
    return torch.cat(feats)


def a_distance(f_s: torch.Tensor, f_t: torch.Tensor, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` of a linear domain classifier (logistic regression on standardised
    features) trained on a stratified 50% of the pooled features and tested on the other 50%.
    ~0 when the domains are indistinguishable, 2 when they are linearly separable."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = torch.cat([f_s, f_t]).numpy().astype(np.float64)
    y = np.r_[np.ones(len(f_s)), np.zeros(len(f_t))]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    err = 1.0 - clf.fit(x_tr, y_tr).score(x_te, y_te)
    return float(2.0 * (1.0 - 2.0 * err))


def tsne_embedding(f_s: torch.Tensor, f_t: torch.Tensor, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the pooled features (source rows first), as :func:`plot_tsne` draws it."""
    from sklearn.manifold import TSNE

    x = torch.cat([f_s, f_t]).numpy()
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))  # sklearn requires perplexity < n_samples
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_tsne(f_s: torch.Tensor, f_t: torch.Tensor, path: Path, seed: int = 0, title: str = "") -> None:
    """2-D t-SNE of pooled features; source red, target blue (tllib's colours)."""
    from .plots import plt

    emb = tsne_embedding(f_s, f_t, seed)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(emb[:len(f_s), 0], emb[:len(f_s), 1], s=4, c="r", alpha=0.6, label=f"source ({len(f_s)})")
    ax.scatter(emb[len(f_s):, 0], emb[len(f_s):, 1], s=4, c="b", alpha=0.6, label=f"target ({len(f_t)})")
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyse_run(model: torch.nn.Module, source_loader: DataLoader, target_loader: DataLoader, run_dir,
                max_images: int = MAX_IMAGES, seed: int = 0, device: Optional[str] = None) -> dict:
    """t-SNE PNG (``run_dir/tsne.png``) and A-distance of source-train vs target-train bottleneck features."""
    run_dir = Path(run_dir)
    device = device or next(model.parameters()).device.type
    f_s = extract_features(model, capped_loader(source_loader, max_images, seed), device)
    f_t = extract_features(model, capped_loader(target_loader, max_images, seed), device)
    a_dist = a_distance(f_s, f_t, seed)
    plot_tsne(f_s, f_t, run_dir / "tsne.png", seed, f"source vs target features (A-distance {a_dist:.2f})")
    return {"a_distance": a_dist, "tsne_png": "tsne.png", "n_source": len(f_s), "n_target": len(f_t),
            "max_images": max_images, "features": "bottleneck (model.extract), eval transform"}
