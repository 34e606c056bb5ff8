"""Shared fixtures: tiny datasets the tests make themselves (no network, no ../shared)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LITEDA_SHARED", ROOT.parent / "shared"))

# Small, fast defaults for every run made by tests: 32 px images, 2 threads at most.
TINY = ["--resize-size", "36", "--crop-size", "32", "-b", "8", "--no-progress", "--scratch"]


def make_folder_dataset(root: Path, domains=("src", "tgt"), classes=("a", "b", "c"), per_class=8,
                        size=40, seed=0) -> Path:
    """Folder-per-class images whose class is visible (a bright square in a class-specific corner) and whose
    domain shifts colour, so adaptation has something to fix and accuracy is learnable in a few steps."""
    rng = np.random.default_rng(seed)
    corners = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for d_i, dom in enumerate(domains):
        for c_i, cls in enumerate(classes):
            folder = root / dom / cls
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                img = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
                img[..., d_i % 3] += 80  # domain shift: colour cast
                cy, cx = corners[c_i % 4]
                h = size // 2
                img[cy * h:(cy + 1) * h, cx * h:(cx + 1) * h] = 230
                Image.fromarray(img).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "data")


@pytest.fixture()
def run_args(tiny_dataset: Path, tmp_path: Path):
    """Arguments for a tiny run through the users' entry point (runner.main)."""
    def make(*extra: str, log: str = "run") -> list[str]:
        return [str(tiny_dataset), "-d", "Custom", "-s", "src", "-t", "tgt", *TINY, "--epochs", "1", "-i", "2",
                "--cache-dir", str(tmp_path / "cache"), "--runs-root", str(tmp_path / "runs"),
                "--log", str(tmp_path / log), *extra]
    return make


# One thread: tiny models gain nothing from two, and on a loaded 2-core machine two threads per process
# oversubscribe the cores (measured: a tiny forward went from ~15 ms to seconds).
os.environ.setdefault("LITEDA_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


def img_sources(html_text: str) -> list[str]:
    """The ``src`` of every ``<img>`` in an HTML page (the report must inline its figures)."""
    import html.parser

    class Imgs(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Imgs()
    parser.feed(html_text)
    return parser.srcs
