"""The distillation method ``kd``: the engine's source cross-entropy plus ``kd_weight * KD(student, teachers)``
on the unlabeled target batch, with optional feature KD, an adaptation loss on the student, class-balanced
teacher pseudo-labels, the teacher's clustering-refined labels (:mod:`.refine`), teacher labels averaged over
test-time views, their distribution aligned to the source's class frequencies (:mod:`.align`) and inter-domain
mixup.

The teachers are finished runs (``--teacher-run DIR``, read through their stage records) or LiteDA ``model.pt``
files (``--teacher-ckpt``); training them is a stage of its own (``liteda adapt -a ARCH``), which the Makefile
orders before the student.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..adaptation import Method, Step, get_method
from ..utils import fail
from .align import AlignedLabels, align_to_prior
from .losses import ClassBalancedPseudoLabelLoss, DomainMixupLoss, FeatureDistillationLoss, KnowledgeDistillationLoss
from .refine import RefinedLabels, RefinedPseudoLabelLoss, cluster_refined_labels
from .teachers import TTA_VIEWS, load_teachers


class Distill(Method):
    """Source cross-entropy (engine) + ``kd_weight * KD(student, teachers)`` on the target batch
    [+ feature KD] [+ the student's own adaptation loss] [+ class-balanced teacher pseudo-label CE]
    [+ ``cluster_weight`` * CE on the teacher's clustering-refined labels]
    [+ ``domain_mixup`` * soft CE on source/target mixes (:class:`DomainMixupLoss`)]."""

    name = "kd"
    uses_target = True
    uses_source_labels = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        paths = teacher_paths(args)
        self.teacher, self.teacher_info = load_teachers(paths, num_classes, model.mean, model.std,
                                                        args.teacher_weights)
        if args.kd_T <= 0:
            fail(f"--kd-T must be positive, got {args.kd_T}")
        self.kd = KnowledgeDistillationLoss(args.kd_T)
        self.kd_weight, self.feat_kd_weight = args.kd_weight, args.feat_kd_weight
        self.feat_kd = None
        if self.feat_kd_weight > 0:
            try:
                self.feat_kd = FeatureDistillationLoss(model.features_dim, self.teacher.features_dim)
            except ValueError as e:
                fail(f"--feat-kd-weight: {e}")
        self.pseudo = None
        if args.pseudo_threshold > 0:
            if args.pseudo_threshold > 1:
                fail(f"--pseudo-threshold must be in [0, 1], got {args.pseudo_threshold}")
            self.pseudo = ClassBalancedPseudoLabelLoss(num_classes, args.pseudo_threshold)
        if args.cluster_weight < 0:
            fail(f"--cluster-weight must be >= 0, got {args.cluster_weight}")
        self.cluster_weight = args.cluster_weight
        self.target_aug = getattr(args, "target_aug", "standard")
        self.refined: Optional[RefinedLabels] = None
        self.cluster_loss: Optional[RefinedPseudoLabelLoss] = None
        self.cache = args.teacher_cache
        self.teacher_views = getattr(args, "teacher_views", 2)
        if self.teacher_views != 2 and not self.cache:
            fail("--teacher-views: the views are taken when the teachers label the target set once; add --teacher-cache")
        self.align = getattr(args, "distribution_alignment", False)
        if self.align and not self.cache:
            fail("--distribution-alignment: the class marginal is taken over the cached labels of the whole target "
                 "set; add --teacher-cache")
        self.aligned: Optional[AlignedLabels] = None
        self.mixup_weight = getattr(args, "domain_mixup", 0.0)
        if self.mixup_weight < 0:
            fail(f"--domain-mixup must be >= 0, got {self.mixup_weight}")
        try:
            self.mixup = DomainMixupLoss(num_classes, getattr(args, "mixup_alpha", 1.0)) if self.mixup_weight else None
        except ValueError as e:
            fail(f"--mixup-alpha: {e}")
        # the student's own forward for the mixed images; a plain callable, so the model is not registered twice
        self.student: Callable = lambda x: model(x)  # noqa: E731
        self.cached: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.student_method = (student_method(args.student_method, model, num_classes, args, total_iters)
                               if args.student_method else None)
        self.frozen = self.student_method.frozen if self.student_method else ()

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--teacher-run", action="append", default=None, metavar="DIR",
                            help="repeatable: a finished run folder (e.g. the teacher arch adapted with "
                                 "`liteda adapt -m mcc -a tf_efficientnet_lite0`); its model comes from its record")
        parser.add_argument("--teacher-ckpt", action="append", default=None, metavar="PATH",
                            help="repeatable: a LiteDA model.pt to use as a teacher")
        parser.add_argument("--teacher-weights", type=float, nargs="+", default=None,
                            help="ensemble weights, one per teacher (default: equal)")
        parser.add_argument("--kd-T", type=float, default=4.0,
                            help="distillation temperature (Hinton; default %(default)s)")
        parser.add_argument("--kd-weight", type=float, default=1.0,
                            help="weight of the KD loss on the target (default %(default)s)")
        parser.add_argument("--feat-kd-weight", type=float, default=0.0,
                            help="weight of feature KD through a linear projector (0 = off)")
        parser.add_argument("--student-method", default=None,
                            help="also add this registered adaptation loss (dann, cdan, mcc, ...) on the student, "
                                 "with its default hyper-parameters")
        parser.add_argument("--teacher-cache", action="store_true",
                            help="offline distillation: the teachers label each unlabeled target image once "
                                 "(center crop and its mirror) before training, and the student matches those "
                                 "outputs under its own augmentation; one teacher pass instead of one per step "
                                 "(for a teacher with several times the student's MACs, most of the run's cost)")
        parser.add_argument("--pseudo-threshold", type=float, default=0.0,
                            help="self-training on teacher pseudo-labels above this confidence, class-balanced "
                                 "(0 = off; e.g. 0.9)")
        parser.add_argument("--target-aug", choices=("standard", "strong"), default="standard",
                            help="the student's view of the unlabeled target images: the training crops, or "
                                 "FixMatch's strong view (RandAugment + cutout) matched to the teacher's outputs "
                                 "on the clean image (with --teacher-cache: its center crop and mirror)")
        parser.add_argument("--cluster-weight", type=float, default=0.0,
                            help="weight of cross-entropy on the teacher's pseudo-labels refined by clustering its "
                                 "target features (SHOT's weighted k-means, computed once before training; 0 = off)")
        parser.add_argument("--teacher-views", type=int, choices=TTA_VIEWS, default=2,
                            help="with --teacher-cache: test-time views each target image is labelled on, their "
                                 "logits averaged (2: the image and its mirror; 10: five 7/8 crops and mirrors)")
        parser.add_argument("--distribution-alignment", action="store_true",
                            help="with --teacher-cache: shift the cached teacher labels so that their class "
                                 "marginal over the unlabeled target set moves to the labeled source's class "
                                 "frequencies (ReMixMatch/AdaMatch distribution alignment)")
        parser.add_argument("--domain-mixup", type=float, default=0.0,
                            help="weight of soft cross-entropy on pixel mixes of a source and a target image, "
                                 "labelled by the same mix of the source label and the teacher's probabilities "
                                 "(inter-domain mixup; 0 = off)")
        parser.add_argument("--mixup-alpha", type=float, default=1.0,
                            help="mixing weights ~ Beta(alpha, alpha) (default %(default)s: uniform)")

    @classmethod
    def variant_name(cls, args: argparse.Namespace, registered: str) -> str:
        """A loss on the student, refined labels or strong target views make another student: ``kd_mcc``,
        ``kd_cluster0.3``, ``kd_strongaug`` run beside ``kd`` in one runs tree, so the label-free validators can
        rank them."""
        name = super().variant_name(args, registered)
        name = f"{name}_{args.student_method}" if getattr(args, "student_method", None) else name
        name = f"{name}_cluster{args.cluster_weight:g}" if getattr(args, "cluster_weight", 0) else name
        name = f"{name}_mixup{args.domain_mixup:g}" if getattr(args, "domain_mixup", 0) else name
        name = f"{name}_views{args.teacher_views}" if getattr(args, "teacher_views", 2) != 2 else name
        name = f"{name}_distalign" if getattr(args, "distribution_alignment", False) else name
        return f"{name}_strongaug" if getattr(args, "target_aug", "standard") == "strong" else name

    def prepare(self, unlabeled_eval: Callable[[], DataLoader], labeled_counts: Optional[torch.Tensor] = None) -> None:
        if not (self.cache or self.cluster_weight > 0):
            return
        logits, feats = self.teacher.label_set(unlabeled_eval(), features=self.feat_kd is not None
                                               or self.cluster_weight > 0, views=self.teacher_views)
        if self.align:
            if labeled_counts is None:
                fail("--distribution-alignment needs the labeled data's class counts")
            self.aligned = align_to_prior(logits, self.teacher.mix(logits, 1.0).softmax(1), labeled_counts)
            logits = self.aligned.logits
            print(f"teacher labels aligned to the source class frequencies: {self.aligned.changed:.1%} changed")
        if self.cache:
            self.cached = (logits, feats if self.feat_kd is not None else None)
        if self.cluster_weight > 0:
            self.refined = cluster_refined_labels(feats, self.teacher.mix(logits, 1.0).softmax(1))
            self.cluster_loss = RefinedPseudoLabelLoss(self.refined)
            print(f"teacher labels refined by clustering: {self.refined.changed:.1%} changed, "
                  f"{self.refined.classes_kept} classes kept")

    def teacher_outputs(self, step: Step) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.cached is None:
            return self.teacher.outputs(step.x_t, features=self.feat_kd is not None)
        if step.idx_t is None:
            raise RuntimeError("--teacher-cache needs the unlabeled images' indices in the training step")
        logits, feats = self.cached
        idx = step.idx_t.cpu()
        return (logits[:, idx].to(step.x_t.device),
                feats[idx].to(step.x_t.device) if feats is not None else None)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        teacher_logits, teacher_f = self.teacher_outputs(step)
        soft = self.teacher.mix(teacher_logits, self.kd.T)
        kd = self.kd(step.logits_t, soft)
        loss = self.kd_weight * kd
        stats = {"kd_loss": float(kd.detach()),
                 "teacher_agreement": float((step.logits_t.argmax(1) == soft.argmax(1)).float().mean() * 100)}
        if self.feat_kd is not None:
            feat = self.feat_kd(step.f_t, teacher_f)
            loss = loss + self.feat_kd_weight * feat
            stats["feat_kd_loss"] = float(feat.detach())
        if self.pseudo is not None:
            pl, rate = self.pseudo(step.logits_t, self.teacher.mix(teacher_logits, 1.0).softmax(1))
            loss = loss + pl
            stats.update(pseudo_loss=float(pl.detach()), pseudo_rate=rate * 100)
        if self.cluster_loss is not None:
            cl = self.cluster_loss(step.logits_t, step.idx_t)
            loss = loss + self.cluster_weight * cl
            stats["cluster_loss"] = float(cl.detach())
        if self.mixup is not None:
            mx = self.mixup(self.student, step.x_s, step.labels_s, step.x_t, self.teacher.mix(teacher_logits, 1.0).softmax(1))
            loss = loss + self.mixup_weight * mx
            stats["mixup_loss"] = float(mx.detach())
        if self.student_method is not None:
            transfer, s = self.student_method(step)
            loss = loss + transfer
            stats.update({f"{self.student_method.name}_loss": float(transfer.detach()),
                          **{f"{self.student_method.name}_{k}": v for k, v in s.items()}})
        return loss, stats

    def get_parameters(self, base_lr: float = 1.0) -> list[dict]:
        groups = self.student_method.get_parameters(base_lr) if self.student_method else []
        if self.feat_kd is not None:
            groups.append({"params": list(self.feat_kd.parameters()), "lr": base_lr})
        return groups

    def config(self) -> dict:
        return {"teachers": self.teacher_info, "teacher_weights": self.teacher.weights.tolist(),
                "kd_T": self.kd.T, "kd_weight": self.kd_weight, "feat_kd_weight": self.feat_kd_weight,
                "pseudo_threshold": self.pseudo.threshold if self.pseudo else 0.0,
                "teacher_cache": self.cache, "cluster_weight": self.cluster_weight, "target_aug": self.target_aug,
                "teacher_views": self.teacher_views, "domain_mixup": self.mixup_weight,
                **({"mixup_alpha": self.mixup.alpha} if self.mixup else {}),
                **({"distribution_alignment": {
                    "changed": self.aligned.changed, "shift": self.aligned.shift.tolist(),
                    "mean_before": self.aligned.mean_before.tolist(), "mean_after": self.aligned.mean_after.tolist()}}
                   if self.aligned else {}),
                **({"cluster_changed": self.refined.changed, "cluster_classes_kept": self.refined.classes_kept}
                   if self.refined else {}),
                "student_method": self.student_method.name if self.student_method else None,
                "student_method_config": self.student_method.config() if self.student_method else None}

    def resume_fields(self) -> str:
        return (f"cache={int(bool(self.cache))}|T={self.kd.T}|kd={self.kd_weight}|feat={self.feat_kd_weight}|"
                f"pseudo={self.pseudo.threshold if self.pseudo else 0.0}|"
                f"student={self.student_method.name if self.student_method else None}|"
                f"tw={','.join(f'{w:.4g}' for w in self.teacher.weights.tolist())}"
                + (f"|cluster={self.cluster_weight}" if self.cluster_weight else "")
                + (f"|target_aug={self.target_aug}" if self.target_aug != "standard" else "")
                + (f"|views={self.teacher_views}" if self.teacher_views != 2 else "")
                + ("|align=source" if self.align else "")
                + (f"|mixup={self.mixup_weight},{self.mixup.alpha}" if self.mixup else ""))


def teacher_paths(args: argparse.Namespace) -> list[str]:
    """The teachers' model files: ``--teacher-run`` folders through their records, then ``--teacher-ckpt`` files."""
    from ..record import read_record

    paths = [str(read_record(d).path(d, "model")) for d in (args.teacher_run or [])]
    paths += list(args.teacher_ckpt or [])
    if not paths:
        fail("distill needs a teacher: --teacher-run DIR (a finished run) or --teacher-ckpt PATH")
    return paths


def student_method(name: str, model: nn.Module, num_classes: int, args: argparse.Namespace,
                   total_iters: int) -> Method:
    """A registered adaptation method on the student, with its own flags at their defaults."""
    cls = get_method(name)
    if cls is Distill or cls.needs_source_model or not cls.uses_source_labels:
        fail(f"--student-method {name}: only methods that train from labeled source (not source-free or "
             f"source-model methods, not kd) can be combined with kd")
    own = argparse.ArgumentParser(add_help=False)
    cls.add_args(own)
    margs = argparse.Namespace(**{**vars(own.parse_args([])), **vars(args)})
    method = cls(model, num_classes, margs, total_iters)
    method.name = name
    return method
