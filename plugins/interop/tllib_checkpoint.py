"""A checkpoint trained by tllib's examples -> a LiteDA run folder (``record.json``, ``model.pt``, ``splits/``,
``results.json``), so LiteDA's later stages take it as they take their own runs:

    liteda import-tllib logs/dann/OfficeCaltech_W2A \\
        data/office_caltech_10 -d OfficeCaltech -s W -t A -a mobilenet_v3_small --name dann
    liteda compress --run runs/OfficeCaltech/W2A/dann/seed0 --recipe 1mb
    liteda bench --run runs/OfficeCaltech/W2A/dann/seed0

The checkpoint is what tllib's scripts save: ``torch.save(classifier.state_dict(), LOG/checkpoints/best.pth)``
(a log folder stands for its ``checkpoints/best.pth``). Its classifier's parameter names map onto LiteDA's
``ImageClassifier`` (``backbone.* -> bottleneck.* -> head``) for these layouts of tllib's ``ImageClassifier``:

| tllib example(s) | bottleneck | LiteDA model |
|---|---|---|
| dann, cdan, mcc, jan, bsp, afn, ... | ``Linear -> BatchNorm1d -> ReLU (-> Dropout)`` | the same (dropout is the identity at test time) |
| dan | ``Linear -> ReLU -> Dropout`` | ``Linear -> BatchNorm1d -> ReLU`` with an identity BatchNorm (same outputs) |
| erm / source only (``Classifier`` without bottleneck) | none | ``bottleneck_dim = 0`` |

The backbone is LiteDA's when the script ran with ``-a mobilenet_v3_small`` (``liteda.interop.tllib``): its
names are LiteDA's. tllib's own ResNets and timm backbones (``-a resnet50``) map onto LiteDA's timm backbone
(tllib's unused ImageNet ``fc`` is dropped). MDD's classifier (a two-layer head and an adversarial head) has no
LiteDA counterpart and is refused with one line.

tllib's examples train on every image of the target domain (unlabeled) and keep as ``best.pth`` the epoch with
the best target accuracy; the record therefore says ``protocol: transductive``, and the imported model is scored
on LiteDA's target-test split (docs/tllib.md).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import sys
from pathlib import Path
from typing import Optional

import torch

from ..backbones import list_backbones, load_state_dict_file
from ..classifier import ImageClassifier, build_classifier, model_record
from ..datasets import IMAGENET_MEAN, IMAGENET_STD, prepare_domains
from ..record import DatasetRef, StageRecord, Transform, write_record
from ..utils import OneLineParser, atomic_torch_save, fail, machine_info, run_cli, write_json

BN_EPS = 1e-5  # BatchNorm1d's default eps: an identity BatchNorm stores running_var = 1 - eps


# ----------------------------------------------------------------------------- the state dict
def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or the ``checkpoints/best.pth`` of a tllib log folder."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.pth", path / "best.pth"):
            if candidate.is_file():
                return candidate
        fail(f"'{path}' is a folder without checkpoints/best.pth (a tllib log folder holds one after training)")
    if not path.is_file():
        fail(f"checkpoint '{path}' does not exist")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """tllib's ``classifier.state_dict()`` (``weights_only``), without DataParallel's ``module.`` prefix."""
    state = load_state_dict_file(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def bottleneck_layout(state: dict[str, torch.Tensor], path: Path) -> str:
    """``bn`` (Linear, BN, ReLU), ``plain`` (Linear, ReLU, Dropout: DAN), ``none``; one line for the rest."""
    keys = {k for k in state if k.startswith("bottleneck.")}
    if "head.weight" not in state:
        heads = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith(("head.", "adv_head."))})
        what = ("a multi-layer head (tllib's MDD classifier), which LiteDA's ImageClassifier does not have"
                if heads else "no 'head.weight'")
        fail(f"checkpoint '{path}' is not a tllib ImageClassifier LiteDA can take: it has {what}")
    if not keys:
        return "none"
    if {"bottleneck.0.weight", "bottleneck.1.running_mean"} <= keys and not any(
            k.startswith("bottleneck.2.") for k in keys):
        return "bn"
    if keys == {"bottleneck.0.weight", "bottleneck.0.bias"}:
        return "plain"
    fail(f"checkpoint '{path}': unknown bottleneck layout ({', '.join(sorted(keys)[:4])}); LiteDA takes "
         "Linear-BatchNorm-ReLU, Linear-ReLU-Dropout or none")
    raise AssertionError


def identity_batchnorm(width: int) -> dict[str, torch.Tensor]:
    """A BatchNorm1d state that is the identity in eval mode: ``(x - 0) / sqrt((1 - eps) + eps) * 1 + 0``."""
    return {"weight": torch.ones(width), "bias": torch.zeros(width), "running_mean": torch.zeros(width),
            "running_var": torch.full((width,), 1.0 - BN_EPS), "num_batches_tracked": torch.zeros((), dtype=torch.long)}


def to_liteda_state(state: dict[str, torch.Tensor], arch: str, path: Path) -> tuple[dict[str, torch.Tensor], int, str]:
    """(LiteDA ``ImageClassifier`` state, bottleneck width, layout) from tllib's classifier state."""
    layout = bottleneck_layout(state, path)
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            rest = k[len("backbone."):]
            if arch in list_backbones():
                out[k] = v                               # LiteDA's backbone, registered into tllib
            elif not rest.startswith("fc."):             # tllib's ResNet keeps torchvision's unused fc
                out["backbone.model." + rest] = v        # timm: LiteDA wraps the model as .model
        elif k.startswith(("bottleneck.", "head.")):
            out[k] = v
    width = int(state["bottleneck.0.weight"].shape[0]) if layout != "none" else 0
    if layout == "plain":
        out.update({f"bottleneck.1.{k}": v for k, v in identity_batchnorm(width).items()})
    return out, width, layout


def load_into(model: ImageClassifier, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    from ..backbones import state_mismatch

    what = state_mismatch(model, state)
    if what:
        fail(f"checkpoint '{path}' does not fit -a {arch}: {what} (was it trained with another -a?)")
    model.load_state_dict(state, strict=True)


def load_tllib_classifier(path: str | Path, arch: str = "mobilenet_v3_small") -> tuple[ImageClassifier, dict]:
    """LiteDA's ``ImageClassifier`` holding a tllib checkpoint's weights (eval mode) and what was read."""
    file = checkpoint_file(path)
    state = read_state_dict(file)
    converted, width, layout = to_liteda_state(state, arch, file)
    num_classes = int(state["head.weight"].shape[0])
    model = build_classifier(arch, num_classes, pretrained=False, bottleneck_dim=width)
    load_into(model, converted, file, arch)
    return model.eval(), {"checkpoint": str(file), "layout": layout, "bottleneck_dim": width,
                          "num_classes": num_classes, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}


# ----------------------------------------------------------------------------- the run folder
def build_parser() -> OneLineParser:
    p = OneLineParser(prog="liteda import-tllib",
                      description="a checkpoint trained by tllib's examples -> a LiteDA run folder")
    p.add_argument("checkpoint", help="tllib's checkpoint file, or its log folder (checkpoints/best.pth)")
    p.add_argument("root", help="dataset root")
    p.add_argument("-d", "--data", default="OfficeCaltech", help="dataset (LiteDA's names: OfficeCaltech, Office31, "
                   "Custom, ...)")
    p.add_argument("-s", "--source", required=True)
    p.add_argument("-t", "--target", required=True)
    p.add_argument("-a", "--arch", default="mobilenet_v3_small", help="the -a the tllib script ran with")
    p.add_argument("--name", default="tllib", help="run name: its folder and table row key")
    p.add_argument("--label", default=None, help="row label in tables (default: '<name> (tllib)')")
    p.add_argument("--seed", type=int, default=0, help="the seed the tllib script ran with (folder seed<k>)")
    p.add_argument("--val-resizing", choices=("default", "res."), default="default",
                   help="tllib's test transform: default = ResizeImage(256) + CenterCrop(224); res. = "
                        "ResizeImage(--resize-size)")
    p.add_argument("--resize-size", type=int, default=224, help="tllib's --resize-size (with --val-resizing res.)")
    p.add_argument("--norm-mean", type=float, nargs=3, default=IMAGENET_MEAN)
    p.add_argument("--norm-std", type=float, nargs=3, default=IMAGENET_STD)
    p.add_argument("--protocol", choices=("heldout", "transductive"), default="transductive",
                   help="tllib's examples see every target image in training: transductive")
    p.add_argument("--test-ratio", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--out", default=None, help="run folder (default: RUNS_ROOT/<dataset>/<task>/<name>/seed<k>)")
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (default: LITEDA_CACHE)")
    p.add_argument("--no-progress", action="store_true")
    return p


def eval_transform(args) -> Transform:
    resize, crop = (256, 224) if args.val_resizing == "default" else (args.resize_size, args.resize_size)
    return Transform(resize=resize, crop=crop, mean=list(args.norm_mean), std=list(args.norm_std))


def evaluate(model: ImageClassifier, root: str, splits: dict, source: str, target: str, tf: Transform,
             cache_dir: str, progress: bool) -> dict:
    """target_test (the protocol's number), target_all and source_test, as the training stages report them."""
    from torch.utils.data import DataLoader

    from ..datasets import TensorImageDataset, build_transform, load_images
    from ..metrics import classification_metrics, info_max_score, predict

    nc, test_tf, out = len(splits[source].classes), build_transform(False, tf.crop, tf.mean, tf.std), {}
    for name, items in (("target_test", splits[target].test), ("target_all", splits[target].all),
                        ("source_test", splits[source].test)):
        images, labels = load_images(root, items, tf.resize, cache_dir, progress=progress)
        logits, labels = predict(model, DataLoader(TensorImageDataset(images, labels, test_tf, nc), batch_size=64))
        out[name] = classification_metrics(logits, labels, nc)
        if name == "target_test":
            out["validator"] = info_max_score(logits)
    return out


def main(argv: Optional[list[str]] = None) -> dict:
    from ..metrics import count_flops, count_params, file_size_mb
    from ..runner import keep_splits, run_name
    from ..settings import apply_threads, cache_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.cache_dir = args.cache_dir or cache_dir()
    args.log = args.out
    tf = eval_transform(args)
    if tf.resize < tf.crop or tf.crop < 1:
        fail(f"--resize-size {args.resize_size} is not a valid test size")
    model, info = load_tllib_classifier(args.checkpoint, args.arch)
    out = Path(args.out) if args.out else None
    # like a training stage: --out keeps its own split, else the runs tree's shared split of the dataset
    split_dir = out / "splits" if out else Path(args.runs_root) / args.data / "splits"
    splits = prepare_domains(args.data, args.root, [args.source, args.target], split_dir, args.test_ratio,
                             args.split_seed)
    src, tgt = splits[args.source], splits[args.target]
    if len(src.classes) != info["num_classes"]:
        fail(f"checkpoint '{info['checkpoint']}' has {info['num_classes']} classes, dataset '{args.root}' "
             f"({args.data}) has {len(src.classes)}")
    task = f"{src.letter}2{tgt.letter}"
    name = run_name(args, args.name)
    run_dir = out or Path(args.runs_root) / args.data / task / name / f"seed{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_splits(args, run_dir)
    apply_threads()

    model.mean, model.std = list(args.norm_mean), list(args.norm_std)
    atomic_torch_save(model_record(model, args.arch, src.classes, tf.crop, info["bottleneck_dim"], tf.resize),
                      run_dir / "model.pt")
    metrics = evaluate(model, args.root, splits, args.source, args.target, tf, args.cache_dir, not args.no_progress)
    weights = f"tllib checkpoint {info['checkpoint']}"
    results = {
        "schema": "liteda.run/1", "dataset": args.data, "root": str(args.root), "task": task,
        "source": args.source, "target": args.target, "source_letter": src.letter, "target_letter": tgt.letter,
        "method": name, "regime": "adapt", "arch": args.arch, "weights": weights, "seed": args.seed,
        "protocol": args.protocol, "crop_size": tf.crop, "classes": src.classes,
        "n_source_train": len(src.train), "n_target_train": len(tgt.train),
        "imported_from": {"library": "tllib", **info},
        **metrics,
        "resources": {"params": count_params(model), **count_flops(model, tf.crop),
                      "model_mb": file_size_mb(run_dir / "model.pt")},
        "machine": machine_info(), "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["liteda import-tllib", *argv]),
    }
    write_json(run_dir / "results.json", results)
    write_record(run_dir, StageRecord(
        kind="adapt", name=name, label=args.label or f"{args.name} (tllib)", seed=args.seed, arch=args.arch,
        weights=weights,
        dataset=DatasetRef(name=args.data, root=str(args.root), source=src.letter, target=tgt.letter,
                           classes=list(src.classes), splits="splits", protocol=args.protocol),
        transform=tf, artifacts={"model": "model.pt"}))
    print(f"{task} {name} (tllib checkpoint, {info['layout']} bottleneck): target-test acc "
          f"{metrics['target_test']['acc']:.2f} | run folder: {run_dir}")
    return results


if __name__ == "__main__":
    sys.exit(run_cli(main))
