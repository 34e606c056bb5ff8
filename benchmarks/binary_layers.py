"""Binary (XNOR-Net) pointwise convolutions on the demo: what do 1-bit layers cost in accuracy, and what do they
save in size and operations?

    LITEDA_THREADS=1 python benchmarks/binary_layers.py --runs runs --out benchmarks/results/binary

For every finished demo student (``<runs>/Digits/S2M/kd/seed<k>``, as ``liteda demo`` leaves it) it compresses the
student with the ``binary`` recipe, the same with XNOR-Net's activation scale K, and ``binary-int8`` (each into
the sibling run folder the grid would use; a finished run of the same command is reused), then loads every model
file (the float student, the demo's ``1mb`` run when present, the binary runs), runs it on the target-test images
in PyTorch and, exported to ONNX, in ONNX Runtime, and writes ``<out>/binary_demo.{json,md}``: accuracy, file size,
packed size (binary weights at 1 bit), parameters, non-binary MACs, BOPs and equivalent MACs (BOPs / 64).

PyTorch and ONNX Runtime run the binary layers as float ops on ±1 values: this measures accuracy and counts, not
the speed of a binary runtime.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from liteda.classifier import load_classifier
from liteda.compress import load_compressed
from liteda.compress.binary import binary_measures
from liteda.compress.cli import main as compress_main
from liteda.compress.measure import evaluate, state_dict_mb
from liteda.compress.pipeline import build_data
from liteda.deploy.onnx import export_onnx, onnx_logits
from liteda.metrics import count_flops, file_size_mb
from liteda.record import FILENAME, read_record
from liteda.settings import apply_threads, cache_dir
from liteda.tables import to_markdown
from liteda.utils import atomic_write_text, machine_info, read_json, write_json

TASK = ("Digits", "S2M")
# (run folder name, flags after --run); row labels are the runs' own (the recipes' unless --label)
VARIANTS = [
    ("binary", ["--recipe", "binary"]),
    ("binary-k", ["--recipe", "binary", "--binary-act-scale", "k", "--label",
                  "student with binary pointwise convs (blocks 9-11), XNOR-Net K"]),
    ("binary-int8", ["--recipe", "binary-int8"]),
]
COMPRESS_FLAGS = ["--no-progress", "--latency-runs", "5"]


def compress(kd: Path, name: str, flags: list[str], seed: int) -> Path:
    """The compressed run of ``kd`` by ``flags`` in ``<task>/<name>/seed<k>``, reused when finished by the same
    command."""
    out = kd.parent.parent / name / kd.name
    argv = ["--run", str(kd), *flags, "--out", str(out), "--seed", str(seed), *COMPRESS_FLAGS]
    done = (out / FILENAME).is_file() and (out / "results.json").is_file()
    if done and read_json(out / "results.json").get("command") == " ".join(["liteda compress", *argv]):
        print(f"[binary_layers] reusing {out}", flush=True)
    else:
        compress_main(argv)
    return out


def load_model(run: Path) -> tuple[torch.nn.Module, torch.nn.Module, Path]:
    """(model, its float structure, file) of a training or compression run: FlopCounterMode does not see
    quantized kernels, and the binary layers are found in the float structure."""
    rec = read_record(run)
    if rec.kind == "compress":
        file = rec.path(run, "compressed")
        model, crec = load_compressed(file)
        quantized = any(op["op"] == "quantize" for op in crec["ops"])
        return model, float_structure(crec) if quantized else model, file
    file = rec.path(run, "model")
    model = load_classifier(file)[0]
    return model, model, file


def float_structure(crec: dict) -> torch.nn.Module:
    """The float module a quantized record was converted from (structure only: counts need no weights)."""
    from liteda.classifier import empty_classifier
    from liteda.compress.model_file import resize_to
    from liteda.compress.registry import TECHNIQUES

    model = empty_classifier(crec["base"])
    for op in crec["ops"]:
        if op["op"] != "quantize":
            model = TECHNIQUES.get(op["op"]).rebuild(model, op, crec["base"])
    resize_to(model, crec["attributes"], crec["shapes"])
    return model.eval()


@torch.no_grad()
def measure(run: Path, label: str, images: torch.Tensor, labels: torch.Tensor, data, num_classes: int,
            crop: int, onnx_dir: Path) -> dict:
    model, structure, file = load_model(run)
    model.eval()
    macs = count_flops(structure, crop)["macs"]
    sd_mb = state_dict_mb(model)
    binary = binary_measures(structure, crop, macs, sd_mb).get("binary", {})
    torch_eval = evaluate(model, data.target_test, num_classes)
    onnx_path = onnx_dir / f"{run.parent.name}_{run.name}.onnx"
    check = export_onnx(model, onnx_path, crop, check_images=images)
    ort_logits = np.concatenate([onnx_logits(onnx_path, images[i:i + 64].numpy()) for i in range(0, len(images), 64)])
    return {
        "run": str(run), "label": label, "file": str(file), "file_mb": file_size_mb(file),
        "packed_mb": binary.get("packed_mb", file_size_mb(file)), "state_dict_mb": sd_mb,
        "params": sum(p.numel() for p in structure.parameters()),
        "macs": macs, "bops": binary.get("bops", 0), "non_binary_macs": binary.get("float_macs", macs),
        "equivalent_macs": binary.get("equivalent_macs", macs), "binary": binary,
        "target_test_acc_torch": torch_eval["acc"],
        "target_test_acc_ort": float((ort_logits.argmax(1) == labels.numpy()).mean() * 100),
        "ort_top1_agree_vs_torch": check["top1_agree_vs_torch"],
        "ort_max_abs_diff_vs_torch": check["max_abs_diff_vs_torch"],
        "onnx_mb": check["size_mb"],
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs", help="a runs tree with finished demo runs (liteda demo)")
    p.add_argument("--out", default="benchmarks/results/binary")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="default: every finished demo student")
    a = p.parse_args(argv)
    apply_threads()
    task_dir = Path(a.runs).joinpath(*TASK)
    kds = sorted(d for d in task_dir.glob("kd/seed*") if (d / FILENAME).is_file()
                 and (a.seeds is None or int(d.name[4:]) in a.seeds))
    if not kds:
        sys.exit(f"no finished distilled student under {task_dir}/kd: run `liteda demo` first")
    out = Path(a.out)
    rows: list[dict] = []
    for kd in kds:
        seed = int(kd.name[4:])
        runs = [(kd, read_record(kd).label)]
        if (task_dir / "1mb" / kd.name / FILENAME).is_file():
            runs.append((task_dir / "1mb" / kd.name, read_record(task_dir / "1mb" / kd.name).label))
        for name, flags in VARIANTS:
            run = compress(kd, name, flags, seed)
            runs.append((run, read_record(run).label))
        rec = read_record(kd)
        num_classes = len(rec.dataset.classes)
        data = build_data(rec, kd, num_classes, 64, cache_dir(), progress=False)
        images = torch.cat([x for x, _ in data.target_test])  # test transform: no randomness
        labels = torch.cat([y for _, y in data.target_test])
        with tempfile.TemporaryDirectory() as tmp:
            for run, label in runs:
                row = measure(run, label, images, labels, data, num_classes, rec.transform.crop, Path(tmp))
                rows.append({"seed": seed, "target_test_images": len(labels), "crop": rec.transform.crop, **row})
                print(f"[binary_layers] seed {seed} {label}: acc {row['target_test_acc_torch']:.1f} "
                      f"(ORT {row['target_test_acc_ort']:.1f}) | packed {row['packed_mb']:.3f} MB", flush=True)
    info = machine_info()
    doc = {"schema": "liteda.binary_layers/1", "task": "/".join(TASK), "rows": rows, "machine": info,
           "threads": torch.get_num_threads(),
           "command": "python benchmarks/binary_layers.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_json(out / "binary_demo.json", doc)
    header = ["seed", "model", "acc % (PyTorch)", "acc % (ORT)", "ORT top-1 = PyTorch %", "file MB",
              "packed MB", "params", "non-binary MACs", "BOPs", "equivalent MACs"]
    body = [[str(r["seed"]), r["label"], f"{r['target_test_acc_torch']:.1f}", f"{r['target_test_acc_ort']:.1f}",
             f"{r['ort_top1_agree_vs_torch']:.1f}", f"{r['file_mb']:.3f}", f"{r['packed_mb']:.3f}",
             f"{r['params']:,}", f"{r['non_binary_macs']:,}", f"{r['bops']:,}", f"{r['equivalent_macs']:,.0f}"]
            for r in rows]
    table = to_markdown(header, body)
    n_test = rows[0]["target_test_images"]
    machine = f"{info['cpu_count']}-core {info['cpu']} CPU, {torch.get_num_threads()} thread" + \
        ("s" if torch.get_num_threads() != 1 else "")
    atomic_write_text(out / "binary_demo.md", "\n".join([
        "# Binary pointwise convolutions on the demo", "",
        f"Digits S→M (the embedded demo task, {rows[0]['crop']} px, {n_test} target-test images: one image is "
        f"{100 / n_test:.2f} points), the distilled demo student and its compressions. Machine: {machine}, torch {info['torch']}, ONNX Runtime "
        f"{info.get('onnxruntime')}. Regenerate: `LITEDA_THREADS=1 {doc['command']}` after `liteda demo`.", "",
        "- accuracy: target-test, by running the model file (PyTorch) and its ONNX export (ONNX Runtime, CPU);",
        "- file MB: the saved model (a binary layer keeps its latent float32 weights there); packed MB: the same "
        "with each binary layer's weights at 1 bit plus a float32 α per output channel (what a binary runtime "
        "stores);",
        "- MACs of the `1mb` and `binary-int8` rows are INT8 except in the binary layers; BOPs: binary "
        "multiply-accumulates (XNOR + popcount); equivalent MACs = non-binary MACs + BOPs / 64;",
        "- PyTorch and ONNX Runtime run the binary layers as float ops on ±1 values: no speed is measured here.",
        "", table]))
    print(table)


if __name__ == "__main__":
    main()
