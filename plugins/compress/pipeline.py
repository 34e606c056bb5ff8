"""The pipeline context every technique works through: the student being compressed, its data, its recovery
fine-tune and what each stage logs.

Data come from the parent run's own image lists (its record's ``splits``), so the images are those the model
was trained and tested on, with the transform its record names. Calibration and recovery fine-tuning see
labeled source-train and unlabeled target-train only; target-test labels are read once per reported
evaluation, never for a decision.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..datasets import TensorImageDataset, build_transform, load_images, read_image_list
from ..engine import iterations_per_epoch
from ..metrics import predict
from ..record import StageRecord
from ..utils import fail
from .fidelity import Fidelity, view_transform
from .finetune import FinetuneConfig, finetune, recalibrate_bn
from .measure import count_params_any, evaluate
from .resolution import Rescaled


# ----------------------------------------------------------------------------- data
@dataclass
class CompressData:
    labeled: DataLoader  # source-train, labeled
    unlabeled: DataLoader  # target-train, label -1
    calibration: DataLoader  # target-train, test transform, label -1
    strong: DataLoader  # target-train, strong random views (fidelity.py), label -1, at the loaders' crop
    target_test: DataLoader
    num_classes: int
    n_source: int
    n_target: int


def build_data(rec: StageRecord, run_dir: Path, num_classes: int, batch_size: int, cache_dir: str,
               progress: bool = True, resize: Optional[int] = None, crop: Optional[int] = None) -> CompressData:
    """Loaders over the images of the run ``rec`` describes, at its transform or at ``resize``/``crop`` (a
    student of smaller input size)."""
    ds, tf = rec.dataset, rec.transform
    lists = {}
    for role, letter in (("s", ds.source), ("t", ds.target)):
        for part in ("train", "test"):
            lists[role + part] = read_image_list(rec.splits_dir(run_dir) / f"{letter}_{part}.txt", ds.root)
    labels_max = max(y for items in lists.values() for _, y in items)
    if labels_max >= num_classes:
        fail(f"the image lists of '{run_dir}' have label {labels_max}, but its model has {num_classes} classes")
    crop, size = crop or tf.crop, resize or tf.resize
    load = lambda items: load_images(ds.root, items, size, cache_dir, progress=progress)  # noqa: E731
    norm = (tf.mean, tf.std) if tf.mean and tf.std else ()
    train_tf, test_tf = build_transform(True, crop, *norm), build_transform(False, crop, *norm)
    s_tr, t_tr, t_te = load(lists["strain"]), load(lists["ttrain"]), load(lists["ttest"])
    unl = torch.full_like(t_tr[1], -1)  # target-train labels are dropped here
    mk = lambda d, train: DataLoader(d, batch_size=batch_size, shuffle=train,  # noqa: E731
                                     drop_last=train and len(d) >= batch_size)
    return CompressData(
        labeled=mk(TensorImageDataset(*s_tr, train_tf, num_classes), True),
        unlabeled=mk(TensorImageDataset(t_tr[0], unl, train_tf, num_classes), True),
        calibration=mk(TensorImageDataset(t_tr[0], unl, test_tf, num_classes), False),
        strong=mk(TensorImageDataset(t_tr[0], unl, view_transform("strong", crop, *norm), num_classes), False),
        target_test=mk(TensorImageDataset(*t_te, test_tf, num_classes), False),
        num_classes=num_classes, n_source=len(s_tr[1]), n_target=len(t_tr[1]))


# ----------------------------------------------------------------------------- context
class Pipeline:
    """The ordered compression of ``student`` (a copy of ``teacher``, the input model). Techniques change
    ``student``, append their op to ``ops`` and log their stage; the context recovers and measures."""

    def __init__(self, args: argparse.Namespace, teacher: nn.Module, data: CompressData, out: Path, input_size: int,
                 resize: int, data_at: Callable[[int, int], CompressData], ft_teacher: Optional[nn.Module] = None):
        self.args, self.teacher, self.data, self.out, self.input_size = args, teacher, data, out, input_size
        # the training loaders' crop (the teacher's view) and how to build loaders for another student size
        self.view_size, self.resize, self.data_at = input_size, resize, data_at
        # label-free fidelity: the uncompressed model's top-1 on unlabeled target-train (calibration order)
        self.reference = predict(teacher.eval(), data.calibration)[0].argmax(1)
        self.fidelity = Fidelity(teacher, data.strong)  # and on strong views of the same images
        self.ft_teacher = ft_teacher if ft_teacher is not None else teacher  # what the fine-tunes distil from
        self.student = copy.deepcopy(teacher)
        self.ops: list[dict] = []
        self.report: list[dict] = []
        self.float_model: Optional[nn.Module] = None  # the structure before quantization, once quantized
        iters = args.ft_iters or iterations_per_epoch(data.n_source, data.n_target, args.batch_size)
        self.ft = FinetuneConfig(epochs=args.ft_epochs, iters_per_epoch=iters, lr=args.ft_lr,
                                 kd_temperature=args.kd_temperature, trade_off=args.trade_off, amp=args.amp,
                                 progress=not args.no_progress)

    # ------------------------------------------------------------------ input size
    def use_input_size(self, size: int, resize: int) -> None:
        """The student's input becomes ``size`` px (test-time ``resize``): evaluation and calibration loaders at
        that size; training loaders keep the teacher's crops, which the student sees downscaled."""
        small = self.data_at(resize, size)
        self.data = dataclasses.replace(self.data, calibration=small.calibration, target_test=small.target_test)
        self.input_size, self.resize = size, resize

    # ------------------------------------------------------------------ recovery
    def recover(self, tag: str, model: Optional[nn.Module] = None, lr: Optional[float] = None,
                epochs: Optional[int] = None) -> list[dict]:
        """Self-distillation fine-tune of the student (or of ``model``, e.g. QAT's fake-quant graph, at its own
        ``lr`` and ``epochs``), then, for the float student, re-estimated BatchNorm statistics."""
        small = self.input_size if self.input_size != self.view_size else None
        cfg = dataclasses.replace(self.ft, **{k: v for k, v in (("lr", lr), ("epochs", epochs)) if v is not None})
        rows = finetune(model if model is not None else self.student, self.ft_teacher, self.data.labeled,
                        self.data.unlabeled, cfg, self.out / "finetune" / tag, input_size=small)
        rows = [{k: r[k] for k in ("epoch", "loss", "kd_loss", "teacher_agree", "seconds", "images_per_s") if k in r}
                for r in rows]
        if model is None:  # float student (QAT's fused fake-quant graph keeps its own observers)
            net = Rescaled(self.student, small) if small else self.student
            n = recalibrate_bn(net, [self.data.labeled, self.data.unlabeled], self.args.bn_batches)
            rows.append({"bn_recalibration_images": n})
        return rows

    def recover_float(self, tag: str, before: dict) -> tuple[list[dict], Optional[dict]]:
        """A float stage's recovery fine-tune (BatchNorm re-estimation included). With --ft-guard it is undone
        unless it lowers the KL to the uncompressed model on strong target-train views (fidelity.py): a fine-tune
        can undo a data-aware initialisation such as whitened SVD while the plain agreement stays at 100 %.
        Returns the fine-tune's rows and, when guarded, the measurements of the model it leaves (taken already)."""
        if not self.args.ft_guard:
            return self.recover(tag), None
        saved = copy.deepcopy(self.student.state_dict())
        rows = self.recover(tag)
        after = self.measure()
        kept = after["kl_strong"] <= before["kl_strong"]
        if not kept:
            self.student.load_state_dict(saved)
        print(f"[{tag}] fine-tune {'kept' if kept else 'undone'}: KL to the uncompressed model on strong target-train "
              f"views {before['kl_strong']:.4f} -> {after['kl_strong']:.4f}", flush=True)
        guard = {"criterion": "kl_strong", "kept": kept,
                 **{f"{k}_{when}": d[k] for when, d in (("before", before), ("after", after))
                    for k in ("kl_strong", "agree_strong", "agree")},
                 # both sides' target-test accuracy: reported, never read by the decision
                 "target_test_acc_before": before["acc"], "target_test_acc_after": after["acc"]}
        return rows + [{"ft_guard": guard}], (after if kept else before)

    def recovers(self) -> bool:
        """False when a float stage has no recovery to run (``--ft-epochs 0 --bn-batches 0``): the stage's model
        is then final as the technique left it, e.g. a whitened SVD that a fine-tune only moves away from."""
        return self.args.ft_epochs > 0 or self.args.bn_batches > 0

    def finish_float_stage(self, op: dict, **details) -> None:
        """Record a float technique's ``op``, then measure, recover (guarded) and log its stage."""
        self.ops.append(op)
        before = self.measure()
        if not self.recovers():
            self.log({**op, **details}, None, [], before)
            return
        history, now = self.recover_float(op["op"], before)
        self.log({**op, **details}, before, history, now)

    # ------------------------------------------------------------------ measurements
    def agreement(self) -> float:
        """% of unlabeled target-train images on which the student's top-1 is the uncompressed model's: what a
        user can check without labels (e.g. to keep or drop a stage's fine-tune)."""
        return float((predict(self.student, self.data.calibration)[0].argmax(1) == self.reference).float().mean() * 100)

    def strong_fidelity(self) -> dict:
        """KL and top-1 agreement with the uncompressed model on strong views of unlabeled target-train (a smaller
        student sees the views downscaled to its input, as in its fine-tunes)."""
        small = self.input_size if self.input_size != self.view_size else None
        return self.fidelity(Rescaled(self.student, small) if small else self.student)

    def evaluate(self, model: Optional[nn.Module] = None) -> dict:
        return evaluate(model if model is not None else self.student, self.data.target_test, self.data.num_classes)

    def measure(self) -> dict:
        return {**self.evaluate(), "agree": self.agreement(), **self.strong_fidelity()}

    def log(self, op: dict, before_ft: Optional[dict], history: list[dict], now: Optional[dict] = None) -> None:
        """Record a stage; ``now``: the student's :meth:`measure` when the caller has it already."""
        now = now if now is not None else self.measure()
        entry = {**op, "params": count_params_any(self.student), "finetune": history}
        if before_ft is not None:
            entry["target_test_acc_before_ft"] = before_ft["acc"]
            entry["target_train_agree_before_ft"] = before_ft["agree"]
            entry["target_train_kl_strong_before_ft"] = before_ft["kl_strong"]
        entry["target_train_agree"] = now["agree"]
        entry["target_train_agree_strong"], entry["target_train_kl_strong"] = now["agree_strong"], now["kl_strong"]
        entry["target_test_acc"] = now["acc"]  # reported, never used to choose
        self.report.append(entry)
        print(f"[{op['op']}] params {entry['params']:,} | target-test acc {entry['target_test_acc']:.2f}", flush=True)


def apply_techniques(ctx: Pipeline, args: argparse.Namespace) -> None:
    """Every active technique, in registry order."""
    from .registry import TECHNIQUES

    for _, technique in TECHNIQUES.items():
        if technique.active(args):
            technique.apply(ctx, args)
