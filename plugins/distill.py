"""Teacher -> student knowledge distillation on the unlabeled target (Hinton et al., 2015).

A larger teacher (or an ensemble), itself trained on labeled source and adapted to the target, labels the
unlabeled target batch with soft predictions; the MobileNetV3-Small student matches them (KL at temperature T)
while the engine keeps its source cross-entropy. Options: feature distillation through a linear projector,
any registered adaptation loss on the student itself, and class-balanced self-training on confident teacher
pseudo-labels. The teachers only ever see images, never a target label.

Pieces: :class:`KnowledgeDistillationLoss`, :class:`FeatureDistillationLoss`,
:class:`ClassBalancedPseudoLabelLoss`, :class:`Renormalize`, :class:`TeacherEnsemble`, the method
:class:`Distill` (registered as ``kd``) and :func:`run_kd`, the pipeline behind ``examples/kd.py`` that trains
(or reuses) the teachers through the same runner before the student run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .adaptation import Method, Step, get_method
from .classifier import ImageClassifier, load_classifier
from .datasets import IMAGENET_MEAN, IMAGENET_STD
from .utils import UserError, fail, read_json

STANDIN_TEACHER_NOTE = ("default mobilenet_v3_large (torchvision ImageNet weights by name); offline, e.g. on the "
                        "LiteDA build machine where no MBV3-Large weights exist, use the stand-in teacher "
                        "--teacher tf_efficientnet_lite0 --teacher-pretrained "
                        "/work/shared/weights/tf_efficientnet_lite0-imagenet.pth (results are stand-in results)")


# ----------------------------------------------------------------------------- losses
class KnowledgeDistillationLoss(nn.Module):
    """``T^2 * KL(softmax(y_t / T) || softmax(y_s / T))``, averaged over the batch (Hinton et al.).

    The ``T^2`` factor keeps the gradient scale of the soft targets independent of ``T``.
    """

    def __init__(self, T: float = 4.0):
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature must be positive, got {T}")
        self.T = float(T)

    def forward(self, y_s: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        log_p_t = F.log_softmax(y_t.detach() / self.T, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * self.T ** 2


class FeatureDistillationLoss(nn.Module):
    """Squared distance between L2-normalised teacher features and projected student features.

    The linear projector bridges the dimensions (and is trained with the student); normalising makes the
    loss scale-free (``2 - 2 cos``), so teachers with larger feature norms do not dominate.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        z_s = F.normalize(self.projector(f_s), dim=1)
        z_t = F.normalize(f_t.detach(), dim=1)
        return (z_s - z_t).pow(2).sum(1).mean()


class ClassBalancedPseudoLabelLoss(nn.Module):
    """Cross-entropy on confident teacher labels, each class weighted by the inverse of its running frequency.

    Confident pseudo-labels over-represent easy classes; without re-weighting, self-training drifts toward
    them. The frequency is an exponential moving average of the confident labels' histogram (a single batch
    holds too few samples per class on Office-31).
    """

    def __init__(self, num_classes: int, threshold: float = 0.9, momentum: float = 0.9):
        super().__init__()
        self.num_classes, self.threshold, self.momentum = num_classes, threshold, momentum
        self.register_buffer("class_freq", torch.full((num_classes,), 1.0 / num_classes))

    def class_weights(self) -> torch.Tensor:
        return 1.0 / (self.num_classes * self.class_freq.clamp_min(1e-3))

    def forward(self, y_s: torch.Tensor, teacher_probs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Returns the loss and the fraction of the batch that passed the threshold."""
        confidence, pseudo = teacher_probs.max(1)
        mask = confidence >= self.threshold
        if not mask.any():
            return y_s.new_zeros(()), 0.0
        if self.training:
            hist = torch.bincount(pseudo[mask], minlength=self.num_classes).float()
            self.class_freq.mul_(self.momentum).add_(hist / hist.sum(), alpha=1 - self.momentum)
        loss = F.cross_entropy(y_s[mask], pseudo[mask], weight=self.class_weights().to(y_s.dtype))
        return loss, float(mask.float().mean())


# ----------------------------------------------------------------------------- teachers
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


class TeacherEnsemble(nn.Module):
    """Frozen teachers whose (weighted) mean probability is the soft target.

    Each teacher is a LiteDA :class:`ImageClassifier` behind a :class:`Renormalize` from the student's input
    normalisation to its own. Teachers stay in eval mode (BatchNorm statistics fixed) whatever mode the
    ensemble is put in, and never take gradients.
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
            f = teacher.extract(renorm(x))
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
    def label_set(self, loader: DataLoader, features: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Offline teacher outputs for every image of an ``(image, index)`` loader, averaged over the image and
        its mirror: logits ``(K, N, C)`` and, if asked, features ``(N, D)``, rows in index order."""
        n = len(loader.dataset)
        logits, feats = None, None
        for x, idx in tqdm(loader, desc="teacher labels", leave=False, disable=not sys.stderr.isatty()):
            z, f = self.outputs(x, features)
            z_m, f_m = self.outputs(torch.flip(x, dims=[3]), features)
            if logits is None:
                logits = z.new_zeros(z.shape[0], n, z.shape[2])
                feats = z.new_zeros(n, f.shape[1]) if features else None
            logits[:, idx] = (z + z_m) / 2
            if features:
                feats[idx] = (f + f_m) / 2
        return logits, feats


def load_teacher(path: str | os.PathLike, flag: str = "--teacher-ckpt") -> tuple[ImageClassifier, dict]:
    """A LiteDA ``model.pt`` and a summary for the run JSON (arch, and the teacher's own target-test accuracy
    from its run folder's results.json when there is one)."""
    if not os.path.isfile(path):
        fail(f"{flag} '{path}' does not exist")
    model, rec = load_classifier(path)
    if rec.get("mean") and rec.get("std"):  # the normalisation the teacher was trained with
        model.mean, model.std = tuple(rec["mean"]), tuple(rec["std"])
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
    results = Path(path).parent / "results.json"
    if not results.is_file():
        return {"target_test_acc": None, "note": "no results.json next to the checkpoint"}
    r = read_json(results)
    return {"target_test_acc": r.get("target_test", {}).get("acc"), "method": r.get("method"),
            "dataset": r.get("dataset"), "task": r.get("task"), "seed": r.get("seed"), "protocol": r.get("protocol"),
            "weights": r.get("weights"), "results": str(results)}


# ----------------------------------------------------------------------------- the method
class Distill(Method):
    """Source cross-entropy (engine) + ``kd_weight * KD(student, teachers)`` on the target batch
    [+ feature KD] [+ the student's own adaptation loss] [+ class-balanced teacher pseudo-label CE]."""

    name = "kd"
    uses_target = True
    uses_source_labels = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        if not args.teacher_ckpt:
            fail("kd needs --teacher-ckpt PATH (examples/kd.py trains the teachers named by --teacher first)")
        self.teacher, self.teacher_info = load_teachers(args.teacher_ckpt, num_classes, model.mean, model.std,
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
        self.cache = args.teacher_cache
        self.cached: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.student_method = (student_method(args.student_method, model, num_classes, args, total_iters)
                               if args.student_method else None)
        self.frozen = self.student_method.frozen if self.student_method else ()

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--teacher", action="append", default=None, metavar="ARCH",
                            help=f"teacher arch, repeatable for an ensemble; {STANDIN_TEACHER_NOTE}")
        parser.add_argument("--teacher-ckpt", action="append", default=None, metavar="PATH",
                            help="repeatable: model.pt of an already trained/adapted LiteDA teacher (skips training)")
        parser.add_argument("--teacher-pretrained", action="append", default=None, metavar="PATH",
                            help="repeatable, one per --teacher: local ImageNet state_dict for that teacher")
        parser.add_argument("--teacher-method", default="mcc",
                            help="how a teacher trained here is adapted to the target (default %(default)s; "
                                 "source_only: not adapted); run folder runs/<dataset>/<task>/<method>-<arch>/seed<k>")
        parser.add_argument("--teacher-epochs", type=int, default=None,
                            help="epochs for a teacher trained here (default: the student's --epochs); a teacher "
                                 "with several times the student's MACs may get fewer on a CPU budget")
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

    def prepare(self, unlabeled_eval: Callable[[], DataLoader]) -> None:
        if self.cache:
            self.cached = self.teacher.label_set(unlabeled_eval(), features=self.feat_kd is not None)

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
                "teacher_cache": self.cache,
                "student_method": self.student_method.name if self.student_method else None,
                "student_method_config": self.student_method.config() if self.student_method else None}

    def resume_fields(self) -> str:
        return (f"cache={int(bool(self.cache))}|T={self.kd.T}|kd={self.kd_weight}|feat={self.feat_kd_weight}|"
                f"pseudo={self.pseudo.threshold if self.pseudo else 0.0}|"
                f"student={self.student_method.name if self.student_method else None}|"
                f"tw={','.join(f'{w:.4g}' for w in self.teacher.weights.tolist())}")


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


# ----------------------------------------------------------------------------- the pipeline (examples/kd.py)
# Flags that describe the student's model or run folder: a teacher run gets its own.
_STUDENT_ONLY = {"-a": 1, "--arch": 1, "--pretrained": 1, "--log": 1, "--source-ckpt": 1, "--no-prelogits": 0,
                 "--freeze-stages": 1, "--phase": 1, "--trade-off": 1}


def strip_options(argv: Sequence[str], options: dict[str, int]) -> list[str]:
    """``argv`` without the given options (``name -> number of values``), in ``--x v`` or ``--x=v`` form."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
        elif a.split("=", 1)[0] in options:
            skip = 0 if "=" in a else options[a]
        else:
            out.append(a)
    return out


def teacher_argv(common: Sequence[str], arch: str, pretrained: Optional[str],
                 epochs: Optional[int] = None) -> list[str]:
    argv = strip_options(common, _STUDENT_ONLY) + ["-a", arch] + (["--epochs", str(epochs)] if epochs else [])
    if pretrained:  # otherwise library weights by name, or --scratch when the command line says so
        argv = strip_options(argv, {"--scratch": 0}) + ["--pretrained", pretrained]
    return argv


def ensure_run(method: str, regime: str, argv: list[str]) -> Path:
    """The run's model.pt, training it through the runner unless its run folder already holds one."""
    from .runner import build_parser, main, run_dir_for

    args = build_parser(get_method(method), regime).parse_args(argv)
    model_pt = run_dir_for(args, "oracle" if regime == "oracle" else method) / "model.pt"
    if model_pt.is_file():
        print(f"reusing {model_pt}")
    else:
        main(method, regime, argv)
    return model_pt


def train_teacher(arch: str, pretrained: Optional[str], method: str, common: Sequence[str],
                  epochs: Optional[int] = None) -> Path:
    """Source-only on labeled source, then (unless ``method`` is source_only) adapted with ``method``.

    The source-only run is skipped when the adaptation method does not start from it (e.g. DANN, CDAN train
    from ImageNet weights with source cross-entropy, as in tllib), to save CPU time."""
    cls = get_method(method)  # unknown method: one-line error before any training
    argv = teacher_argv(common, arch, pretrained, epochs)
    try:
        path = None
        if method == "source_only" or cls.needs_source_model:
            path = ensure_run("source_only", "source_only", argv)
        if method != "source_only":
            path = ensure_run(method, "adapt", argv)
        return path
    except UserError as e:
        fail(f"teacher {arch} ({method}): {e}")


def resolve_teachers(kd: argparse.Namespace, common: Sequence[str]) -> list[str]:
    """Checkpoint paths: ``--teacher-ckpt`` as given, else the teachers named by ``--teacher`` trained here."""
    if kd.teacher_ckpt:
        for p in kd.teacher_ckpt:
            if not os.path.isfile(p):
                fail(f"--teacher-ckpt '{p}' does not exist")
        return list(kd.teacher_ckpt)
    archs = kd.teacher or ["mobilenet_v3_large"]
    pretrained = kd.teacher_pretrained or [None] * len(archs)
    if len(pretrained) != len(archs):
        fail(f"--teacher-pretrained given {len(pretrained)} times for {len(archs)} --teacher; give one per teacher")
    for p in pretrained:
        if p and not os.path.isfile(p):
            fail(f"--teacher-pretrained '{p}' does not exist")
    if kd.teacher_epochs is not None and kd.teacher_epochs < 1:
        fail(f"--teacher-epochs must be at least 1, got {kd.teacher_epochs}")
    return [str(train_teacher(a, p, kd.teacher_method, common, kd.teacher_epochs)) for a, p in zip(archs, pretrained)]


def run_kd(argv: Optional[list[str]] = None) -> dict:
    """``examples/kd.py``: ensure the teachers exist (trained through the runner if needed), then the student."""
    from .runner import main
    from .utils import OneLineParser

    argv = list(sys.argv[1:] if argv is None else argv)
    kd_parser = OneLineParser(prog="kd.py", add_help=False, allow_abbrev=False)
    Distill.add_args(kd_parser)
    kd, common = kd_parser.parse_known_args(argv)
    n_teachers = len(kd.teacher_ckpt or kd.teacher or [None])
    if kd.teacher_weights and len(kd.teacher_weights) != n_teachers:
        fail(f"--teacher-weights: {len(kd.teacher_weights)} weights for {n_teachers} teacher(s)")
    wants_training = not ({"-h", "--help"} & set(argv)) and _phase(argv) == "train"
    if wants_training and not kd.teacher_ckpt:
        argv += [a for p in resolve_teachers(kd, common) for a in ("--teacher-ckpt", p)]
    elif wants_training:
        resolve_teachers(kd, common)  # checks the files: one-line error before any data loading
    return main("kd", "adapt", argv)


def _phase(argv: Sequence[str]) -> str:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--phase", default="train")
    return p.parse_known_args(list(argv))[0].phase
