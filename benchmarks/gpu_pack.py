"""Pack what the Office-Caltech grid needs on a lent GPU machine into one folder small enough to travel with the
working tree (the device tool carries at most 64 MiB, checkout included):

    python benchmarks/gpu_pack.py --root ../shared/datasets/office_caltech_10 --weights ../shared/weights --out .gpu_pack

- images: every domain re-encoded once at the size the decoded-image cache would make of it (256 x 256, the
  training stages' --resize-size), so the GPU run decodes what the CPU run decodes, up to one JPEG re-encoding;
- weights: the student's and the teacher's ImageNet state_dicts in float16 (they load into float32 models);
- wheels (``--wheels``): the pure-Python packages that pruning and CP/Tucker import and the GPU image lacks (the
  default grid needs neither).
Then ``bash benchmarks/gpu_grid.sh .gpu_pack OUT`` runs there (see that script). Add ``/.gpu_pack/`` to
``.git/info/exclude`` so that it travels only when a run carries it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from liteda.datasets import decode_image, _images_in
from liteda.utils import fail, run_cli

WEIGHTS = ("mobilenet_v3_small-imagenet-standin.pth", "tf_efficientnet_lite0-imagenet.pth")
# not in the GPU image's package list (docs of the device tool); pure Python, any platform
WHEELS = ("tensorly", "torch-pruning")


def pack_images(root: Path, out: Path, size: int, quality: int) -> int:
    """``root/<domain>/<class>/*`` -> ``out/<domain>/<class>/<stem>.jpg`` at ``size x size``."""
    n = 0
    for cls in sorted(c for d in root.iterdir() if d.is_dir() for c in d.iterdir() if c.is_dir()):
        dst = out / cls.relative_to(root)
        dst.mkdir(parents=True, exist_ok=True)
        for img in _images_in(cls):
            Image.fromarray(decode_image(img, size)).save(dst / (img.stem + ".jpg"), quality=quality)
            n += 1
    return n


def pack_weights(src: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in WEIGHTS:
        if not (src / name).is_file():
            fail(f"--weights: '{src / name}' does not exist")
        state = torch.load(src / name, map_location="cpu", weights_only=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(half, out / name)


def pack_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "--python-version", "3.12", "-d", str(out), *WHEELS])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="Office-Caltech-10 root (amazon/ dslr/ webcam/ caltech/)")
    p.add_argument("--weights", required=True, help="folder with " + " and ".join(WEIGHTS))
    p.add_argument("--out", default=".gpu_pack")
    p.add_argument("--size", type=int, default=256, help="the training stages' --resize-size")
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--wheels", action="store_true", help="also " + ", ".join(WHEELS) + " for Python 3.12")
    p.add_argument("--limit-mb", type=float, default=44.0, help="fail above this (64 MiB minus the checkout)")
    a = p.parse_args(argv)
    root, out = Path(a.root), Path(a.out)
    if not root.is_dir():
        fail(f"--root '{root}' is not a folder")
    n = pack_images(root, out / "office_caltech_10", a.size, a.quality)
    pack_weights(Path(a.weights), out / "weights")
    if a.wheels:
        pack_wheels(out / "wheels")
    mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2 ** 20
    print(f"{out}: {n} images, {len(WEIGHTS)} weight files{', wheels' if a.wheels else ''}; {mb:.1f} MiB")
    if mb > a.limit_mb:
        fail(f"--out '{out}' is {mb:.1f} MiB, above --limit-mb {a.limit_mb:g}: lower --quality")


if __name__ == "__main__":
    sys.exit(run_cli(main))
