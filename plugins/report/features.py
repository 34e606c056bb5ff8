"""Source vs target bottleneck features of a run's saved model, for the report's t-SNE and A-distance grids.

The runner's analysis phase measures source-only, adapted, distilled and oracle runs; teachers and compressed
students have no such phase, so the report takes their features itself, exactly as that phase does
(``liteda.analysis``): ``model.extract`` in eval mode, the record's test transform, a seeded subset of at most
``MAX_IMAGES`` source-train and target-train images from the run's own image lists (target labels dropped on
reading). The t-SNE of at most ``TSNE_POINTS`` images per domain and the A-distance are cached in the run folder
(``report_tsne.npz``), keyed by the model file and the image lists, so a rebuilt report reuses them.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..utils import UserError, atomic_write_bytes
from .collect import Stage

if TYPE_CHECKING:
    import torch

CACHE_FILE = "report_tsne.npz"
TSNE_POINTS = 500  # per domain: a readable panel, and a t-SNE that takes seconds
CACHE_FORMAT = "liteda.report_tsne/1"
BATCH = 64


@dataclass
class Embedding:
    points: np.ndarray   # N x 2 t-SNE coordinates, the source images' rows first
    n_source: int        # rows of ``points`` that are source images
    a_distance: float    # proxy A-distance of the features (all images taken, not only the t-SNE's)
    n_images: tuple[int, int]  # source, target images the features were taken on


def model_file(stage: Stage) -> Optional[Path]:
    """The run's saved model: ``compressed.pt`` of a compress stage, else ``model.pt`` (None when absent)."""
    for role in ("compressed", "model"):
        if role in stage.rec.artifacts:
            path = stage.run_dir / stage.rec.artifacts[role]
            return path if path.is_file() else None
    return None


def _image_lists(stage: Stage) -> list[Path]:
    ds = stage.rec.dataset
    splits = stage.rec.splits_dir(stage.run_dir)
    return [splits / f"{ds.source}_train.txt", splits / f"{ds.target}_train.txt"]


def signature(stage: Stage, model: Path) -> str:
    """What the cached result depends on: the model file, the image lists, the subset sizes."""
    from ..analysis import MAX_IMAGES

    h = hashlib.sha256()
    for p in _image_lists(stage):
        h.update(p.read_bytes())
    st = model.stat()
    return f"{CACHE_FORMAT}:{model.name}:{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:16]}:{MAX_IMAGES}:{TSNE_POINTS}"


def _read_cache(path: Path, sig: str) -> Optional[Embedding]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["signature"]) != sig:
                return None
            return Embedding(z["points"], int(z["n_source"]), float(z["a_distance"]),
                             (int(z["n_images"][0]), int(z["n_images"][1])))
    except (OSError, KeyError, ValueError):
        return None


def _write_cache(path: Path, sig: str, e: Embedding) -> None:
    buf = io.BytesIO()
    np.savez(buf, signature=np.array(sig), points=e.points.astype(np.float32), n_source=e.n_source,
             a_distance=e.a_distance, n_images=np.array(e.n_images))
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:  # a read-only runs tree: the report still draws, it only recomputes next time
        pass


def _load_model(stage: Stage, path: Path):
    if "compressed" in stage.rec.artifacts:
        from ..compress import load_compressed

        return load_compressed(path)[0].eval()
    from ..classifier import load_classifier

    return load_classifier(path)[0].eval()


def _features(model, images_u8, transform) -> "torch.Tensor":
    import torch

    from ..deploy.inputs import normalised

    out = []
    with torch.no_grad():
        for i in range(0, len(images_u8), BATCH):  # normalise batch by batch: 224 px float images add up
            x = normalised(images_u8[i:i + BATCH], transform.crop, transform.mean, transform.std)
            out.append(model.extract(torch.from_numpy(x)).float())
    return torch.cat(out)


def compute(stage: Stage, path: Path) -> Embedding:
    """Features of the run's model on its source-train and target-train images, their t-SNE and A-distance."""
    from ..analysis import MAX_IMAGES, a_distance, capped_indices, tsne_embedding
    from ..datasets import load_images, read_image_list
    from ..settings import apply_threads, cache_dir

    apply_threads()
    model = _load_model(stage, path)
    ds, tf = stage.rec.dataset, stage.rec.transform
    feats = []
    for lst in _image_lists(stage):
        items = [(rel, -1) for rel, _ in read_image_list(lst, ds.root)]  # features need no label
        images, _ = load_images(ds.root, items, tf.resize, cache_dir())
        feats.append(_features(model, images[capped_indices(len(images), MAX_IMAGES)], tf))
    f_s, f_t = feats
    dist = a_distance(f_s, f_t)
    sub_s, sub_t = (capped_indices(len(f), TSNE_POINTS) for f in (f_s, f_t))
    points = tsne_embedding(f_s[sub_s], f_t[sub_t])
    return Embedding(np.asarray(points, dtype=np.float32), len(sub_s), dist, (len(f_s), len(f_t)))


def run_embedding(stage: Stage) -> tuple[Optional[Embedding], str]:
    """The run's cached or freshly computed embedding, or None and why it cannot be had."""
    path = model_file(stage)
    if path is None:
        return None, "no model file in the run folder"
    if not all(p.is_file() for p in _image_lists(stage)):
        return None, "no image lists in the run folder"
    sig = signature(stage, path)
    cache = stage.run_dir / CACHE_FILE
    cached = _read_cache(cache, sig)
    if cached is not None:
        return cached, ""
    if not Path(stage.rec.dataset.root).is_dir():
        return None, f"the dataset root '{stage.rec.dataset.root}' is not on this machine"
    try:
        emb = compute(stage, path)
    except (UserError, OSError, RuntimeError, ValueError) as e:
        return None, str(e).splitlines()[0][:160] if str(e) else type(e).__name__
    _write_cache(cache, sig, emb)
    return emb, ""
