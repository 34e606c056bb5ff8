"""What export and bench read: ONLY the run's stage record (``record.json``) and the files it names.

The model is the record's ``compressed`` artifact (a compress run) or its ``model`` artifact (a training run);
the images come from the run's own image lists (``<run>/<splits>/<target>_{train,test}.txt``) and are
preprocessed with the record's test transform. Calibration and the agreement images that choose the recommended
artifact are target-TRAIN images with their labels dropped; target-TEST images (with labels) are only used to
score.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..record import StageRecord, holdout_list, read_record
from ..utils import fail

QUANTIZED_BY_TORCH = ("ptsq", "qat")  # static INT8 PyTorch models: exported as INT8 QDQ with their own scales


@dataclass
class DeployInputs:
    run_dir: Path
    record: StageRecord
    model_file: Path
    model: object               # torch.nn.Module, eval mode
    torch_int8: Optional[str]   # "ptsq"/"qat" when PyTorch quantized the model, else None
    calib: np.ndarray           # unlabeled target-train images, normalised N x 3 x H x W
    test_x: np.ndarray          # target-test images
    test_y: np.ndarray          # target-test labels (scoring only)
    parent_acc: Optional[float]  # the run's own target-test accuracy (display only)
    unlabeled: Optional[np.ndarray] = None  # unlabeled target-train images that choose the recommended artifact
    unlabeled_overlap: int = 0  # how many of them are calibration images too (0 when the split has enough)
    torch_weight_bits: Optional[int] = None  # 7 or 8: the weight range PyTorch quantized to (torch_int8 models)
    # a compress run: the float model it descends from (its trained run) and the same unlabeled images at that
    # model's own input size, so that every artifact's agreement with it can be read without labels
    student_run: Optional[Path] = None
    student_model: object = None
    student_unlabeled: Optional[np.ndarray] = None
    agreement_split: str = "target-train"  # or "target-holdout": set aside by the compression (--ft-holdout)

    @property
    def task(self) -> str:
        return self.record.task


def quantize_op(ops: list) -> Optional[dict]:
    """The ``quantize`` op in a compressed model's ``ops`` list (None: float)."""
    return next((op for op in ops or () if isinstance(op, dict) and op.get("op") == "quantize"), None)


def load_model(run_dir: Path, rec: StageRecord) -> tuple[object, Path, Optional[dict]]:
    """(model, its file, its ``quantize`` op or None) of a run: ``compressed`` when the record has one, else
    ``model``."""
    if "compressed" in rec.artifacts:
        from ..compress import load_compressed

        path = rec.path(run_dir, "compressed")
        model, crec = load_compressed(path)
        quant = quantize_op(crec.get("ops"))
        if quant is not None and quant.get("kind") not in QUANTIZED_BY_TORCH:
            fail(f"'{path}' is dynamically quantized by PyTorch ({quant.get('kind')}), which has no ONNX form: "
                 "compress without --quantize (ONNX Runtime makes ort-int8 / ort-int8w) or with --quantize qat/ptsq "
                 "(exported as INT8 QDQ)")
        return model.eval(), path, quant
    from ..classifier import load_classifier

    path = rec.path(run_dir, "model")
    model, _ = load_classifier(path)
    return model.eval(), path, None


def trained_ancestor(run_dir: Path, rec: StageRecord) -> Optional[tuple[Path, StageRecord]]:
    """The training run a compress run descends from through its ``model`` parents (None for a training run, or
    when a parent folder is gone)."""
    from ..record import FILENAME

    start = run_dir
    while rec.kind == "compress" and "model" in rec.parents:
        run_dir = rec.parent(run_dir, "model")
        if not (run_dir / FILENAME).is_file():
            return None
        rec = read_record(run_dir)
    return (run_dir, rec) if run_dir != start and rec.kind != "compress" else None


def normalised(images_u8, crop: int, mean, std) -> np.ndarray:
    """Cached uint8 N x H x W x 3 -> the run's test transform (CenterCrop + Normalize) as float32 NCHW."""
    import torch

    from ..datasets import build_transform

    tf = build_transform(False, crop, mean, std)
    return torch.stack([tf(img.permute(2, 0, 1)) for img in images_u8]).numpy()


def parent_accuracy(run_dir: Path, rec: StageRecord) -> Optional[float]:
    """Target-test accuracy the run reported for its model (``after`` the compression for a compress run)."""
    from ..record import results_of

    if not (run_dir / rec.results).is_file():
        return None
    res = results_of(run_dir, rec)
    res = res.get("after", {}) if rec.kind == "compress" else res
    return (res.get("target_test") or {}).get("acc")


def load_inputs(run_dir: str | Path, calib_size: int = 128, seed: int = 0, cache_dir: Optional[str] = None,
                max_images: Optional[int] = None, agreement_size: int = 0) -> DeployInputs:
    """The run's model and images. ``seed`` draws which ``calib_size`` target-train images calibrate and which
    ``agreement_size`` target-train images measure each artifact's agreement with the model (held out from
    calibration as far as the split allows; 0: none loaded)."""
    from ..datasets import load_images, read_image_list

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        fail(f"--run '{run_dir}' is not a folder")
    rec = read_record(run_dir)
    model, model_file, quant = load_model(run_dir, rec)
    ds, tf = rec.dataset, rec.transform
    splits = rec.splits_dir(run_dir)
    train = read_image_list(splits / f"{ds.target}_train.txt", ds.root)
    test = read_image_list(splits / f"{ds.target}_test.txt", ds.root)
    order = np.random.default_rng(seed).permutation(len(train))
    calib_idx = sorted(order[:calib_size])
    # unlabeled calibration set: target-train paths only, the label replaced by -1 right here
    cimg, _ = load_images(ds.root, [(train[i][0], -1) for i in calib_idx], tf.resize, cache_dir)
    timg, tlab = load_images(ds.root, test, tf.resize, cache_dir)
    n = max_images or len(tlab)
    unlabeled, overlap, student = None, 0, (None, None, None)
    held = holdout_list(splits, ds.target)
    split = "target-holdout" if agreement_size and held.is_file() else "target-train"
    if split == "target-holdout":  # images the compression set aside: never fitted, never calibrated on
        agree_items = [(p, -1) for p, _ in read_image_list(held, ds.root)][:agreement_size]
    elif agreement_size:
        start = max(0, min(calib_size, len(train) - agreement_size))  # after the calibration images if they fit
        agree_idx = sorted(order[start:start + agreement_size])
        overlap = len(set(agree_idx) & set(calib_idx))
        agree_items = [(train[i][0], -1) for i in agree_idx]
    if agreement_size:
        uimg, _ = load_images(ds.root, agree_items, tf.resize, cache_dir)
        unlabeled = normalised(uimg, tf.crop, tf.mean, tf.std)
        ancestor = trained_ancestor(run_dir, rec)
        if ancestor is not None:
            srun, srec = ancestor
            stf = srec.transform
            simg, _ = load_images(ds.root, agree_items, stf.resize, cache_dir)
            student = (srun, load_model(srun, srec)[0], normalised(simg, stf.crop, stf.mean, stf.std))
    from ..compress.quantize import op_weight_bits

    return DeployInputs(run_dir, rec, model_file, model, quant and quant["kind"],
                        normalised(cimg, tf.crop, tf.mean, tf.std), normalised(timg[:n], tf.crop, tf.mean, tf.std),
                        tlab[:n].numpy(), parent_accuracy(run_dir, rec), unlabeled, overlap,
                        quant and op_weight_bits(quant), *student, split)
