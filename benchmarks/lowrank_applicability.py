"""Where CP and Tucker decompositions can apply: the dense k x k convolutions (k > 1, one group) of each
architecture LiteDA trains, and their share of the network's multiply-accumulates at 224 px.

    python benchmarks/lowrank_applicability.py --out benchmarks/results/lowrank_applicability

Tucker-2 and CP factorise a dense k x k kernel; depthwise (one group per channel) and 1 x 1 convolutions have
nothing for them to factorise beyond what an SVD of the 1 x 1 matrix already does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from liteda.backbones import create_backbone
from liteda.tables import write_table
from liteda.utils import atomic_write_text, machine_info, run_cli, write_json

ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large", "tf_efficientnet_lite0")


def conv_macs(model: nn.Module, size: int = 224) -> list[dict]:
    """Every Conv2d with its kind and MACs, from one forward pass (output size x kernel work per output)."""
    rows: list[dict] = []

    def hook(mod: nn.Conv2d, _inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs = out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k
        kind = ("dense k×k" if mod.groups == 1 and k > 1 else "depthwise" if mod.groups == mod.in_channels > 1
                else "1×1" if k == 1 else "grouped")
        rows.append({"name": names[mod], "kind": kind, "shape": f"{mod.in_channels}→{mod.out_channels} "
                     f"{mod.kernel_size[0]}×{mod.kernel_size[1]}", "macs": macs})

    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return rows


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--out", required=True, help="path stem of the .md/.csv/.json written")
    a = p.parse_args(argv)
    header = ["Architecture", "convs", "dense k×k convs", "which", "dense k×k share of conv MACs"]
    body, detail = [], {}
    for arch in a.archs:
        backbone = create_backbone(arch, pretrained=False)
        rows = conv_macs(backbone)
        dense = [r for r in rows if r["kind"] == "dense k×k"]
        total = sum(r["macs"] for r in rows)
        body.append([arch, str(len(rows)), str(len(dense)), "; ".join(f"{r['name']} ({r['shape']})" for r in dense)
                     or "–", f"{100 * sum(r['macs'] for r in dense) / total:.1f} %"])
        detail[arch] = rows
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    md = write_table(a.out, header, body)
    cmd = f"python benchmarks/lowrank_applicability.py --out {a.out}"
    write_json(f"{a.out}.json", {"command": cmd, "machine": machine_info(), "convs": detail})
    atomic_write_text(f"{a.out}.md", "# Where CP / Tucker can apply\n\nRegenerate: `" + cmd + "` (architecture "
                      "only, no weights or data; 224 px input).\n\n" + md + "\n")
    print(md)
    return detail


if __name__ == "__main__":
    sys.exit(run_cli(main))
