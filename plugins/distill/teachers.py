"""Frozen teachers for distillation: input renormalisation, the (weighted) ensemble, offline labelling, and
loading LiteDA ``model.pt`` files as teachers. Teachers see images only, never a target label."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..classifier import ImageClassifier, load_classifier
from ..datasets import IMAGENET_MEAN, IMAGENET_STD
from ..utils import fail


class Renormalize(nn.Module):
    """Maps an image normalised with the student's (mean, std) to the teacher's normalisation.

    ``x_raw = x * std_s + mean_s``; ``x_t = (x_raw - mean_t) / std_t`` (timm's tf_efficientnet_lite0 expects
    mean = std = 0.5 while the student's batches are ImageNet-normalised).
    """

    def __init__(self, mean_s: Sequence[float], std_s: Sequence[float], mean_t: Sequence[float],
                 std_t: Sequence[float]):
        super().__init__()
        as_buf = lambda v: torch.tensor(list(v), dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
        for name, v in (("mean_s", mean_s), ("std_s", std_s), ("mean_t", mean_t), ("std_t", std_t)):
            self.register_buffer(name, as_buf(v), persistent=False)
        self.identity = bool(torch.equal(self.mean_s, self.mean_t) and torch.equal(self.std_s, self.std_t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x * self.std_s + self.mean_s - self.mean_t) / self.std_t


def at_size(x: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """A batch resized to a teacher's own input size: a student trained at 160 px is taught by a 224 px teacher
    looking at the same crop at the size it was trained on (the student's crop keeps the teacher crop's share of
    the image), not at a size it never saw."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


class TeacherEnsemble(nn.Module):
    """Frozen teachers whose (weighted) mean probability is the soft target.

    Each teacher is a LiteDA :class:`ImageClassifier` behind a :class:`Renormalize` from the student's input
    normalisation to its own, fed at its own input size (``input_size``, when the teacher has one). Teachers
    stay in eval mode (BatchNorm statistics fixed) whatever mode the ensemble is put in, and never take
    gradients.
    """

    def __init__(self, teachers: Sequence[ImageClassifier], weights: Optional[Sequence[float]] = None,
                 student_mean: Sequence[float] = IMAGENET_MEAN, student_std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if not teachers:
            raise ValueError("a teacher ensemble needs at least one teacher")
        weights = [1.0] * len(teachers) if weights is None else list(weights)
        if len(weights) != len(teachers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"need {len(teachers)} non-negative teacher weights with a positive sum, got {weights}")
        self.teachers = nn.ModuleList(teachers)
        self.renorms = nn.ModuleList(
            Renormalize(student_mean, student_std, t.mean or IMAGENET_MEAN, t.std or IMAGENET_STD) for t in teachers)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32) / sum(weights), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # noqa: ARG002 - teachers are always evaluated, never trained
        return super().train(False)

    @property
    def features_dim(self) -> int:
        dims = {t.features_dim for t in self.teachers}
        if len(dims) != 1:
            raise ValueError(f"teachers have different feature sizes {sorted(dims)}; feature KD needs one")
        return dims.pop()

    @torch.no_grad()
    def outputs(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Per-teacher logits stacked ``(K, B, C)`` and, if asked, the weighted mean of their L2-normalised
        bottleneck features ``(B, D)``."""
        logits, feats = [], []
        x = x.to(self.weights.device)  # offline labelling feeds CPU loader batches
        for teacher, renorm in zip(self.teachers, self.renorms):
            f = teacher.extract(renorm(at_size(x, getattr(teacher, "input_size", None))))
            logits.append(teacher.head(f).float())
            feats.append(F.normalize(f.float(), dim=1))
        mean_f = torch.einsum("k,kbd->bd", self.weights, torch.stack(feats)) if features else None
        return torch.stack(logits), mean_f

    def mix(self, logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
        """Logits whose softmax at temperature ``T`` is the weighted mean of the teachers' tempered softmaxes:
        ``T * log sum_k w_k softmax(z_k / T)`` (one teacher: its own logits up to a constant shift)."""
        log_p = F.log_softmax(logits / T, dim=2) + self.weights.log().view(-1, 1, 1)
        return T * torch.logsumexp(log_p, dim=0)

    def forward(self, x: torch.Tensor, T: float = 1.0) -> torch.Tensor:
        return self.mix(self.outputs(x)[0], T)

    @torch.no_grad()
    def label_set(self, loader: DataLoader, features: bool = False,
                  views: int = 2) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Offline teacher outputs for every image of an ``(image, index)`` loader, averaged over ``views``
        test-time views of it (:func:`tta_views`): logits ``(K, N, C)`` and, if asked, features ``(N, D)``, rows
        in index order."""
        n = len(loader.dataset)
        logits, feats = None, None
        for x, idx in tqdm(loader, desc="teacher labels", leave=False, disable=not sys.stderr.isatty()):
            outs = [self.outputs(v, features) for v in tta_views(x, views)]
            z = torch.stack([o[0] for o in outs]).mean(0)
            if logits is None:
                logits = z.new_zeros(z.shape[0], n, z.shape[2])
                feats = z.new_zeros(n, outs[0][1].shape[1]) if features else None
            logits[:, idx] = z
            if features:
                feats[idx] = torch.stack([o[1] for o in outs]).mean(0)
        return logits, feats


TTA_VIEWS = (2, 10)


def tta_views(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``n`` label-preserving views of a test-transformed batch: 2 = the images and their mirrors; 10 = the five
    crops of 7/8 the side (centre and corners, resized back to the batch's size) and their mirrors, the ten-crop
    of ImageNet evaluation taken inside the centre crop."""
    if n not in TTA_VIEWS:
        raise ValueError(f"test-time views: one of {TTA_VIEWS}, got {n}")
    crops = [x]
    if n == 10:
        h, w = x.shape[-2:]
        ch, cw = round(h * 7 / 8), round(w * 7 / 8)
        corners = [((h - ch) // 2, (w - cw) // 2), (0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)]
        crops = [F.interpolate(x[..., i:i + ch, j:j + cw], size=(h, w), mode="bilinear", align_corners=False)
                 for i, j in corners]
    return [v for c in crops for v in (c, torch.flip(c, dims=[3]))]


def load_teacher(path: str | os.PathLike, flag: str = "--teacher-ckpt") -> tuple[ImageClassifier, dict]:
    """A LiteDA ``model.pt`` and a summary for the run JSON (arch, and the teacher's own target-test accuracy
    from its run folder's results.json when there is one)."""
    if not os.path.isfile(path):
        fail(f"{flag} '{path}' does not exist")
    model, rec = load_classifier(path)
    if rec.get("mean") and rec.get("std"):  # the normalisation the teacher was trained with
        model.mean, model.std = tuple(rec["mean"]), tuple(rec["std"])
    model.input_size = rec.get("crop_size")
    return model, {"ckpt": str(path), "arch": rec["arch"], "num_classes": rec["num_classes"],
                   "mean": list(model.mean or ()), "std": list(model.std or ()), **_teacher_run_summary(path)}


def load_teachers(paths: Sequence[str], num_classes: int, student_mean: Optional[Sequence[float]],
                  student_std: Optional[Sequence[float]], weights: Optional[Sequence[float]] = None,
                  flag: str = "--teacher-ckpt") -> tuple[TeacherEnsemble, list[dict]]:
    """Frozen teachers from LiteDA ``model.pt`` files as one ensemble on the student's inputs, and their
    summaries; a teacher of another class count is a one-line error naming ``flag``."""
    loaded = [load_teacher(p, flag) for p in paths]
    for _, info in loaded:
        if info["num_classes"] != num_classes:
            fail(f"{flag} '{info['ckpt']}' has {info['num_classes']} classes, the data {num_classes}")
    try:
        ensemble = TeacherEnsemble([m for m, _ in loaded], weights, student_mean or IMAGENET_MEAN,
                                   student_std or IMAGENET_STD)
    except ValueError as e:
        fail(f"--teacher-weights: {e}")
    return ensemble, [info for _, info in loaded]


def _teacher_run_summary(path: str | os.PathLike) -> dict:
    """What the teacher's run folder says of it (its stage record and its target-test accuracy), when the
    checkpoint sits in one; a bare ``model.pt`` has no record."""
    from ..record import FILENAME, read_record, results_of

    run = Path(path).parent
    if not (run / FILENAME).is_file():
        return {"target_test_acc": None, "note": f"no {FILENAME} next to the checkpoint"}
    rec = read_record(run)
    res = results_of(run, rec)
    return {"target_test_acc": res.get("target_test", {}).get("acc"), "method": rec.name, "label": rec.label,
            "dataset": rec.dataset.name, "task": rec.task, "seed": rec.seed, "protocol": rec.dataset.protocol,
            "weights": rec.weights, "run": str(run)}
