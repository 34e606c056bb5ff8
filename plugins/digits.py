"""The embedded default dataset: scikit-learn's bundled digits (source) and an MNIST-M-style target.

Needs no download: ``sklearn.datasets.load_digits`` ships with scikit-learn. The 1,797 8x8 digits are upsampled
to 32x32 and split into two disjoint halves by a seeded permutation (898 source, 899 target images):

- ``digits`` (S): white strokes on a black background, as MNIST;
- ``digits_m`` (M): the same kind of strokes in a random bright colour over a dark, coloured synthetic texture,
  as MNIST-M (Ganin et al., 2016, the DANN paper's digits benchmark).

Shapes keep their labels while colour, background texture and image statistics shift, the shift a domain
adaptation method is meant to remove: a network trained on S alone mistakes texture for strokes, one that also
sees M unlabeled can learn to ignore the background. The stroke stays brighter than its background in both domains
(no polarity flip), so a small network trained from scratch on a CPU budget can align the two domains.
Deterministic by seed; written as PNG folders so the same folder-per-class pipeline as Office reads them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .utils import atomic_write_text

SIZE = 32
VERSION = 2  # the generator's version: a copy made by another version is made again


def _upsample(digit8: np.ndarray) -> np.ndarray:
    img = Image.fromarray((digit8 / 16.0 * 255).astype(np.uint8)).resize((SIZE - 8, SIZE - 8), Image.BICUBIC)
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    canvas[4:-4, 4:-4] = np.asarray(img)
    return canvas


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour noise plus stripes of a random frequency and angle: a stand-in for BSDS photo patches."""
    low = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(low).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.2, 0.9)
    stripes = 40 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))[..., None] * rng.uniform(-1, 1, 3)
    return np.clip(base + stripes, 0, 255)


def _blend(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright coloured digit over a dark textured background ([0, 110] per channel; strokes in [160, 255])."""
    bg = _texture(rng) * 0.43
    fg = rng.uniform(160, 255, 3)
    alpha = (digit / 255.0)[..., None]
    return bg * (1 - alpha) + fg * alpha


def make_digits(root: str | os.PathLike, seed: int = 0) -> None:
    from sklearn.datasets import load_digits

    root = Path(root)
    data = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.target))
    halves = {"digits": order[: len(order) // 2], "digits_m": order[len(order) // 2:]}
    for domain, idx in halves.items():
        for i in idx:
            y = int(data.target[i])
            digit = _upsample(data.images[i]).astype(np.float32)
            if domain == "digits":
                rgb = np.repeat(digit[..., None], 3, axis=2)
            else:
                rgb = _blend(digit, rng)
            out = root / domain / str(y) / f"{i:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb.astype(np.uint8)).save(out)
    atomic_write_text(root / ".complete", f"version={VERSION} seed={seed}\n")


def ensure_digits(root: str | os.PathLike, seed: int = 0) -> None:
    """Generate the embedded dataset under ``root`` unless a finished copy of this version and seed is there."""
    marker = Path(root) / ".complete"
    if marker.is_file() and marker.read_text().strip() == f"version={VERSION} seed={seed}":
        return
    import shutil

    for domain in ("digits", "digits_m"):  # another version's images would mix with this one's
        shutil.rmtree(Path(root) / domain, ignore_errors=True)
    make_digits(root, seed)
