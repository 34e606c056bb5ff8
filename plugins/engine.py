"""One training loop for every regime (source-only, oracle, adaptation, distillation).

Per step: a labeled batch, and when the method asks for it an unlabeled target batch; one forward over both;
``loss = CE(labeled) + trade_off * method(step)``; SGD with tllib's schedule ``lr * (1 + gamma*it) ** -decay``.
Each epoch ends with evaluation for the curves, an atomic checkpoint and a history row, so ``resume`` continues
from the last finished epoch. Under torchrun the step runs in DistributedDataParallel (docs/distributed.md):
each process trains on its share of the global batch, rank 0 evaluates and writes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import SGD
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from . import distributed
from .adaptation.base import Method, Step
from .adaptation.self_training import ConfidenceBasedSelfTrainingLoss
from .datasets import ForeverDataIterator
from .metrics import accuracy, info_max_score, predict, soft_neighborhood_density
from .utils import atomic_torch_save, atomic_write_text, fail


@dataclass
class TrainConfig:
    epochs: int = 20
    iters_per_epoch: int = 500
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_gamma: float = 0.001
    lr_decay: float = 0.75
    trade_off: float = 1.0
    label_smoothing: float = 0.0  # of the source cross-entropy (SDAT: a smoother source loss transfers better)
    # weight of FixMatch's self-training term on a strong view of each unlabeled image (0: none), and the
    # confidence a weak-view prediction needs to become its pseudo-label
    self_training: float = 0.0
    self_training_threshold: float = 0.95
    amp: str = "none"  # "bf16": torch.autocast on CPU / GPU; "fp16": autocast + GradScaler, GPU only
    channels_last: bool = False
    # which epoch's weights are the result: "last", or "im" (the highest IM score on the unlabeled target-train
    # images, read at every epoch's end; no target label)
    select: str = "last"
    print_freq: int = 0  # 0: a tqdm bar per epoch
    device: str = "cpu"
    progress: bool = True
    # settings that define the run beyond the optimiser's (arch, batch, crop, ...): a resume must share them
    run_settings: dict = field(default_factory=dict)


def autocast_for(device: str, amp: str) -> torch.autocast:
    """``--amp``: none, bf16 (CPU or GPU) or fp16 (GPU, with the Trainer's GradScaler)."""
    device_type = device.split(":")[0]
    if amp in ("bf16", "fp16"):
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return torch.autocast(device_type=device_type, enabled=False)


def lr_lambda(gamma: float, decay: float) -> Callable[[int], float]:
    """tllib's inverse-decay schedule as a multiplier of each group's initial lr."""
    return lambda it: (1.0 + gamma * it) ** (-decay)


def iterations_per_epoch(n_source: int, n_target: int, batch_size: int) -> int:
    """PROTOCOL.md: ceil(max(|source-train|, |target-train|) / batch)."""
    return max(1, math.ceil(max(n_source, n_target) / batch_size))


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)] + [",".join(_fmt(r.get(k)) for k in keys) for r in self.rows]
        atomic_write_text(path, "\n".join(lines) + "\n")


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


class StepLoss(nn.Module):
    """One training step from images to the loss, the model and the method as one module: what data parallelism
    wraps, so that the method's own parameters (discriminators, adversarial heads) are averaged with the model's."""

    def __init__(self, model: nn.Module, method: Method, trade_off: float, label_smoothing: float = 0.0,
                 self_training: float = 0.0, self_training_threshold: float = 0.95):
        super().__init__()
        self.model, self.method, self.trade_off, self.label_smoothing = model, method, trade_off, label_smoothing
        self.self_training_weight = self_training
        self.self_training = ConfidenceBasedSelfTrainingLoss(self_training_threshold) if self_training else None

    def forward(self, x_s: torch.Tensor, labels_s: torch.Tensor, x_t: Optional[torch.Tensor],
                idx_t: Optional[torch.Tensor], iteration: int, total_iters: int,
                x_t_strong: Optional[torch.Tensor] = None):
        # one forward over every view, so BatchNorm sees them together (as FixMatch trains)
        x = torch.cat([v for v in (x_s, x_t, x_t_strong) if v is not None])
        logits, f = self.model(x)
        logits, f = logits.float(), f.float()
        n, m = len(x_s), len(x_s) + (len(x_t) if x_t is not None else 0)
        step = Step(x_s, labels_s, logits[:n], f[:n], x_t, logits[n:m] if x_t is not None else None,
                    f[n:m] if x_t is not None else None, iteration, total_iters, idx_t)
        cls_loss = (F.cross_entropy(step.logits_s, labels_s, label_smoothing=self.label_smoothing)
                    if self.method.uses_source_labels else logits.new_zeros(()))
        transfer, stats = self.method(step)
        loss = cls_loss + self.trade_off * transfer
        if x_t_strong is not None and self.self_training is not None:
            st_loss, mask, _ = self.self_training(logits[m:], step.logits_t)
            loss = loss + self.self_training_weight * st_loss
            stats = {**stats, "self_training_loss": float(st_loss.detach()), "pseudo_label_share": float(mask.mean())}
        return loss, cls_loss, transfer, stats, step.logits_s


class Trainer:
    """Trains ``model`` with ``method`` on ``labeled`` (+ ``unlabeled``) batches; evaluates ``evals`` per epoch.

    ``evals`` maps a name (``source_test``, ``target_test``) to a loader; target labels there feed the logged
    curves only, never a decision. The result is the last epoch's weights, or with ``cfg.select == "im"`` those
    of the epoch whose predictions on ``select_on`` (the unlabeled target-train images at the test transform,
    ``(image, index)`` batches) have the highest IM score: a label-free checkpoint selection.
    """

    def __init__(self, model: nn.Module, method: Method, labeled: DataLoader, unlabeled: Optional[DataLoader],
                 evals: dict[str, DataLoader], cfg: TrainConfig, run_dir: Path,
                 select_on: Optional[DataLoader] = None):
        if method.uses_target and unlabeled is None:
            fail(f"method '{method.name}' needs unlabeled target data")
        if cfg.select not in SELECT_RULES:
            fail(f"--select must be one of {', '.join(SELECT_RULES)}, got '{cfg.select}'")
        if cfg.self_training and not method.uses_target:
            fail(f"--self-training needs unlabeled target images; method '{method.name}' trains on none")
        if cfg.select == "im" and select_on is None:
            fail("--select im needs the unlabeled target-train images")
        self.select_on = select_on
        self.best: Optional[dict] = None  # {"epoch", "score"} of the selected weights so far (--select im)
        self.model, self.method, self.cfg, self.run_dir = model, method, cfg, Path(run_dir)
        self.labeled, self.unlabeled, self.evals = labeled, unlabeled, evals
        for name in method.frozen:
            for p in getattr(model, name).parameters():
                p.requires_grad_(False)
        groups = [g for g in model.get_parameters(cfg.lr) + method.get_parameters(cfg.lr)]
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in groups]
        groups = [g for g in groups if g["params"]]
        self.optimizer = SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
        self.scheduler = LambdaLR(self.optimizer, lr_lambda(cfg.lr_gamma, cfg.lr_decay))
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
        self.history = History()
        self.start_epoch = 0
        self.resumed_from: Optional[int] = None  # the epoch a resumed run continued from
        self.train_seconds = 0.0
        self._iterators: list[Optional[ForeverDataIterator]] = []
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.step_loss = distributed.data_parallel(
            StepLoss(model, method, cfg.trade_off, cfg.label_smoothing, cfg.self_training,
                     cfg.self_training_threshold), cfg.device)

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "selected.pt"

    def save_checkpoint(self, epoch: int) -> None:
        import random

        import numpy as np

        rng_per_process = distributed.gather_objects(torch.get_rng_state())
        if not distributed.is_main():
            return
        np_state = np.random.get_state()
        atomic_torch_save({
            "epoch": epoch, "model": self.model.state_dict(), "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "history": self.history.rows, "train_seconds": self.train_seconds, "resume_key": self.resume_key(),
            "scaler": self.scaler.state_dict(), "best": self.best,
            # every random stream the next epoch reads, so that a resumed run equals an uninterrupted one
            "rng": torch.get_rng_state(), "py_rng": random.getstate(),
            "np_rng": {"key": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "iterators": [it.state_dict() if it is not None else None for it in self._iterators],
            # each process's own augmentation stream (rank order): an exact resume on as many processes
            **({"rng_per_process": rng_per_process} if len(rng_per_process) > 1 else {}),
        }, self.ckpt_path)

    def load_checkpoint(self) -> bool:
        import random

        import numpy as np

        ck = distributed.on_main(self._read_checkpoint)  # rank 0's copy, whatever the other nodes' disks hold
        if ck is None:
            return False
        self.model.load_state_dict(ck["model"])
        self.method.load_state_dict(ck["method"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.history.rows = list(ck["history"])
        self.best = ck.get("best")
        self.train_seconds = float(ck["train_seconds"])
        for it, state in zip(self._iterators, ck.get("iterators", [])):
            if it is not None:
                it.load_state_dict(state)
        rng_per_process = ck.get("rng_per_process")
        if rng_per_process is not None and len(rng_per_process) == distributed.world_size():
            torch.set_rng_state(rng_per_process[distributed.rank()])
        else:  # written by another number of processes: the streams are split anew from rank 0's
            torch.set_rng_state(ck["rng"])
            distributed.split_rng()
        if "py_rng" in ck:
            random.setstate(_as_tuple(ck["py_rng"]))
        if "np_rng" in ck:
            r = ck["np_rng"]
            np.random.set_state(("MT19937", r["key"].numpy().astype("uint32"), r["pos"], r["has_gauss"], r["gauss"]))
        self.start_epoch = int(ck["epoch"]) + 1
        self.resumed_from = self.start_epoch
        return True

    def _read_checkpoint(self) -> Optional[dict]:
        """The checkpoint, checked against this command's settings; None when there is none."""
        if not self.ckpt_path.is_file():
            return None
        try:
            ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            fail(f"checkpoint '{self.ckpt_path}' cannot be read: {str(e).splitlines()[0][:120]}")
        saved, now = ck.get("resume_key", {}), self.resume_key()
        if not isinstance(saved, dict):
            fail(f"checkpoint '{self.ckpt_path}' was written by another version of LiteDA; use another --log or delete it")
        diff = next((k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)), None)
        if diff is not None:
            fail(f"checkpoint '{self.ckpt_path}' was made with {diff}={saved.get(diff)}, this command has "
                 f"{diff}={now.get(diff)}; resume with the same settings, or use another --log")
        if int(ck["epoch"]) + 1 > self.cfg.epochs:
            fail(f"--epochs {self.cfg.epochs} is fewer than the {int(ck['epoch']) + 1} epochs checkpoint "
                 f"'{self.ckpt_path}' has trained; give --epochs >= {int(ck['epoch']) + 1} or use another --log")
        return ck

    def resume_key(self) -> dict:
        """Settings a resumed run must share with its checkpoint (--epochs may grow: training continues)."""
        c = self.cfg
        key = {"method": self.method.name, "iters_per_epoch": c.iters_per_epoch, "lr": c.lr, "wd": c.weight_decay,
               "lr_gamma": c.lr_gamma, "lr_decay": c.lr_decay, "trade_off": c.trade_off, "amp": c.amp,
               **({"label_smoothing": c.label_smoothing} if c.label_smoothing else {}),
               **({"self_training": f"{c.self_training:g}@{c.self_training_threshold:g}"} if c.self_training else {}),
               **{k: str(v) for k, v in c.run_settings.items()}}
        extra = self.method.resume_fields()
        return {**key, "method_settings": extra} if extra else key

    # ------------------------------------------------------------------ training
    def _autocast(self):
        return autocast_for(self.cfg.device, self.cfg.amp)

    def _to(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.cfg.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last and x.dim() == 4 else x

    def train_step(self, it_l: ForeverDataIterator, it_u: Optional[ForeverDataIterator], iteration: int,
                   total_iters: int) -> dict[str, float]:
        x_s, labels_s = next(it_l)
        x_s, labels_s = self._to(x_s), labels_s.to(self.cfg.device)
        x_t = idx_t = x_t_strong = None
        if self.method.uses_target:
            x_t, idx_t = next(it_u)  # unlabeled: (image, index), no label; --self-training: (weak, strong) views
            x_t, x_t_strong = (self._to(x_t[0]), self._to(x_t[1])) if isinstance(x_t, (list, tuple)) \
                else (self._to(x_t), None)
        source_free = x_t is not None and not self.method.uses_source_labels  # SHOT: no source image in the step
        if source_free:
            x_s, labels_s = x_s[:0], labels_s[:0]
        with self._autocast():
            loss, cls_loss, transfer, stats, logits_s = self.step_loss(x_s, labels_s, x_t, idx_t, iteration,
                                                                       total_iters, x_t_strong)
        if not torch.isfinite(loss):
            fail(f"loss became {loss.item()} at iteration {iteration}; lower --lr or --trade-off")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)  # a plain optimizer.step() when the scaler is disabled
        self.scaler.update()
        if scale is None or self.scaler.get_scale() >= scale:  # fp16: a step skipped for inf gradients
            self.scheduler.step()                              # leaves the lr schedule where it was
        return {"loss": loss.item(), "cls_loss": float(cls_loss.detach()), "transfer_loss": float(transfer.detach()),
                "train_acc": accuracy(logits_s.detach(), labels_s),
                "images": sum(len(v) for v in (x_s, x_t, x_t_strong) if v is not None), **stats}

    def evaluate_epoch(self) -> dict[str, float]:
        row: dict[str, float] = {}
        for name, loader in self.evals.items():
            logits, labels = predict(self.model, loader, self.cfg.device)
            loss = float(F.cross_entropy(logits, labels))
            if not (math.isfinite(loss) and bool(torch.isfinite(logits).all())):
                # a diverged model still argmaxes to some class: stop before its numbers can be tabulated
                fail(f"the model diverged: {name} loss is {loss} after epoch {len(self.history.rows) + 1}; "
                     f"lower --lr or --trade-off (nothing was saved for this epoch)")
            row[f"{name}_acc"] = accuracy(logits, labels)
            row[f"{name}_loss"] = loss
            if name.startswith("target"):  # the unsupervised validator reads logits only
                row.update({f"{name}_{k}": v for k, v in info_max_score(logits).items()})
                row[f"{name}_snd"] = soft_neighborhood_density(logits) if len(logits) > 1 else float("nan")
        if self.select_on is not None:  # images only: the loader's second item is an index, not a label
            logits, _ = predict(self.model, self.select_on, self.cfg.device)
            row.update({f"target_train_{k}": v for k, v in info_max_score(logits).items()})
        return row

    def _keep_if_best(self, row: dict) -> None:
        """--select im: the weights of the epoch with the highest IM score on unlabeled target-train so far."""
        score = row.get("target_train_im_score")
        if self.cfg.select != "im" or score is None or (self.best is not None and score <= self.best["score"]):
            return
        self.best = {"epoch": int(row["epoch"]), "score": float(score)}
        if distributed.is_main():
            atomic_torch_save(self.model.state_dict(), self.best_path)

    def restore_selected(self) -> Optional[int]:
        """Loads the selected epoch's weights (--select im) and returns that epoch; None: the last epoch stands."""
        if self.cfg.select != "im" or self.best is None or not self.best_path.is_file():
            return None
        self.model.load_state_dict(torch.load(self.best_path, map_location="cpu", weights_only=True))
        print(f"selected epoch {self.best['epoch']}: the highest IM score on unlabeled target-train "
              f"({self.best['score']:.4f})", flush=True)
        return self.best["epoch"]

    def fit(self, resume: bool = False, on_epoch_end: Optional[Callable[[dict], None]] = None) -> History:
        it_l = ForeverDataIterator(self.labeled)
        it_u = ForeverDataIterator(self.unlabeled) if self.method.uses_target else None
        self._iterators = [it_l, it_u]
        if resume and self.load_checkpoint():
            if distributed.is_main():
                print(f"resumed from {self.ckpt_path} at epoch {self.start_epoch}")
        else:
            distributed.split_rng()
        total = self.cfg.epochs * self.cfg.iters_per_epoch
        self.model.train()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            t0, sums, images = time.perf_counter(), {}, 0
            bar = range(self.cfg.iters_per_epoch)
            if self.cfg.progress and distributed.is_main():
                from tqdm import tqdm

                bar = tqdm(bar, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False, dynamic_ncols=True)
            for i in bar:
                stats = self.train_step(it_l, it_u, epoch * self.cfg.iters_per_epoch + i, total)
                images += stats.pop("images")
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.cfg.progress and distributed.is_main() and i % 5 == 0:
                    bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['train_acc']:.1f}")
            seconds = time.perf_counter() - t0
            self.train_seconds += seconds
            sums, images = distributed.mean_over_processes(sums), distributed.sum_over_processes(images)
            row = {"epoch": epoch + 1, **{k: v / self.cfg.iters_per_epoch for k, v in sums.items()},
                   "lr": self.scheduler.get_last_lr()[0], "seconds": seconds, "images_per_s": images / seconds}
            row.update(distributed.on_main(self.evaluate_epoch))
            self.history.rows.append(row)
            self._keep_if_best(row)
            self.save_checkpoint(epoch)
            if distributed.is_main():
                self.history.write_csv(self.run_dir / "history.csv")
                print(_epoch_line(row, self.cfg.epochs), flush=True)
            if on_epoch_end:
                on_epoch_end(row)
        return self.history


SELECT_RULES = ("last", "im")


def _as_tuple(o):
    """``random.setstate`` wants the nested tuples that a checkpoint stores as lists."""
    return tuple(_as_tuple(v) for v in o) if isinstance(o, (list, tuple)) else o


def _epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.3f}", f"train acc {row['train_acc']:.1f}"]
    parts += [f"{k} {row[k]:.1f}" for k in row if k.endswith("_acc") and k != "train_acc"]
    parts += [f"{row['seconds']:.1f}s", f"{row['images_per_s']:.0f} img/s"]
    return " | ".join(parts)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
