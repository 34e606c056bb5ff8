"""Training throughput: LiteDA's loop vs a tllib-style loop on the same data, model and CPU.

    python benchmarks/train_speed.py --iters 12 --out benchmarks/results/train_speed

The reference loop is what tllib's examples do per step: PIL decode + ResizeImage(256) + RandomResizedCrop(224)
+ flip + ToTensor + Normalize in DataLoader workers (tllib's default -j 2), NCHW, one forward over the
concatenated source+target batch (DANN). LiteDA: decoded-image cache (uint8 tensors, decoded once), tensor
transforms in-process, channels_last; optionally --freeze-stages. Images/s count source + target images.
Configurations are interleaved in rounds so background load hits all of them alike.

On a GPU (``--device cuda --amp none bf16 fp16 --workers 8``) the LiteDA loop also runs once per AMP mode (fp16
with a GradScaler, as the engine does); the tllib-style loop stays FP32, as tllib's examples are.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from liteda.adaptation.dann import DANN
from liteda.classifier import build_classifier
from liteda.engine import autocast_for
from liteda.datasets import (ForeverDataIterator, TensorImageDataset, build_transform, load_images,
                              prepare_domains)
from liteda.tables import to_markdown
from liteda.settings import shared_dir
from liteda.utils import atomic_write_text, machine_info, machine_label, write_json

SHARED = shared_dir()


class PILImageList(Dataset):
    """The reference: decode and transform every image at every epoch (tllib's ImageList + torchvision)."""

    def __init__(self, root, items):
        from torchvision import transforms as T

        self.root, self.items = Path(root), items
        self.tf = T.Compose([T.Resize((256, 256)), T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        p, y = self.items[i]
        return self.tf(Image.open(self.root / p).convert("RGB")), y


def make_loaders(kind: str, a, splits):
    s, t = splits[a.source], splits[a.target]
    if kind == "tllib":
        mk = lambda items: DataLoader(PILImageList(a.root, items), batch_size=32, shuffle=True, drop_last=True,  # noqa: E731
                                      num_workers=2, persistent_workers=True)
        return mk(s.train), mk(t.train)
    tf = build_transform(True, 224)
    mk = lambda items: DataLoader(TensorImageDataset(*load_images(a.root, items, 256, a.cache_dir), tf),  # noqa: E731
                                  batch_size=32, shuffle=True, drop_last=True, num_workers=a.workers,
                                  persistent_workers=a.workers > 0, pin_memory=a.device != "cpu")
    return mk(s.train), mk(t.train)


class Config:
    def __init__(self, name, kind, method, channels_last=False, freeze=0, amp="none"):
        self.name, self.kind, self.method, self.cl, self.freeze, self.amp = name, kind, method, channels_last, freeze, amp

    def setup(self, a, splits):
        torch.manual_seed(0)
        self.device = a.device
        self.model = build_classifier("mobilenet_v3_small", 10, pretrained=a.pretrained).to(a.device)
        if self.freeze:
            self.model.backbone.freeze_stages(self.freeze)
        if self.cl:
            self.model.to(memory_format=torch.channels_last)
        self.dann = DANN(self.model, 10, argparse.Namespace(hidden_size=1024, grl_max_iters=1000), 1000) \
            if self.method == "dann" else None
        if self.dann is not None:
            self.dann.to(a.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        params = [g for g in self.model.get_parameters(0.01)] + (self.dann.get_parameters(0.01) if self.dann else [])
        params = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in params]
        self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True)
        ls, lt = make_loaders(self.kind, a, splits)
        self.it_s, self.it_t = ForeverDataIterator(ls), ForeverDataIterator(lt)
        self.model.train()

    def step(self) -> int:
        from liteda.adaptation.base import Step

        x_s, y_s = next(self.it_s)
        x_s, y_s = x_s.to(self.device, non_blocking=True), y_s.to(self.device, non_blocking=True)
        x = x_s
        if self.dann is not None:
            x_t, _ = next(self.it_t)
            x = torch.cat([x_s, x_t.to(self.device, non_blocking=True)])
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device, self.amp):
            logits, f = self.model(x)
            logits, f = logits.float(), f.float()
            n = len(x_s)
            loss = F.cross_entropy(logits[:n], y_s)
            if self.dann is not None:
                loss = loss + self.dann(Step(x_s, y_s, logits[:n], f[:n], x[n:], logits[n:], f[n:], 0, 1000))[0]
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return len(x)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(SHARED / "datasets" / "office_caltech_10"))
    p.add_argument("--pretrained", default=str(SHARED / "weights" / "mobilenet_v3_small-imagenet-standin.pth"))
    p.add_argument("-s", "--source", default="A")
    p.add_argument("-t", "--target", default="W")
    p.add_argument("--iters", type=int, default=12, help="timed steps per configuration per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache-dir", default="data/cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/train_speed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", nargs="+", default=["none"], choices=("none", "bf16", "fp16"),
                   help="AMP modes of the LiteDA loop (fp16: GPU only)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the LiteDA loop")
    a = p.parse_args()
    if a.device != "cpu" and not torch.cuda.is_available():
        sys.exit(f"error: --device {a.device}: no CUDA GPU visible")
    if "fp16" in a.amp and a.device == "cpu":
        sys.exit("error: --amp fp16 needs --device cuda")
    if not Path(a.root).is_dir():
        sys.exit(f"error: dataset root '{a.root}' does not exist")
    torch.set_num_threads(a.threads)
    splits = prepare_domains("OfficeCaltech", a.root, [a.source, a.target], Path("runs") / "OfficeCaltech" / "splits")
    configs = []
    for method in ("source_only", "dann"):
        configs.append(Config(f"tllib-style loop, {method}", "tllib", method))
        for amp in a.amp:
            tag = "" if amp == "none" else f" --amp {amp}"
            configs.append(Config(f"LiteDA loop{tag}, {method}", "liteda", method, True, 0, amp))
        configs.append(Config(f"LiteDA loop + --freeze-stages 4, {method}", "liteda", method, True, 4))
    for c in configs:
        c.setup(a, splits)
        for _ in range(3):  # warm-up: workers start, caches fill, allocator settles
            c.step()
    load_start = os.getloadavg()[0]
    rates: dict[str, list[float]] = {c.name: [] for c in configs}
    for r in range(a.rounds):
        for c in configs:
            synchronize(a.device)
            t0, n = time.perf_counter(), 0
            for _ in range(a.iters):
                n += c.step()
            synchronize(a.device)
            rates[c.name].append(n / (time.perf_counter() - t0))
            print(f"round {r + 1}: {c.name}: {rates[c.name][-1]:.1f} img/s", flush=True)
    load = (load_start, os.getloadavg()[0])  # other jobs on the machine shift all rows alike, not the ratios
    rows, doc = [], {"machine": machine_info(), "device": a.device, "amp": a.amp, "workers": a.workers,
                     "threads": a.threads, "iters": a.iters, "rounds": a.rounds,
                     "load_average_1min": load, "results": {}}
    for method in ("source_only", "dann"):
        ref = statistics.median(rates[f"tllib-style loop, {method}"])
        for c in configs:
            if c.method != method:
                continue
            v = statistics.median(rates[c.name])
            doc["results"][c.name] = {"img_per_s": v, "speedup_vs_tllib_style": v / ref, "all_rounds": rates[c.name]}
            rows.append([c.name, f"{v:.1f}", f"{v / ref:.2f}×"])
    busy = (" (other jobs were running: absolute img/s are low, ratios are the result)"
            if max(load) > 0.5 * (os.cpu_count() or 1) else "")
    where = f"{doc['machine'].get('gpu')} GPU (data pipeline on the CPU, {a.workers} LiteDA loader workers)" \
        if a.device != "cpu" else f"{a.threads} threads"
    md = (f"# Training throughput (MobileNetV3-Small, bs 32 per domain, 224 px, Office-Caltech {a.source}→{a.target})\n\n"
          f"Machine: {machine_label(doc['machine'])}, {where}; 1-min load average {load[0]:.1f} → {load[1]:.1f}"
          f"{busy}; median of {a.rounds} rounds × {a.iters} steps. "
          f"Images/s count source + target images.\nRegenerate: `python benchmarks/train_speed.py --iters {a.iters} "
          f"--rounds {a.rounds} --threads {a.threads} --out {a.out}"
          + (f" --device {a.device} --amp {' '.join(a.amp)} --workers {a.workers}" if a.device != "cpu" else "") + "`\n\n"
          + to_markdown(["loop", "images/s", "vs tllib-style"], rows))
    atomic_write_text(Path(a.out).with_suffix(".md"), md)
    write_json(Path(a.out).with_suffix(".json"), doc)
    print(md)


if __name__ == "__main__":
    main()
