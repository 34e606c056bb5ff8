"""The embedded default dataset: scikit-learn's bundled digits (source) and an MNIST-M-style target.

Needs no download: ``sklearn.datasets.load_digits`` ships with scikit-learn. The 1,797 digits are split into
two disjoint halves; the source half is drawn white-on-black, the target half becomes coloured strokes on
synthetic coloured textures (MNIST-M-style; dark or bright backgrounds, so polarity flips too): colour
statistics and backgrounds shift while the shapes keep their labels. Deterministic by seed; written as PNG folders so the
same folder-per-class pipeline as Office reads them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .utils import atomic_write_text

SIZE = 32


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
    """A coloured digit over a textured background, dark or bright at random, with the stroke on the other side
    of the brightness range so the digit stays readable (polarity flips in half the images)."""
    bright_bg = rng.random() < 0.5
    bg = _texture(rng) * 0.43 + (145 if bright_bg else 0)  # [145, 255] or [0, 110]
    fg = rng.uniform(0, 95, 3) if bright_bg else rng.uniform(160, 255, 3)
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
    atomic_write_text(root / ".complete", f"seed={seed}\n")


def ensure_digits(root: str | os.PathLike, seed: int = 0) -> None:
    """Generate the embedded dataset under ``root`` unless a finished copy is there."""
    if not (Path(root) / ".complete").is_file():
        make_digits(root, seed)
