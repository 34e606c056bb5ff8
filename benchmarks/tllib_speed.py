"""tllib's own DANN training loop against LiteDA's, side by side: same images, model, batch, iterations, threads.

    python benchmarks/tllib_speed.py -s W -t A --epochs 2 -i 20 --threads 1 --out benchmarks/results/tllib_speed

tllib (installed from its repository, docs/tllib.md) runs as its example ``examples/domain_adaptation/
image_classification/dann.py`` does: that file's own ``train()`` for each epoch and its ``utils.validate()`` after
it, over tllib's ``ImageList`` datasets with the example's transforms (PIL decode, ``ResizeImage(256)``,
``RandomResizedCrop(224)``, flip, in ``-j`` DataLoader workers), tllib's ``ImageClassifier``,
``DomainDiscriminator``, ``DomainAdversarialLoss``, SGD and ``LambdaLR`` schedule. Its backbone is LiteDA's
MobileNetV3-Small through the plugin hook (``liteda.interop.tllib``), so both train the same network from the same
weights. LiteDA runs ``liteda adapt -m dann`` with the same hyper-parameters (``--grl-max-iters 1000``: tllib's
reversal ramp), once as tllib trains (every layer) and once with the recommended recipe's
``--freeze-stages 4`` (the Makefile's TRAIN_ARGS). Both read the same image lists (LiteDA's held-out split: source
train, unlabeled target train, scored on target test).

Images/s count source + target images of the training iterations only (evaluation excluded), the mean over
epochs; "wall s" is the whole stage, data preparation (LiteDA's one-time decode cache) and evaluation included.
Without tllib the script says so and exits 0. Dataset: Office-Caltech-10 under LITEDA_SHARED when present, else
a generated folder dataset; weights: the MobileNetV3-Small stand-in there when present, else both from scratch.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from liteda.interop.tllib_compat import available
from liteda.settings import shared_dir, threads
from liteda.tables import to_markdown
from liteda.utils import atomic_write_text, machine_info, machine_label, write_json

SHARED = shared_dir()
DATA = SHARED / "datasets" / "office_caltech_10"
WEIGHTS = SHARED / "weights" / "mobilenet_v3_small-imagenet-standin.pth"


def generate_dataset(root: Path, classes: int = 10, per_class: int = 20, size: int = 96) -> Path:
    """Two domains of class-visible images (a bright patch per class, a colour cast per domain)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for d, dom in enumerate(("src", "tgt")):
        for c in range(classes):
            folder = root / dom / f"class{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                img = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
                img[..., d % 3] += 80
                y, x = divmod(c, 4)
                img[y * 24:(y + 1) * 24, x * 24:(x + 1) * 24] = 230
                Image.fromarray(img).save(folder / f"{k:03d}.png")
    return root


# ----------------------------------------------------------------------------- tllib: its example, its modules
def run_tllib(a, lists: dict[str, Path], classes: list[str]) -> dict:
    import liteda.interop.tllib as hook  # LiteDA's backbones in tllib's lookup (and the import shims)
    from liteda.interop.tllib_example import script_folder

    example = Path(hook.tllib.__file__).resolve().parents[1] / "examples" / "domain_adaptation" / "image_classification"
    if not (example / "dann.py").is_file():
        sys.exit(f"error: tllib at '{example.parents[2]}' has no examples/ folder (install it from its repository)")
    with script_folder(example):  # the example's modules, imported as the example imports them
        import dann  # tllib's example: its train() is the loop measured
        import utils
    from tllib.alignment.dann import DomainAdversarialLoss, ImageClassifier
    from tllib.modules.domain_discriminator import DomainDiscriminator
    from tllib.utils.data import ForeverDataIterator
    from tllib.vision.datasets.imagelist import ImageList
    from torch.optim import SGD
    from torch.optim.lr_scheduler import LambdaLR
    from torch.utils.data import DataLoader

    t_start = time.perf_counter()
    if a.pretrained:
        hook.register_backbones({"mobilenet_v3_small": a.pretrained})
    # dann.main(args), step for step
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    train_tf = utils.get_train_transform("default")
    val_tf = utils.get_val_transform("default")
    mk = lambda name, tf: ImageList(a.root, classes, str(lists[name]), transform=tf)  # noqa: E731
    src, tgt, test = mk("source_train", train_tf), mk("target_train", train_tf), mk("target_test", val_tf)
    src_loader = DataLoader(src, batch_size=a.batch_size, shuffle=True, num_workers=a.tllib_workers, drop_last=True)
    tgt_loader = DataLoader(tgt, batch_size=a.batch_size, shuffle=True, num_workers=a.tllib_workers, drop_last=True)
    test_loader = DataLoader(test, batch_size=a.batch_size, shuffle=False, num_workers=a.tllib_workers)
    src_iter, tgt_iter = ForeverDataIterator(src_loader), ForeverDataIterator(tgt_loader)
    backbone = utils.get_model("mobilenet_v3_small", pretrain=bool(a.pretrained))
    classifier = ImageClassifier(backbone, len(classes), bottleneck_dim=256, pool_layer=None,
                                 finetune=bool(a.pretrained))
    domain_discri = DomainDiscriminator(in_feature=classifier.features_dim, hidden_size=1024)
    optimizer = SGD(classifier.get_parameters() + domain_discri.get_parameters(), a.lr, momentum=0.9,
                    weight_decay=1e-3, nesterov=True)
    lr_scheduler = LambdaLR(optimizer, lambda x: a.lr * (1. + 0.001 * float(x)) ** (-0.75))
    domain_adv = DomainAdversarialLoss(domain_discri)
    args = argparse.Namespace(iters_per_epoch=a.iters_per_epoch, print_freq=a.iters_per_epoch, trade_off=1.0,
                              per_class_eval=False, class_names=classes)
    epochs = []
    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        dann.train(src_iter, tgt_iter, classifier, domain_adv, optimizer, lr_scheduler, epoch, args)
        seconds = time.perf_counter() - t0
        acc = utils.validate(test_loader, classifier, args, dann.device)
        epochs.append({"epoch": epoch + 1, "seconds": seconds,
                       "images_per_s": a.iters_per_epoch * 2 * a.batch_size / seconds, "target_test_acc": acc})
    return {"epochs": epochs, "wall_s": time.perf_counter() - t_start, "workers": a.tllib_workers}


# ----------------------------------------------------------------------------- LiteDA: liteda adapt -m dann
def run_liteda(a, dataset: str, out: Path, extra: list[str], lists: dict[str, Path]) -> dict:
    from liteda.runner import main as adapt

    shutil.rmtree(out, ignore_errors=True)
    t_start = time.perf_counter()
    weights = ["--pretrained", str(a.pretrained)] if a.pretrained else ["--scratch"]
    adapt("dann", "adapt", [str(a.root), "-d", dataset, "-s", a.source, "-t", a.target, *weights,
                            "-b", str(a.batch_size), "--epochs", str(a.epochs), "-i", str(a.iters_per_epoch),
                            "--lr", str(a.lr), "--grl-max-iters", "1000", "--seed", str(a.seed), "--no-progress",
                            "--log", str(out), "--runs-root", str(out.parent / "runs"), "--cache-dir", a.cache_dir,
                            *extra])
    for path in lists.values():  # the images tllib trained and was scored on
        if (out / "splits" / path.name).read_text() != path.read_text():
            sys.exit(f"error: LiteDA's split '{out / 'splits' / path.name}' differs from tllib's '{path}'")
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    epochs = [{"epoch": int(r["epoch"]), "seconds": float(r["seconds"]), "images_per_s": float(r["images_per_s"]),
               "target_test_acc": float(r["target_test_acc"])} for r in rows]
    return {"epochs": epochs, "wall_s": time.perf_counter() - t_start, "workers": 0, "flags": extra}


def summary(run: dict) -> dict:
    return {"images_per_s": statistics.mean(e["images_per_s"] for e in run["epochs"]),
            "last_epoch_target_acc": run["epochs"][-1]["target_test_acc"], **run}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DATA) if DATA.is_dir() else None,
                   help="Office-Caltech-10 folder (default: LITEDA_SHARED's; none: a generated dataset)")
    p.add_argument("--generated", action="store_true", help="a generated dataset even when --root has a default")
    p.add_argument("--pretrained", default=str(WEIGHTS) if WEIGHTS.is_file() else None,
                   help="MobileNetV3-Small state_dict for both (default: LITEDA_SHARED's stand-in; none: scratch)")
    p.add_argument("-s", "--source", default="W")
    p.add_argument("-t", "--target", default="A")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("-i", "--iters-per-epoch", type=int, default=20)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of both loops")
    p.add_argument("--tllib-workers", type=int, default=2, help="tllib's DataLoader workers (its example's -j)")
    p.add_argument("--cache-dir", default="data/cache")
    p.add_argument("--work", default="runs/tllib_speed", help="scratch folder (image lists, LiteDA's run folders)")
    p.add_argument("--out", default="benchmarks/results/tllib_speed")
    a = p.parse_args()
    if not available():
        print("tllib is not installed: nothing to compare (docs/tllib.md says how to install it)")
        return
    if threads() not in (None, a.threads):
        sys.exit(f"error: LITEDA_THREADS={threads()} differs from --threads {a.threads}; unset it or make them equal")
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    dataset = "OfficeCaltech"
    if a.root is None or a.generated:
        a.root, dataset, a.source, a.target = str(generate_dataset(work / "data")), "Custom", "src", "tgt"
    from liteda.datasets import prepare_domains

    splits = prepare_domains(dataset, a.root, [a.source, a.target], work / "splits")
    s, t = splits[a.source], splits[a.target]
    lists = {"source_train": work / "splits" / f"{s.letter}_train.txt",
             "target_train": work / "splits" / f"{t.letter}_train.txt",
             "target_test": work / "splits" / f"{t.letter}_test.txt"}
    load = [os.getloadavg()[0]]
    runs = {"tllib dann.py (its train loop, ImageList, every layer trained)": run_tllib(a, lists, s.classes)}
    load.append(os.getloadavg()[0])
    runs["LiteDA adapt -m dann (every layer trained)"] = run_liteda(a, dataset, work / "liteda_full", [], lists)
    load.append(os.getloadavg()[0])
    runs["LiteDA adapt -m dann --freeze-stages 4 (recommended recipe)"] = run_liteda(
        a, dataset, work / "liteda_freeze4", ["--freeze-stages", "4"], lists)
    load.append(os.getloadavg()[0])

    results = {name: summary(r) for name, r in runs.items()}
    ref = next(iter(results.values()))
    for r in results.values():
        r["speedup_vs_tllib"] = r["images_per_s"] / ref["images_per_s"]
        r["acc_vs_tllib_points"] = r["last_epoch_target_acc"] - ref["last_epoch_target_acc"]
    task = f"{s.letter}→{t.letter}"
    import tllib

    doc = {"machine": {**machine_info(), "tllib": tllib.__version__}, "threads": a.threads, "dataset": dataset, "root": a.root, "task": task,
           "n_source_train": len(s.train), "n_target_train": len(t.train), "n_target_test": len(t.test),
           "weights": a.pretrained or "scratch", "batch_size": a.batch_size, "epochs": a.epochs,
           "iters_per_epoch": a.iters_per_epoch, "lr": a.lr, "seed": a.seed, "load_average_1min": load,
           "results": results}
    rows = [[name, f"{r['images_per_s']:.1f}", f"{r['speedup_vs_tllib']:.2f}×", f"{r['last_epoch_target_acc']:.1f}",
             f"{r['acc_vs_tllib_points']:+.1f}", f"{r['wall_s']:.0f}"] for name, r in results.items()]
    weights = "LITEDA_SHARED's stand-in ImageNet weights" if a.pretrained else "scratch"
    regenerate = " ".join(["python benchmarks/tllib_speed.py", *(["--generated"] if a.generated else []),
                           *([] if a.pretrained else ["--pretrained ''"]), "-s", a.source, "-t", a.target,
                           "--epochs", str(a.epochs), "-i", str(a.iters_per_epoch), "-b", str(a.batch_size),
                           "--threads", str(a.threads), "--tllib-workers", str(a.tllib_workers), "--out", a.out])
    busy = (" Other jobs were running (load above the core count): absolute images/s are low, the ratio is the "
            "result." if max(load) > (os.cpu_count() or 1) else "")
    md = (f"# tllib's DANN loop vs LiteDA's (MobileNetV3-Small, {dataset} {task})\n\n"
          f"Machine: {machine_label(doc['machine'])}, tllib {tllib.__version__}, {a.threads} torch thread(s) in both "
          f"loops, tllib's DataLoader "
          f"workers: {a.tllib_workers}, LiteDA's: 0. 1-min load average {' → '.join(f'{x:.1f}' for x in load)}.{busy}\n"
          f"Same image lists (held-out split: {len(s.train)} source-train, {len(t.train)} unlabeled target-train, "
          f"scored on {len(t.test)} target-test images), same MobileNetV3-Small ({weights}), batch {a.batch_size} "
          f"per domain, {a.epochs} epochs × {a.iters_per_epoch} iterations, lr {a.lr}, one seed ({a.seed}). Images/s: "
          f"source + target images per second of training (mean over epochs); accuracy: target-test after the "
          f"last epoch; wall: the whole stage.\n"
          f"Regenerate: `{regenerate}`\n\n"
          + to_markdown(["loop", "images/s", "vs tllib", "target acc %", "vs tllib (points)", "wall s"], rows))
    write_json(Path(a.out).with_suffix(".json"), doc)
    atomic_write_text(Path(a.out).with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
