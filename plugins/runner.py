"""The training stages (``liteda train|oracle|adapt|distill``): tllib's flags -> data, model, method -> train /
test / analysis, all through one engine.

Run folder: ``--log`` or ``runs/<dataset>/<S>2<T>/<method>[-<arch>]/seed<k>/`` holding ``checkpoint.pt``
(resumable), ``model.pt`` (the trained classifier), ``history.csv``, ``curves.png``, ``results.json``, the image
lists in ``splits/`` and, written last, the stage record ``record.json`` that later stages read.

Under ``torchrun --nproc_per_node N`` every process trains its share of each global batch (``-b``) and rank 0
alone writes and evaluates (:mod:`liteda.distributed`, docs/distributed.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from . import distributed
from .adaptation import Method, get_method
from .classifier import ImageClassifier, build_classifier, load_classifier, model_record
from .lock import lock_run, unlock_run
from .datasets import (DATASETS, DomainSplit, TensorImageDataset, TwoViews, UnlabeledImageDataset, build_transform,
                       holdout_split, load_images, prepare_domains)
from .engine import SELECT_RULES, Trainer, TrainConfig, config_dict, iterations_per_epoch
from .metrics import (classification_metrics, count_flops, count_params, file_size_mb, info_max_score, predict,
                      prediction_collapse)
from .plots import plot_confusion, plot_history
from .record import DatasetRef, StageRecord, Transform, read_record, relative, write_record
from .settings import apply_threads, cache_dir
from .utils import (OneLineParser, atomic_torch_save, fail, machine_info, read_json, resolve_device, run_cli,
                    seed_everything, write_json)

REGIMES = ("source_only", "oracle", "adapt")


def build_parser(method_cls: type[Method], regime: str) -> argparse.ArgumentParser:
    command = ("liteda distill" if method_cls.name == "kd" else f"liteda adapt -m {method_cls.name}") \
        if regime == "adapt" else {"source_only": "liteda train", "oracle": "liteda oracle"}[regime]
    p = OneLineParser(prog=command,
                      description=f"LiteDA {regime} ({method_cls.name}) in tllib's command-line shape")
    p.add_argument("root", help="dataset root (for -d Digits: where the embedded dataset is generated)")
    p.add_argument("-d", "--data", default="OfficeCaltech", help=f"dataset: {', '.join(DATASETS)}")
    p.add_argument("-s", "--source", required=True, help="source domain (letter or folder name)")
    p.add_argument("-t", "--target", required=True, help="target domain (letter or folder name)")
    p.add_argument("-a", "--arch", default="mobilenet_v3_small", help="backbone: torchvision MBV3 or any timm name")
    p.add_argument("--pretrained", default=None, help="local state_dict for the backbone (offline machines)")
    p.add_argument("--scratch", action="store_true", help="random init instead of ImageNet weights")
    p.add_argument("--no-prelogits", action="store_true", help="MBV3: drop the 1024-d pre-logits layer")
    p.add_argument("--bottleneck-dim", type=int, default=256)
    p.add_argument("--freeze-stages", type=int, default=0,
                   help="MBV3: keep the first K feature blocks fixed (faster CPU training; 0 = tllib's full fine-tune)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("-i", "--iters-per-epoch", type=int, default=None,
                   help="default: ceil(max(|S-train|, |T-train|) / batch) (PROTOCOL.md)")
    p.add_argument("-b", "--batch-size", type=int, default=32,
                   help="images per domain a step; under torchrun the global batch, split over the processes")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-gamma", type=float, default=0.001)
    p.add_argument("--lr-decay", type=float, default=0.75)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="wd", type=float, default=1e-3)
    p.add_argument("--trade-off", type=float, default=1.0, help="weight of the transfer loss")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="label smoothing of the source cross-entropy (SDAT's smoother source loss; 0: none); a "
                        "run of its own: <name>_ls<EPS>")
    p.add_argument("--source-aug", choices=("standard", "strong"), default="standard",
                   help="the view of the labeled images: the training crops, or FixMatch's strong view on top "
                        "(RandAugment + cutout) for features that hold under photometric shift; a run of its own: "
                        "<name>_srcstrong")
    p.add_argument("--self-training", type=float, default=0.0, metavar="W",
                   help="add FixMatch's self-training term at weight W: the confident predictions on each unlabeled "
                        "image's training crop label a strong view of it (RandAugment + cutout) (0: none); a run "
                        "of its own: <name>_st<W>")
    p.add_argument("--self-training-threshold", type=float, default=0.95, metavar="TAU",
                   help="the probability a prediction needs to become a pseudo-label (FixMatch: 0.95); other "
                        "values name the run <name>_st<W>t<TAU>")
    p.add_argument("--select", choices=SELECT_RULES, default="last",
                   help="the weights a run keeps: the last epoch's, or the epoch's whose predictions on the "
                        "unlabeled target-train images have the highest IM score (label-free checkpoint "
                        "selection); a run of its own: <name>_imsel")
    p.add_argument("--select-holdout", type=float, default=0.0, metavar="FRAC",
                   help="with --select im: set this random share of the unlabeled target-train images aside, train "
                        "on the rest and score IM on it (0: score on the training images); a run of its own: "
                        "<name>_imsel_ho<FRAC>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--workers", type=int, default=0, help="DataLoader workers (0: decode cache makes "
                   "loading cheap, and 2 CPU cores are better spent on the model)")
    p.add_argument("--resize-size", type=int, default=256, help="images are cached at this square size")
    p.add_argument("--crop-size", type=int, default=224, help="train/test crop (the model's input size)")
    p.add_argument("--scale", type=float, nargs=2, default=(0.08, 1.0), help="RandomResizedCrop scale range")
    p.add_argument("--no-hflip", action="store_true", help="no random horizontal flip (digits, text)")
    p.add_argument("--bn-momentum", type=float, default=None,
                   help="BatchNorm momentum (default: 0.1 with --scratch, the architecture's otherwise)")
    p.add_argument("--protocol", choices=("heldout", "transductive"), default="heldout")
    p.add_argument("--test-ratio", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--cache-dir", default=cache_dir(), help="decoded-image cache (LITEDA_CACHE)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                   help="mixed precision training: bf16 autocast (CPU or GPU), fp16 autocast + GradScaler (GPU only)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when a GPU is visible, as "
                   "tllib's examples do)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="channels_last is the default: faster MBV3 training on CPU (benchmarks/)")
    p.add_argument("--log", default=None, help="run folder (default runs/<dataset>/<task>/<method>/seed<k>)")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--phase", choices=("train", "test", "analysis"), default="train")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--source-ckpt", default=None, help="source-only model.pt (methods that start from one)")
    g = p.add_argument_group(f"{method_cls.name} options")
    method_cls.add_args(g)
    return p


# ----------------------------------------------------------------------------- paths
def task_name(args) -> str:
    spec = DATASETS.get(args.data)
    letter = (lambda d: next((k for k, v in spec.domains.items() if d in (k, v)), d)) if spec else (lambda d: d)
    return f"{letter(args.source)}2{letter(args.target)}"


# Flags that make a training run a variant of its method: (flag, is it set, folder suffix, row-label suffix), in
# the order the suffixes are appended. run_name and stage_label both read this one table.
RUN_VARIANTS = (
    ("label_smoothing", lambda a: bool(a.label_smoothing),
     lambda a: f"_ls{a.label_smoothing:g}", lambda a: f", label smoothing {a.label_smoothing:g}"),
    ("source_aug", lambda a: a.source_aug == "strong", lambda a: "_srcstrong", lambda a: ", strong source views"),
    ("self_training", lambda a: bool(a.self_training),
     lambda a: f"_st{a.self_training:g}" + (f"t{a.self_training_threshold:g}" if a.self_training_threshold != 0.95
                                           else ""),
     lambda a: f", self-training {a.self_training:g}"),
    ("select", lambda a: a.select == "im", lambda a: "_imsel", lambda a: ", IM-selected epoch"),
    ("select_holdout", lambda a: bool(a.select_holdout),
     lambda a: f"_ho{a.select_holdout:g}", lambda a: f" ({a.select_holdout:g} of target-train held out)"),
)


def _variant_suffixes(args, which: int) -> str:
    """The suffixes of the variant flags ``args`` sets (``which``: 2 the folder's, 3 the row label's); a parser
    without a flag (an older record's args) counts as not setting it."""
    return "".join(v[which](args) for v in RUN_VARIANTS if hasattr(args, v[0]) and v[1](args))


def run_name(args, method_name: str) -> str:
    """The run folder's name: the method (or its variant, or ``oracle``), ``_ls<EPS>`` with label smoothing,
    ``_srcstrong`` with strong views of the labeled images, ``_st<W>`` with self-training, ``_imsel`` with
    IM-selected weights (``_ho<FRAC>``: scored on a held-out share), then the arch when it is not the student's."""
    name = method_name + _variant_suffixes(args, 2)
    return name if args.arch == "mobilenet_v3_small" else f"{name}-{args.arch}"


def run_dir_for(args, method_name: str) -> Path:
    if args.log:
        return Path(args.log)
    return Path(args.runs_root) / args.data / task_name(args) / run_name(args, method_name) / f"seed{args.seed}"


def weights_desc(args) -> str:
    if args.scratch:
        return "scratch"
    return str(args.pretrained) if args.pretrained else f"{args.arch}: library ImageNet weights by name"


# ----------------------------------------------------------------------------- data
class Data:
    """The run's loaders. Unlabeled target data carries no label (-1; items are (image, index)), so no code
    path can read a target label."""

    def __init__(self, args, splits: dict[str, DomainSplit], mean, std, regime: str):
        src, tgt = splits[args.source], splits[args.target]
        self.classes, self.num_classes = src.classes, len(src.classes)
        self.source_letter, self.target_letter = src.letter, tgt.letter
        load = lambda items: load_images(args.root, items, args.resize_size, args.cache_dir,  # noqa: E731
                                         progress=not args.no_progress)
        train_tf = build_transform(True, args.crop_size, mean, std, args.scale, not args.no_hflip)
        # a method may train on a strong view of the unlabeled images (kd --target-aug strong)
        strong_tf = build_transform(True, args.crop_size, mean, std, args.scale, not args.no_hflip, strong=True)
        target_tf = strong_tf if getattr(args, "target_aug", "standard") == "strong" else train_tf
        target_tf = TwoViews(target_tf, strong_tf) if getattr(args, "self_training", 0.0) else target_tf
        test_tf = build_transform(False, args.crop_size, mean, std)
        nc = self.num_classes
        s_tr, t_tr, s_te, t_te = (load(src.train), load(tgt.train), load(src.test), load(tgt.test))
        unl_items, held_items = tgt.all if args.protocol == "transductive" else tgt.train, []
        # --select-holdout: the IM score that selects the epoch is read on unlabeled images the run never trains on
        # (scored on its own training images it keeps rising as the model fits them, and peaks late)
        held = getattr(args, "select_holdout", 0.0)
        if held:
            unl_items, held_items = holdout_split(unl_items, held, args.seed)
        t_unl = t_tr if unl_items is tgt.train else load(unl_items)  # the usual case reuses the decoded train images
        t_held = load(held_items) if held else None
        self.n_select_holdout = len(held_items)
        labeled = t_tr if regime == "oracle" else s_tr
        self.n_source, self.n_target = len(s_tr[1]), len(t_tr[1])
        self.labeled_counts = torch.bincount(labeled[1], minlength=nc)  # class frequencies (distribution alignment)
        bs = args.batch_size
        def mk(ds, train: bool, stream: int = 0) -> DataLoader:
            # training loaders draw from their own seeded streams, which a checkpoint saves (exact resume); under
            # torchrun each process draws its share of every global batch
            sampler, batch, drop_last = (distributed.training_sampler(len(ds), args.seed * 1000 + stream, bs)
                                         if train else (None, bs, False))
            # the generator seeds loader workers: each process its own, or they would draw the same augmentations
            return DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=drop_last,
                              num_workers=args.workers, persistent_workers=args.workers > 0,
                              generator=torch.Generator().manual_seed(args.seed * 1000 + 100 + stream
                                                                      + 10_000 * distributed.rank()))
        labeled_tf = strong_tf if getattr(args, "source_aug", "standard") == "strong" else train_tf
        self.labeled = mk(TensorImageDataset(*labeled, labeled_tf, nc), True)
        self.unlabeled = mk(UnlabeledImageDataset(t_unl[0], target_tf, nc), True, 1)
        # the same images in the same order with the test transform (Method.prepare: e.g. cached teacher outputs)
        self.unlabeled_eval = lambda: mk(UnlabeledImageDataset(t_unl[0], test_tf, nc), False)  # noqa: E731
        # what --select im scores each epoch: the held-out share, or the training images themselves
        self.select_eval = ((lambda: mk(UnlabeledImageDataset(t_held[0], test_tf, nc), False)) if held  # noqa: E731
                            else self.unlabeled_eval)
        self.evals = {"source_test": mk(TensorImageDataset(*s_te, test_tf, nc), False),
                      "target_test": mk(TensorImageDataset(*t_te, test_tf, nc), False)}
        self._t_all = lambda: mk(TensorImageDataset(*load(tgt.all), test_tf, nc), False)  # noqa: E731
        self.target_train_eval = lambda: mk(TensorImageDataset(*t_tr, test_tf, nc), False)  # noqa: E731
        self.source_train_eval = lambda: mk(TensorImageDataset(*s_tr, test_tf, nc), False)  # noqa: E731

    def target_all(self) -> DataLoader:
        return self._t_all()


def prepare_splits(args, run_dir: Path) -> dict[str, DomainSplit]:
    """The dataset checked, listed and split (a bad root, domain or class layout fails here, before anything is
    built, downloaded or created for the run). Every run of a runs tree shares one split per dataset."""
    split_dir = Path(args.runs_root) / args.data / "splits" if not args.log else run_dir / "splits"
    return prepare_domains(args.data, args.root, [args.source, args.target], split_dir,
                           args.test_ratio, args.split_seed)


def build_data(args, regime: str, run_dir: Path, mean, std) -> Data:
    """The run's loaders over its dataset's split (as the training stage built them)."""
    return Data(args, prepare_splits(args, run_dir), mean, std, regime)


def keep_splits(args, run_dir: Path) -> None:
    """The run folder holds a copy of the image lists it used (later stages read only the run folder)."""
    split_dir = Path(args.runs_root) / args.data / "splits" if not args.log else run_dir / "splits"
    if split_dir.resolve() != (run_dir / "splits").resolve():
        (run_dir / "splits").mkdir(parents=True, exist_ok=True)
        for f in split_dir.glob("*"):
            if f.is_file():
                shutil.copyfile(f, run_dir / "splits" / f.name)


# ----------------------------------------------------------------------------- model
def build_model(args, num_classes: int) -> ImageClassifier:
    pretrained: bool | str = False if args.scratch else (args.pretrained or True)
    kw = {"prelogits": False} if args.no_prelogits else {}
    model = build_classifier(args.arch, num_classes, pretrained, args.bottleneck_dim, **kw)
    # torchvision's MBV3 uses BN momentum 0.01, made for 600-epoch ImageNet runs: trained from scratch for a few
    # hundred steps its running statistics never catch up and eval collapses to one class. 0.1 (PyTorch's
    # default) fixes that; fine-tuning keeps the architecture's value.
    momentum = args.bn_momentum if args.bn_momentum is not None else (0.1 if args.scratch else None)
    if momentum is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = momentum
    if args.freeze_stages:
        if not hasattr(model.backbone, "freeze_stages"):
            fail(f"--freeze-stages is supported for MobileNetV3 and EfficientNet-style timm backbones, not '{args.arch}'")
        try:
            model.backbone.freeze_stages(args.freeze_stages)
        except ValueError as e:
            fail(f"--freeze-stages: {e}")
    return model


def _source_model_path(args) -> Path:
    if args.source_ckpt:
        return Path(args.source_ckpt)
    run = Path(args.runs_root) / args.data / task_name(args) / run_name(args, "source_only") / f"seed{args.seed}"
    if not (run / "record.json").is_file():
        fail(f"this method starts from a source-only model: '{run}' is not a finished run (run `liteda train` for "
             f"this task and seed first, or pass --source-ckpt)")
    return read_record(run).path(run, "model")


def init_from_source(model: ImageClassifier, args) -> str:
    path = _source_model_path(args)
    if not path.is_file():
        fail(f"--source-ckpt '{path}' does not exist")
    src, _ = load_classifier(path)
    model.load_state_dict(src.state_dict())
    return str(path)


# ----------------------------------------------------------------------------- phases
def evaluate_all(model, data: Data, run_dir: Path, device: str = "cpu") -> dict:
    out = {}
    for name, loader in (("target_test", data.evals["target_test"]), ("target_all", data.target_all()),
                         ("source_test", data.evals["source_test"])):
        logits, labels = predict(model, loader, device)
        out[name] = classification_metrics(logits, labels, data.num_classes)
        if name == "target_test":
            out["validator"] = info_max_score(logits)
        if name == "target_all":  # every target image, predictions only: no label is read for the check
            out["collapse"] = prediction_collapse(logits, data.num_classes)
            if out["collapse"]["collapsed"]:
                share, cls = out["collapse"]["majority_share"], data.classes[out["collapse"]["majority_class"]]
                print(f"warning: the model collapsed: {share:.0%} of its target predictions are class '{cls}' "
                      f"(label-free check; recorded as 'collapse' in results.json)", file=sys.stderr)
    plot_confusion(out["target_test"]["confusion"], data.classes, run_dir / "confusion_target_test.png",
                   f"target-test confusion ({out['target_test']['acc']:.1f}%)")
    return out


def resources(model, args, run_dir: Path) -> dict:
    res = {"params": count_params(model), **count_flops(model, args.crop_size)}
    if (run_dir / "model.pt").is_file():
        res["model_mb"] = file_size_mb(run_dir / "model.pt")
    return res


def input_normalisation(args) -> tuple:
    """The backbone's input mean/std (timm teachers differ from torchvision), read off an empty model: no
    weights are loaded or downloaded for it."""
    probe = build_classifier(args.arch, 2, pretrained=False, bottleneck_dim=0)
    return probe.mean, probe.std


def train_phase(args, method_name: str, regime: str, run_dir: Path, splits: dict) -> Optional[dict]:
    """Trains and evaluates; under torchrun only rank 0 evaluates and returns results (the others: None)."""
    seed_everything(args.seed)
    data = distributed.main_first(lambda: Data(args, splits, *input_normalisation(args), regime))
    seed_everything(args.seed)
    model = distributed.main_first(lambda: build_model(args, data.num_classes))
    iters = args.iters_per_epoch or iterations_per_epoch(data.n_source, data.n_target, args.batch_size)
    cfg = TrainConfig(epochs=args.epochs, iters_per_epoch=iters, lr=args.lr, momentum=args.momentum,
                      weight_decay=args.wd, lr_gamma=args.lr_gamma, lr_decay=args.lr_decay,
                      trade_off=args.trade_off, label_smoothing=args.label_smoothing,
                      self_training=args.self_training, self_training_threshold=args.self_training_threshold,
                      amp=args.amp,
                      channels_last=args.channels_last, select=args.select,
                      progress=not args.no_progress, device=args.device, run_settings=run_settings(args))
    method_cls = get_method(args.registered_method)  # method_name may be a variant's (cdan_e, dann_tradeoff0.3)
    init = None
    if method_cls.needs_source_model:
        init = init_from_source(model, args)
    method = method_cls(model, data.num_classes, args, args.epochs * iters)
    method.name = method_name
    model.to(args.device), method.to(args.device)  # the teacher and discriminators live in the method
    method.prepare(data.unlabeled_eval, data.labeled_counts)
    trainer = Trainer(model, method, data.labeled, data.unlabeled, data.evals, cfg, run_dir,
                      select_on=data.select_eval() if args.select == "im" else None)
    trainer.fit(resume=args.resume)
    if not distributed.is_main():
        return None
    selected = trainer.restore_selected()
    model.to(memory_format=torch.contiguous_format)
    atomic_torch_save(model_record(model, args.arch, data.classes, args.crop_size, args.bottleneck_dim,
                                   args.resize_size),
                      run_dir / "model.pt")
    rows = trainer.history.rows
    title = run_name(args, "oracle" if regime == "oracle" else method_name)
    plot_history(rows, run_dir / "curves.png", f"{args.data} {task_name(args)} {title} seed {args.seed}")
    epochs_done = max(1, len(rows))
    return {
        **run_header(args, method_name, regime, data),
        "config": config_dict(cfg), "method_config": method.config(), "init_from": init,
        "resumed_from_epoch": trainer.resumed_from,
        "selected_epoch": selected if selected is not None else len(rows),
        **evaluate_all(model, data, run_dir, args.device),
        "resources": resources(model.cpu(), args, run_dir),
        "timing": {"train_seconds": trainer.train_seconds, "seconds_per_epoch": trainer.train_seconds / epochs_done,
                   "images_per_s": sum(r["images_per_s"] for r in rows) / epochs_done},
        **distributed.run_info(args.batch_size),
    }


def run_header(args, method_name: str, regime: str, data: Data) -> dict:
    name = "oracle" if regime == "oracle" else method_name
    return {
        "schema": "liteda.run/1", "dataset": args.data, "root": str(args.root), "task": task_name(args),
        "source": args.source, "target": args.target, "source_letter": data.source_letter,
        "target_letter": data.target_letter, "method": run_name(args, name), "regime": regime,
        "arch": args.arch, "weights": weights_desc(args), "seed": args.seed, "protocol": args.protocol,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "crop_size": args.crop_size,
        "classes": data.classes, "n_source_train": data.n_source, "n_target_train": data.n_target,
        **({"n_select_holdout": data.n_select_holdout} if data.n_select_holdout else {}),
        "machine": machine_info(), "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_settings(args) -> dict:
    """What defines a run beyond the optimiser: a resume under other values would mix two runs in one."""
    return {k: getattr(args, k) for k in ("arch", "batch_size", "crop_size", "resize_size", "bottleneck_dim",
                                          "freeze_stages", "no_prelogits", "scale", "no_hflip", "protocol",
                                          "test_ratio", "split_seed", "scratch", "pretrained", "seed")} | (
        {"source_aug": args.source_aug} if getattr(args, "source_aug", "standard") != "standard" else {}) | (
        {"select": args.select} if getattr(args, "select", "last") != "last" else {}) | (
        {"select_holdout": args.select_holdout} if getattr(args, "select_holdout", 0.0) else {})


def test_phase(args, method_name: str, regime: str, run_dir: Path, splits: dict) -> dict:
    model, rec = load_classifier(run_dir / "model.pt")
    data = Data(args, splits, rec["mean"] or None, rec["std"] or None, regime)
    prev = read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else {}
    return {**prev, **run_header(args, method_name, regime, data), **evaluate_all(model, data, run_dir),
            "resources": resources(model, args, run_dir)}


def analysis_phase(args, method_name: str, regime: str, run_dir: Path, splits: dict) -> dict:
    from .analysis import analyse_run  # t-SNE + A-distance

    model, rec = load_classifier(run_dir / "model.pt")
    data = Data(args, splits, rec["mean"] or None, rec["std"] or None, regime)
    prev = read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else {}
    return {**prev, "analysis": analyse_run(model, data.source_train_eval(), data.target_train_eval(), run_dir)}


PHASES = {"train": train_phase, "test": test_phase, "analysis": analysis_phase}


KIND_LABELS = {"source_only": "source-only", "oracle": "oracle (target labels)", "kd": "distilled student"}


def stage_kind(regime: str, registered: str) -> str:
    if regime in ("source_only", "oracle"):
        return regime
    return "distill" if registered == "kd" else "adapt"


def stage_label(args, regime: str, method_name: str) -> str:
    """The run's row label: the method (its registry name, as tllib's tables print it), and the arch when it is
    not the student's (a teacher)."""
    key = "oracle" if regime == "oracle" else method_name
    stem, _, variant = key.partition("_")
    if key not in KIND_LABELS and stem in KIND_LABELS and variant:  # kd_cluster0.3: a variant of a labelled kind
        base = f"{KIND_LABELS[stem]}, {variant}"
    else:
        base = KIND_LABELS.get(key, key)
    base += _variant_suffixes(args, 3)
    return base if args.arch == "mobilenet_v3_small" else f"{base} ({args.arch})"


def stage_record(args, method_name: str, regime: str, run_dir: Path, results: dict) -> StageRecord:
    """What later stages and the report read about this run (written after results.json)."""
    from .classifier import read_record as read_model_file
    from .datasets import IMAGENET_MEAN, IMAGENET_STD

    model = read_model_file(run_dir / "model.pt")
    parents: dict[str, str] = {}
    if results.get("init_from"):
        parents["init"] = relative(Path(results["init_from"]).parent, run_dir)
    for i, t in enumerate((results.get("method_config") or {}).get("teachers", [])):
        parents["teacher" if i == 0 else f"teacher{i + 1}"] = relative(Path(t["ckpt"]).parent, run_dir)
    name = run_dir.parent.name if run_dir.name.startswith("seed") else run_name(args, method_name)
    return StageRecord(
        kind=stage_kind(regime, args.registered_method), name=name, label=stage_label(args, regime, method_name),
        seed=args.seed, arch=args.arch, weights=weights_desc(args),
        dataset=DatasetRef(name=args.data, root=str(args.root), source=results["source_letter"],
                           target=results["target_letter"], classes=list(results["classes"]), splits="splits",
                           protocol=args.protocol),
        transform=Transform(resize=model.get("resize_size") or args.resize_size, crop=model["crop_size"],
                            mean=list(model.get("mean") or IMAGENET_MEAN), std=list(model.get("std") or IMAGENET_STD)),
        artifacts={"model": "model.pt"}, parents=parents)


def validate(args, regime: str) -> None:
    """Cheap checks of the flags, before anything is built, downloaded or created."""
    if args.pretrained and not os.path.isfile(args.pretrained):
        fail(f"--pretrained '{args.pretrained}' does not exist")
    if args.scratch and args.pretrained:
        fail("--scratch and --pretrained exclude each other")
    if args.epochs < 1 or args.batch_size < 1:
        fail("--epochs and -b must be positive")
    if args.source == args.target and regime != "oracle":
        fail(f"source and target are the same domain ('{args.source}')")
    if not (math.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a positive number, got {args.lr}")
    if args.iters_per_epoch is not None and args.iters_per_epoch < 1:
        fail(f"-i/--iters-per-epoch must be at least 1, got {args.iters_per_epoch}")
    if args.resize_size < args.crop_size:
        fail(f"--resize-size {args.resize_size} is below --crop-size {args.crop_size} (the crop would be padded)")
    if args.trade_off < 0 or not math.isfinite(args.trade_off):
        fail(f"--trade-off must be a non-negative number, got {args.trade_off}")
    if not 0 <= args.label_smoothing < 1:
        fail(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not (math.isfinite(args.self_training) and args.self_training >= 0):
        fail(f"--self-training must be a non-negative number, got {args.self_training}")
    if not 0 < args.self_training_threshold <= 1:
        fail(f"--self-training-threshold must be in (0, 1], got {args.self_training_threshold}")
    if args.self_training and not get_method(args.registered_method).uses_target:
        fail(f"--self-training needs unlabeled target images: '{args.registered_method}' trains on none")
    if getattr(args, "select_holdout", 0.0) and (args.select != "im" or not 0 < args.select_holdout < 1):
        fail(f"--select-holdout {args.select_holdout:g} needs --select im and a share in (0, 1)")


def main(method_name: str = "source_only", regime: str = "adapt", argv: Optional[list[str]] = None) -> dict:
    if regime not in REGIMES:
        fail(f"unknown regime '{regime}'")
    method_cls = get_method(method_name)
    args = build_parser(method_cls, regime).parse_args(argv)
    args.registered_method = method_name
    method_name = method_cls.variant_name(args, method_name)  # e.g. cdan -E -> cdan_e
    name = "oracle" if regime == "oracle" else method_name
    validate(args, regime)
    args.device = resolve_device(args.device, args.amp)
    if args.phase != "train":
        if distributed.launched_rank() != 0:
            return {}  # evaluation and analysis run in one process, rank 0, without a process group
    else:
        args.device = distributed.init(args.device)  # torchrun: join the process group
    run_dir = run_dir_for(args, name)
    try:
        results = run_phase(args, argv, method_name, regime, run_dir)
    finally:
        distributed.teardown()
    if results is None:  # a process other than rank 0: it trained its share, rank 0 wrote the run
        return {}
    tt = results.get("target_test", {})
    print(f"{results.get('task')} {results.get('method')} seed {args.seed}: target-test acc {tt.get('acc', float('nan')):.2f} "
          f"| results: {run_dir / 'results.json'}")
    return results


def run_phase(args, argv: Optional[list[str]], method_name: str, regime: str, run_dir: Path) -> Optional[dict]:
    """The phase in its run folder, results and record written; None on processes other than rank 0, which
    train with it (--phase train) and write nothing."""
    distributed.check_batch_size(args.batch_size)
    if args.phase != "train" and not (run_dir / "model.pt").is_file():
        fail(f"--phase {args.phase}: no trained model at '{run_dir / 'model.pt'}' (train first)")
    # the dataset is checked before the run folder exists
    splits = distributed.main_first(lambda: prepare_splits(args, run_dir))
    distributed.on_main(lambda: lock_run(run_dir))
    try:
        distributed.on_main(lambda: keep_splits(args, run_dir))
        apply_threads()
        results = PHASES[args.phase](args, method_name, regime, run_dir, splits)
        if not distributed.is_main():
            return None
        results["command"] = " ".join(["liteda"] + (argv if argv is not None else sys.argv[1:]))
        write_json(run_dir / "results.json", results)
        if args.phase != "analysis":
            write_record(run_dir, stage_record(args, method_name, regime, run_dir, results))
    finally:
        unlock_run(run_dir)
    return results


# settings every run's results.json records (``run_header``) that its folder name does not carry: a finished run
# made with other values is another experiment, not this command's result
RECORDED_SETTINGS = ("arch", "seed", "epochs", "batch_size", "lr", "crop_size", "protocol")


def planned_run_dir(argv: list[str]) -> Path:
    """The run folder a training command (``train|oracle|adapt -m M|distill`` and its flags) will write, named
    as the runner names it (method variants and the arch included): what the grid waits for."""
    return planned_run(argv)[0]


def planned_run(argv: list[str]) -> tuple[Path, dict]:
    """:func:`planned_run_dir` and the command's :data:`RECORDED_SETTINGS`."""
    command, rest = argv[0], list(argv[1:])
    if command == "adapt":
        pre = OneLineParser(prog="liteda adapt", add_help=False)
        pre.add_argument("-m", "--method", required=True)
        known, rest = pre.parse_known_args(rest)
        method, regime = known.method, "adapt"
    else:
        method, regime = {"train": ("source_only", "source_only"), "oracle": ("source_only", "oracle"),
                          "distill": ("kd", "adapt")}[command]
    method_cls = get_method(method)
    args = build_parser(method_cls, regime).parse_args(rest)
    return (run_dir_for(args, "oracle" if regime == "oracle" else method_cls.variant_name(args, method)),
            {k: getattr(args, k) for k in RECORDED_SETTINGS})


# ----------------------------------------------------------------------------- `liteda <stage>` entry points
def train_main(argv: Optional[list[str]] = None) -> dict:
    """``liteda train``: source-only on labeled source."""
    return main("source_only", "source_only", argv)


def oracle_main(argv: Optional[list[str]] = None) -> dict:
    """``liteda oracle``: labeled target-train, the same epochs and iterations (a reference, never deployed)."""
    return main("source_only", "oracle", argv)


def adapt_main(argv: Optional[list[str]] = None) -> dict:
    """``liteda adapt -m METHOD``: any registered adaptation method (its own flags follow -m)."""
    from .adaptation import METHODS

    pre = OneLineParser(prog="liteda adapt", add_help=False)
    pre.add_argument("-m", "--method", default=None)
    known, rest = pre.parse_known_args(list(argv if argv is not None else sys.argv[1:]))
    if known.method is None:
        if {"-h", "--help"} & set(rest):
            print("usage: liteda adapt -m METHOD ROOT -d DATA -s S -t T [flags]  (liteda adapt -m METHOD -h: "
                  f"its flags)\nmethods: {', '.join(m for m in METHODS.names() if m not in ('source_only', 'kd'))}")
            return {}
        fail("liteda adapt: -m/--method is required; `liteda list methods` lists them")
    if known.method in ("source_only", "kd"):
        fail(f"-m {known.method}: use `liteda {'train' if known.method == 'source_only' else 'distill'}`")
    return main(known.method, "adapt", rest)


def distill_main(argv: Optional[list[str]] = None) -> dict:
    """``liteda distill``: the student learns from finished teacher runs on the unlabeled target."""
    return main("kd", "adapt", argv)


def cli(method_name: str = "source_only", regime: str = "adapt") -> None:
    """Entry point for scripts: one-line errors, exit codes."""
    sys.exit(run_cli(lambda argv: main(method_name, regime, argv)))
