"""``examples/compress.py``: a run folder's model.pt -> resolution -> activation -> attention -> prune -> low-rank
-> quantize -> results.

Data come from the run folder's own image lists (``<run>/splits/<letter>_{train,test}.txt``) so the images are
those the model was trained and tested on. Calibration and recovery fine-tuning see labeled source-train and
unlabeled target-train only; target-test labels are read once per reported evaluation, never for a decision.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..classifier import ImageClassifier, load_classifier
from ..datasets import (TensorImageDataset, build_transform, dataset_spec, domain_letter, load_images,
                        read_image_list)
from ..engine import iterations_per_epoch
from ..metrics import classification_metrics, count_flops, file_size_mb, predict
from ..utils import OneLineParser
from ..utils import fail, machine_info, read_json, run_cli, seed_everything, write_json
from . import (count_params_any, load_compressed, measure_latency, save_compressed, save_torchscript,
               state_dict_mb)
from .activation import ACTIVATIONS, swap_activation
from .attention import ATTENTIONS, swap_attention
from .finetune import FinetuneConfig, finetune, recalibrate_bn
from .lowrank import ALLOCATIONS, KXK_METHODS, LAYER_SETS, WHITENINGS, layer_selection, lowrank_model
from .prune import IMPORTANCES, check_ratio, prune_model
from .resolution import Rescaled, check_resolution, scaled_resize
from .quantize import QUANT_KINDS, float_ops, quantize_dynamic_linear, quantize_qat, quantize_static, quantized_summary


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="compress.py", description="LiteDA compression of an adapted MobileNetV3 (model.pt)")
    p.add_argument("root", help="dataset root the run used")
    p.add_argument("-d", "--data", default="OfficeCaltech")
    p.add_argument("-s", "--source", required=True)
    p.add_argument("-t", "--target", required=True)
    p.add_argument("--ckpt", required=True, help="<run folder>/model.pt (its splits/ folder gives the images), or a "
                                                   "float compressed.pt to compress further (e.g. --quantize qat)")
    p.add_argument("--out", default=None, help="output folder (default <run folder>/compress)")
    g = p.add_argument_group("techniques (applied in the order resolution -> activation -> attention -> prune -> "
                             "lowrank -> quantize)")
    g.add_argument("--resolution", type=int, default=None, metavar="PX",
                   help="run the student on PX x PX inputs (e.g. 160: about half the MACs of 224), distilled from "
                        "the full-size model on the same crops")
    g.add_argument("--activation", choices=tuple(ACTIVATIONS), default=None,
                   help="replace every Hardswish (INT8-friendly: ONNX Runtime fuses Conv+ReLU into one INT8 kernel)")
    g.add_argument("--attention", choices=tuple(ATTENTIONS), default=None, help="replace the SE blocks")
    g.add_argument("--prune", type=float, default=None, help="fraction of channels to remove, in (0, 1)")
    g.add_argument("--prune-importance", default="magnitude", help=f"{' | '.join(IMPORTANCES)}")
    g.add_argument("--prune-steps", type=int, default=1, help="iterative pruning: N steps, fine-tune between")
    g.add_argument("--prune-global", action="store_true", help="one global ranking instead of a uniform ratio")
    g.add_argument("--prune-round-to", type=int, default=None, help="keep channel counts multiples of this")
    g.add_argument("--lowrank-energy", type=float, default=None, help="SVD/Tucker rank keeping this energy")
    g.add_argument("--lowrank-ratio", type=float, default=None, help="or: factors hold this fraction of weights")
    g.add_argument("--lowrank-kxk", default="tucker2", help=f"dense kxk convs: {' | '.join(KXK_METHODS)}")
    g.add_argument("--lowrank-layers", choices=LAYER_SETS, default="all",
                   help="linear: only the pre-logits and bottleneck Linears (the 0.85 M-param tail); se: only the "
                        "squeeze-excite 1x1 convs (0.46 M params, few MACs); linear+se: both")
    g.add_argument("--lowrank-alloc", choices=ALLOCATIONS, default="uniform",
                   help="uniform: every layer at --lowrank-ratio; global: the layers together at --lowrank-ratio, "
                        "ranks from one shared energy threshold (layers with a flat spectrum keep more)")
    g.add_argument("--lowrank-whiten", choices=WHITENINGS, default="none",
                   help="data-aware SVD: truncate W S, S from the layer's input statistics on source-train and "
                        "unlabeled target-train images (diag: ASVD-style scaling; full: Cholesky, SVD-LLM-style)")
    g.add_argument("--quantize", default="none", help=f"{' | '.join(QUANT_KINDS)}")
    g.add_argument("--calib-batches", type=int, default=10, help="PTSQ: batches of unlabeled target-train images")
    f = p.add_argument_group("recovery fine-tuning (self-distillation through the engine)")
    f.add_argument("--ft-epochs", type=int, default=2, help="epochs after each stage (0: none)")
    f.add_argument("--ft-iters", type=int, default=None, help="iterations per epoch (default: PROTOCOL.md's)")
    f.add_argument("--ft-lr", type=float, default=0.005)
    f.add_argument("--qat-lr", type=float, default=0.0005,
                   help="QAT's fine-tune lr (10x below --ft-lr: at 0.005 fake quantization cost W->A 8 pt)")
    f.add_argument("--kd-temperature", type=float, default=4.0)
    f.add_argument("--ft-teacher-ckpt", default=None, metavar="PATH",
                   help="distil the recovery fine-tunes from this LiteDA model.pt (e.g. the distilled student's own "
                        "teacher) instead of the uncompressed student")
    f.add_argument("--trade-off", type=float, default=1.0, help="weight of the distillation loss")
    f.add_argument("--bn-batches", type=int, default=20,
                   help="re-estimate BatchNorm statistics on this many source+target batches after each stage")
    f.add_argument("--ft-guard", action="store_true",
                   help="keep a float stage's fine-tune only if it raises top-1 agreement with the uncompressed model "
                        "on unlabeled target-train; else restore the weights before it (label-free)")
    f.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--resize-size", type=int, default=None,
                   help="test-time resize before the centre crop (default: the checkpoint's, else 8/7 of the crop)")
    p.add_argument("--cache-dir", default=os.environ.get("LITEDA_CACHE", "data/cache"))
    p.add_argument("--latency-runs", type=int, default=50, help="bs1 latency: timed runs after warm-up")
    p.add_argument("--latency-threads", type=int, default=1, help="intra-op threads for the latency runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def check_args(args) -> None:
    if args.prune is not None:
        check_ratio(args.prune, "--prune")
    if args.prune_importance not in IMPORTANCES:
        fail(f"--prune-importance must be one of {', '.join(IMPORTANCES)}, got '{args.prune_importance}'")
    if args.quantize not in QUANT_KINDS:
        fail(f"--quantize must be one of {', '.join(QUANT_KINDS)}, got '{args.quantize}'")
    if args.lowrank_kxk not in KXK_METHODS:
        fail(f"--lowrank-kxk must be one of {', '.join(KXK_METHODS)}, got '{args.lowrank_kxk}'")
    for flag in ("lowrank_energy", "lowrank_ratio"):
        v = getattr(args, flag)
        if v is not None and not 0.0 < v <= 1.0:
            fail(f"--{flag.replace('_', '-')} must be in (0, 1], got {v}")
    if args.lowrank_energy is not None and args.lowrank_ratio is not None:
        fail("give one of --lowrank-energy and --lowrank-ratio")
    if args.lowrank_alloc == "global" and args.lowrank_ratio is None:
        fail("--lowrank-alloc global shares a parameter budget: give --lowrank-ratio")
    if args.prune_steps < 1 or args.ft_epochs < 0 or args.batch_size < 1 or args.calib_batches < 1:
        fail("--prune-steps, -b and --calib-batches must be positive, --ft-epochs >= 0")
    if args.attention == "ulsam" and args.prune is not None:
        fail("--prune after --attention ulsam is not supported (ULSAM's equal channel subspaces)")
    if args.quantize == "qat" and args.ft_epochs == 0:
        fail("--quantize qat trains with fake quantization: give --ft-epochs >= 1")


# ----------------------------------------------------------------------------- data
@dataclass
class CompressData:
    labeled: DataLoader  # source-train, labeled
    unlabeled: DataLoader  # target-train, label -1
    calibration: DataLoader  # target-train, test transform, label -1
    target_test: DataLoader
    num_classes: int
    n_source: int
    n_target: int


def build_data(args, run_dir: Path, rec: dict, resize: Optional[int] = None, crop: Optional[int] = None) -> CompressData:
    """Loaders at the checkpoint's input size, or at ``resize``/``crop`` (a student of smaller input size)."""
    spec = dataset_spec(args.data, args.root)
    lists = {}
    for role, dom in (("s", args.source), ("t", args.target)):
        letter = domain_letter(spec, dom)
        for part in ("train", "test"):
            lists[role + part] = read_image_list(run_dir / "splits" / f"{letter}_{part}.txt", args.root)
    num_classes = rec["num_classes"]
    labels_max = max(y for items in lists.values() for _, y in items)
    if labels_max >= num_classes:
        fail(f"the run's image lists have label {labels_max}, but '{args.ckpt}' has {num_classes} classes")
    crop = crop or rec["crop_size"]
    size = resize or input_resize(args, rec)
    load = lambda items: load_images(args.root, items, size, args.cache_dir, progress=not args.no_progress)  # noqa: E731
    norm = (rec["mean"], rec["std"]) if rec.get("mean") and rec.get("std") else ()
    train_tf, test_tf = build_transform(True, crop, *norm), build_transform(False, crop, *norm)
    s_tr, t_tr, t_te = load(lists["strain"]), load(lists["ttrain"]), load(lists["ttest"])
    unl = torch.full_like(t_tr[1], -1)  # target-train labels are dropped here
    bs = args.batch_size
    mk = lambda ds, train: DataLoader(ds, batch_size=bs, shuffle=train, drop_last=train and len(ds) >= bs)  # noqa: E731
    return CompressData(
        labeled=mk(TensorImageDataset(*s_tr, train_tf, num_classes), True),
        unlabeled=mk(TensorImageDataset(t_tr[0], unl, train_tf, num_classes), True),
        calibration=mk(TensorImageDataset(t_tr[0], unl, test_tf, num_classes), False),
        target_test=mk(TensorImageDataset(*t_te, test_tf, num_classes), False),
        num_classes=num_classes, n_source=len(s_tr[1]), n_target=len(t_tr[1]))


def input_resize(args, rec: dict) -> int:
    """The checkpoint's test-time resize (--resize-size overrides it)."""
    from ..classifier import eval_resize

    return eval_resize(rec, args.resize_size)


# ----------------------------------------------------------------------------- measurements
def evaluate(model: nn.Module, data: CompressData) -> dict:
    logits, labels = predict(model, data.target_test)
    m = classification_metrics(logits, labels, data.num_classes)
    return {k: m[k] for k in ("n", "acc", "loss", "f1_macro", "nmi")}


def describe(model: nn.Module, data: CompressData, input_size: int, file: Optional[Path], runs: int,
             threads: int = 1, float_model: Optional[nn.Module] = None) -> dict:
    """Target-test accuracy + params, MACs, MB, bs1 latency of one model. FlopCounterMode does not see
    quantized kernels, so a quantized model's MACs (INT8 MACs) are counted on its float structure."""
    out = {"target_test": evaluate(model, data), "params": count_params_any(model)}
    out.update(count_flops(float_model if float_model is not None else model, input_size))
    out["state_dict_mb"] = state_dict_mb(model)
    if file is not None:
        out["file_mb"] = file_size_mb(file)
    out.update(measure_latency(model, input_size, runs=runs, warmup=max(3, runs // 5), threads=threads))
    return out


# ----------------------------------------------------------------------------- stages
class Stages:
    """The ordered compression of ``student``; each stage records what it did and its recovery fine-tune."""

    def __init__(self, args, teacher: ImageClassifier, data: CompressData, out: Path, input_size: int,
                 resize: int, data_at: Callable[[int, int], CompressData], ft_teacher: Optional[nn.Module] = None):
        self.args, self.teacher, self.data, self.out, self.input_size = args, teacher, data, out, input_size
        # the training loaders' crop (the teacher's view) and how to build loaders for another student size
        self.view_size, self.resize, self.data_at = input_size, resize, data_at
        # label-free fidelity: the uncompressed model's top-1 on unlabeled target-train (calibration order)
        self.reference = predict(teacher.eval(), data.calibration)[0].argmax(1)
        self.ft_teacher = ft_teacher if ft_teacher is not None else teacher  # what the fine-tunes distil from
        self.student = copy.deepcopy(teacher)
        self.ops: list[dict] = []
        self.report: list[dict] = []
        self.float_model: Optional[nn.Module] = None
        iters = args.ft_iters or iterations_per_epoch(data.n_source, data.n_target, args.batch_size)
        self.ft = FinetuneConfig(epochs=args.ft_epochs, iters_per_epoch=iters, lr=args.ft_lr,
                                 kd_temperature=args.kd_temperature, trade_off=args.trade_off, amp=args.amp,
                                 progress=not args.no_progress)

    def recover(self, tag: str, model: Optional[nn.Module] = None, lr: Optional[float] = None) -> list[dict]:
        small = self.input_size if self.input_size != self.view_size else None
        cfg = self.ft if lr is None else dataclasses.replace(self.ft, lr=lr)
        rows = finetune(model if model is not None else self.student, self.ft_teacher, self.data.labeled,
                        self.data.unlabeled, cfg, self.out / "finetune" / tag, input_size=small)
        rows = [{k: r[k] for k in ("epoch", "loss", "kd_loss", "teacher_agree", "seconds", "images_per_s") if k in r}
                for r in rows]
        if model is None:  # float student (QAT's fused fake-quant graph keeps its own observers)
            net = Rescaled(self.student, small) if small else self.student
            n = recalibrate_bn(net, [self.data.labeled, self.data.unlabeled], self.args.bn_batches)
            rows.append({"bn_recalibration_images": n})
        return rows

    def recover_float(self, tag: str, before: dict) -> list[dict]:
        """A float stage's recovery fine-tune. With --ft-guard it is undone when it lowers the agreement with the
        uncompressed model (measured: whitened SVD on W->A agreed 97.9 % before its fine-tune, 95.2 % after)."""
        if not self.args.ft_guard:
            return self.recover(tag)
        saved = copy.deepcopy(self.student.state_dict())
        rows = self.recover(tag)
        after = self.agreement()
        kept = after >= before["agree"]
        if not kept:
            self.student.load_state_dict(saved)
        print(f"[{tag}] fine-tune {'kept' if kept else 'undone'}: target-train agreement {before['agree']:.1f} -> "
              f"{after:.1f} %", flush=True)
        return rows + [{"ft_guard": {"agree_before": before["agree"], "agree_after": after, "kept": kept}}]

    def agreement(self) -> float:
        """% of unlabeled target-train images on which the student's top-1 is the uncompressed model's: what a
        user can check without labels (e.g. to keep or drop a stage's fine-tune)."""
        return float((predict(self.student, self.data.calibration)[0].argmax(1) == self.reference).float().mean() * 100)

    def measure(self) -> dict:
        return {**evaluate(self.student, self.data), "agree": self.agreement()}

    def log(self, op: dict, before_ft: Optional[dict], history: list[dict]) -> None:
        entry = {**op, "params": count_params_any(self.student), "finetune": history}
        if before_ft is not None:
            entry["target_test_acc_before_ft"] = before_ft["acc"]
            entry["target_train_agree_before_ft"] = before_ft["agree"]
        entry["target_train_agree"] = self.agreement()
        entry["target_test_acc"] = evaluate(self.student, self.data)["acc"]  # reported, never used to choose
        self.report.append(entry)
        print(f"[{op['op']}] params {entry['params']:,} | target-test acc {entry['target_test_acc']:.2f}", flush=True)

    def resolution(self, size: int) -> None:
        """The student's input becomes ``size`` px: evaluation and calibration loaders at that size (resized in
        proportion); training loaders keep the teacher's crops, which the student sees downscaled."""
        check_resolution(size, self.view_size)
        before = evaluate(self.student, self.data)
        self.resize = scaled_resize(self.resize, self.input_size, size)
        small = self.data_at(self.resize, size)
        self.data = dataclasses.replace(self.data, calibration=small.calibration, target_test=small.target_test)
        self.input_size = size
        self.ops.append({"op": "resolution", "size": size, "resize": self.resize})
        measured = self.measure()
        self.log({"op": "resolution", "size": size, "resize": self.resize, "target_test_acc_at_full_size":
                  before["acc"], **count_flops(self.student, size)}, measured,
                 self.recover_float("resolution", measured))

    def activation(self, kind: str) -> None:
        n = swap_activation(self.student, kind)
        self.ops.append({"op": "activation", "kind": kind})
        before = self.measure()
        self.log({"op": "activation", "kind": kind, "replaced": n}, before, self.recover_float("activation", before))

    def attention(self, kind: str) -> None:
        n = swap_attention(self.student, kind)
        self.ops.append({"op": "attention", "kind": kind})
        before = self.measure()
        self.log({"op": "attention", "kind": kind, "replaced": n}, before, self.recover_float("attention", before))

    def prune(self) -> None:
        a = self.args
        steps_hist: list[dict] = []
        grad_batches = lambda: [next(iter(self.data.labeled)) for _ in range(2)]  # noqa: E731 - source CE only
        summary = prune_model(self.student, self.input_size, a.prune, a.prune_importance, a.prune_steps,
                              a.prune_global, grad_batches, round_to=a.prune_round_to,
                              between_steps=lambda k: steps_hist.extend(self.recover(f"prune{k + 1}")))
        op = {"op": "prune", **{k: v for k, v in summary.items() if k != "channels"}}
        self.ops.append(op)
        self.log(op, None, steps_hist)

    def lowrank(self) -> None:
        a = self.args
        plan = lowrank_model(self.student, a.lowrank_energy, a.lowrank_ratio, a.lowrank_kxk,
                             select=layer_selection(self.student, a.lowrank_layers), allocation=a.lowrank_alloc,
                             whiten=a.lowrank_whiten, batches=self.whitening_batches())
        self.ops.append({"op": "lowrank", "plan": plan})
        before = self.measure()
        op = {"op": "lowrank", "energy": a.lowrank_energy, "ratio": a.lowrank_ratio, "allocation": a.lowrank_alloc,
              "whiten": a.lowrank_whiten, "layers": len(plan), "plan": plan}
        self.log(op, before, self.recover_float("lowrank", before))

    def whitening_batches(self) -> Iterator[torch.Tensor]:
        """--lowrank-whiten's statistics: two augmented passes over labeled source-train (labels unused) and
        unlabeled target-train. Target-train alone is a few hundred images for inputs of up to 1024 dimensions:
        the covariance over-fits them (A->W, held-out target-train agreement 81 % from its 128 images, 97 % with
        the source passes added; benchmarks/lowrank_alloc.py)."""
        for _ in range(2):
            for loader in (self.data.labeled, self.data.unlabeled):
                yield from (x for x, _ in loader)

    def calibration_batches(self) -> Iterator[torch.Tensor]:
        """The first --calib-batches batches of unlabeled target-train images (test transform), lazily."""
        return (x for i, (x, _) in enumerate(self.data.calibration) if i < self.args.calib_batches)

    def quantize(self, kind: str) -> None:
        self.float_model = copy.deepcopy(self.student).eval()
        extra: dict = {}
        history: list[dict] = []
        if kind == "ptdq":
            self.student = quantize_dynamic_linear(self.student)
        elif kind == "ptsq":
            self.student, n = quantize_static(self.student, self.input_size, self.calibration_batches())
            extra["calibration_images"] = n
        else:
            extra["lr"] = self.args.qat_lr
            self.student = quantize_qat(self.student, self.input_size,
                                        lambda m: history.extend(self.recover("qat", m, self.args.qat_lr)))
        if kind in ("ptsq", "qat"):
            extra["float_ops"] = dict(Counter(o["op"] for o in float_ops(self.student)))  # measured on the graph
            extra.update(quantized_summary(self.student))
        self.ops.append({"op": "quantize", "kind": kind})
        self.log({"op": "quantize", "kind": kind, "backend": "x86", **extra}, None, history)


# ----------------------------------------------------------------------------- main
def check_checkpoint(rec: dict, path: str) -> None:
    if not str(rec.get("arch", "")).startswith("mobilenet_v3"):
        fail(f"--ckpt '{path}' is a '{rec.get('arch')}' model; compression supports MobileNetV3 checkpoints")


def load_input(ckpt: Path) -> tuple[nn.Module, dict, Path, list[dict]]:
    """(model, base record, run folder with splits/, techniques already applied) of a run's model.pt or of a
    float compressed.pt, so a compression can continue from an earlier one (e.g. QAT of the recommended
    float recipe) without redoing it. The run folder is the one the first compression started from."""
    from ..classifier import read_record
    from . import FORMAT, compressed_from_record, source_run

    rec = read_record(ckpt)
    if rec.get("format") != FORMAT:
        teacher, rec = load_classifier(ckpt)
        return teacher, rec, ckpt.parent, []
    if any(op["op"] == "quantize" for op in rec["ops"]):
        fail(f"--ckpt '{ckpt}' is already quantized; continue from a float compressed.pt")
    info_path = ckpt.parent / "results.json"
    info = read_json(info_path) if info_path.is_file() else {}
    run = source_run(info)
    if run is None or not (run / "splits").is_dir():
        fail(f"'{info_path}' does not name the run folder (with splits/) that '{ckpt}' was compressed from")
    return compressed_from_record(rec, ckpt), rec["base"], run, list(rec["ops"])


def load_ft_teacher(path: Optional[str], student: ImageClassifier, rec: dict) -> tuple[Optional[nn.Module], dict]:
    """The fine-tunes' teacher: a frozen LiteDA model behind its own input normalisation, or None (the
    uncompressed student)."""
    if not path:
        return None, {"ckpt": None, "what": "the uncompressed student (self-distillation)"}
    from ..distill import load_teachers

    ensemble, infos = load_teachers([path], rec["num_classes"], student.mean, student.std, flag="--ft-teacher-ckpt")
    return ensemble, infos[0]


def main(argv: Optional[list[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    check_args(args)
    seed_everything(args.seed)
    torch.set_num_threads(int(os.environ.get("LITEDA_THREADS", torch.get_num_threads())))  # as runner.py
    ckpt = Path(args.ckpt)
    teacher, rec, run_dir, prior_ops = load_input(ckpt)
    check_checkpoint(rec, args.ckpt)
    ft_teacher, ft_teacher_info = load_ft_teacher(args.ft_teacher_ckpt, teacher, rec)
    out = Path(args.out) if args.out else run_dir / "compress"
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(args, run_dir, rec)
    size, resize = rec["crop_size"], input_resize(args, rec)
    if args.resolution is not None:
        check_resolution(args.resolution, size)
    teacher.eval()
    before = describe(teacher, data, size, ckpt, args.latency_runs, args.latency_threads)
    print(f"uncompressed: {before['params']:,} params | {before['file_mb']:.2f} MB | "
          f"target-test acc {before['target_test']['acc']:.2f}", flush=True)

    stages = Stages(args, teacher, data, out, size, resize, lambda r, c: build_data(args, run_dir, rec, r, c),
                    ft_teacher)
    if args.resolution is not None and args.resolution != size:
        stages.resolution(args.resolution)
    if args.activation:
        stages.activation(args.activation)
    if args.attention:
        stages.attention(args.attention)
    if args.prune is not None:
        stages.prune()
    if args.lowrank_energy is not None or args.lowrank_ratio is not None:
        stages.lowrank()
    if args.quantize != "none":
        stages.quantize(args.quantize)
    model = stages.student.eval()

    size = stages.input_size  # the student's own, after a resolution stage
    base = {**rec, "crop_size": size, "resize_size": stages.resize}
    save_compressed(model, base, prior_ops + stages.ops, out / "compressed.pt", stages.float_model)
    ts_ok = save_torchscript(model, size, out / "compressed.ts")
    reloaded, _ = load_compressed(out / "compressed.pt")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        reload_diff = float((reloaded(x) - model(x)).abs().max())
    after = describe(model, stages.data, size, out / "compressed.pt", args.latency_runs, args.latency_threads,
                     stages.float_model)
    results = {
        "schema": "liteda.compress/1", "ckpt": str(ckpt), "run": str(run_dir), "task": f"{args.source}2{args.target}",
        "dataset": args.data,
        "techniques": [op["op"] if op["op"] != "quantize" else f"quantize:{op['kind']}" for op in prior_ops + stages.ops],
        "before": before, "after": after,
        "delta_acc": after["target_test"]["acc"] - before["target_test"]["acc"],
        "stages": stages.report, "finetune_config": vars(stages.ft), "finetune_teacher": ft_teacher_info,
        "reload_max_abs_diff": reload_diff,
        "artifacts": {"compressed.pt": file_size_mb(out / "compressed.pt"),
                      **({"compressed.ts": file_size_mb(out / "compressed.ts")} if ts_ok else {})},
        "label_use": "target labels: target-test evaluation only (no calibration, fine-tuning or selection)",
        "machine": machine_info(), "command": " ".join(["compress.py"] + (argv if argv is not None else sys.argv[1:])),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "results.json", results)
    print(f"compressed: {after['params']:,} params | {after['file_mb']:.2f} MB | target-test acc "
          f"{after['target_test']['acc']:.2f} ({results['delta_acc']:+.2f}) | {out / 'results.json'}")
    return results


def cli() -> None:
    sys.exit(run_cli(main))
