"""Choose the artifact to deploy without target labels, and write it where a user looks for it.

The rule: among the benchmarked artifacts whose top-1 agreement with the run's model on unlabeled target-train
images is at least ``min_agreement`` %, the one with the lowest batch-1 p50 latency (ties: registry order).
Target-test labels and accuracy are never read here: the test split stays a measurement.

Written into the deploy folder:
    recommended.json        the choice, why, the rule and every candidate with its agreement and latency
    recommended.<ext>       a copy of the chosen artifact's file (.onnx, .xml + .bin, .pt2, .pt, .engine)
    recommended_example.py  loads that file with its runtime and classifies one image
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ..record import relative
from ..utils import atomic_write_bytes, atomic_write_text, write_json
from .artifact import DeployContext, companion_files

SCHEMA = "liteda.deploy_recommended/1"
CHOICE, EXAMPLE, STEM = "recommended.json", "recommended_example.py", "recommended"


IMAGES = {"target-train": "unlabeled target-train images",
          "target-holdout": "unlabeled target-train images the compression set aside (never fitted)"}


RUN_MODEL = "the run's model"


def rule_text(min_agreement: float, split: str = "target-train", reference: str = RUN_MODEL) -> str:
    return (f"the lowest bs1 p50 latency among the artifacts whose top-1 agreement with {reference} on "
            f"{IMAGES.get(split, split)} is at least {min_agreement:g}% (no target label is read)")


def recommend(rows: Sequence[dict], min_agreement: float, images: Optional[dict] = None,
              reference: str = RUN_MODEL) -> dict[str, Any]:
    """The choice from benchmark rows (``name``, ``p50_ms``, ``agree_unlabeled``; nothing else is read).

    ``images``: what the agreement was measured on (split, count), copied into the result; ``reference``: the
    model ``agree_unlabeled`` was measured against, as the rule names it."""
    candidates = []
    for r in rows:
        c = {k: r.get(k) for k in ("name", "runtime", "precision", "p50_ms", "agree_unlabeled", "size_mb")}
        if r.get("agree_student") is not None:  # a compressed run: reported, not a rule
            c["agree_student"] = r["agree_student"]
        if r.get("p50_ms") is None or r.get("agree_unlabeled") is None or r.get("logits_finite") is False:
            c["passes"], c["why_not"] = False, r.get("note") or "not measured"
        elif r["agree_unlabeled"] < min_agreement:
            c["passes"], c["why_not"] = False, f"agreement {r['agree_unlabeled']:.2f}% < {min_agreement:g}%"
        else:
            c["passes"] = True
        candidates.append(c)
    passing = [c for c in candidates if c["passes"]]
    split = (images or {}).get("split", "target-train")
    best = min(passing, key=lambda c: c["p50_ms"]) if passing else None  # min keeps the first of equals
    out: dict[str, Any] = {"schema": SCHEMA, "artifact": best["name"] if best else None,
                           "min_agreement": min_agreement,
                           "rule": rule_text(min_agreement, split, reference),
                           "agreement_images": images or {}, "candidates": candidates}
    if best is None:
        out["why"] = f"no benchmarked artifact reaches {min_agreement:g}% agreement (lower --min-agreement?)"
        return out
    faster = [c for c in candidates if c["p50_ms"] is not None and c["p50_ms"] < best["p50_ms"] and not c["passes"]]
    out.update({k: best[k] for k in ("runtime", "precision", "p50_ms", "agree_unlabeled", "size_mb")})
    out["why"] = (f"fastest at batch 1 ({best['p50_ms']:.2f} ms p50) of the {len(passing)} artifacts with at least "
                  f"{min_agreement:g}% top-1 agreement with {reference} on {IMAGES.get(split, split)} "
                  f"({best['agree_unlabeled']:.2f}%"
                  + (f"; {best['agree_student']:.2f}% with the float student it was compressed from"
                     if best.get("agree_student") is not None else "") + ")"
                  + ("; faster but below the threshold: " + ", ".join(
                      f"{c['name']} ({c['p50_ms']:.2f} ms, {c['agree_unlabeled']:.2f}%)" for c in faster)
                     if faster else "") + ".")
    return out


def clear(out: Path) -> None:
    """Remove the files of the previous recommendation (this benchmark may choose another artifact, or none)."""
    for f in out.glob(f"{STEM}*"):
        if f.is_file() and (f.name.startswith(f"{STEM}.") or f.name == EXAMPLE):
            f.unlink()


def write_recommendation(ctx: DeployContext, choice: dict, out: Optional[Path] = None) -> dict[str, str]:
    """Write the choice's files into ``out`` (default ``ctx.out``, the deploy folder the artifact is in); returns
    the record's artifact roles -> file names."""
    from . import ARTIFACTS

    out = Path(out or ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    clear(out)
    roles: dict[str, str] = {"recommendation": CHOICE}
    name = choice.get("artifact")
    if name:
        art = ARTIFACTS.get(name)()
        src = art.path(ctx)
        if src is not None and Path(src).is_file():
            for f in companion_files(src):  # an IR's .bin beside its .xml
                atomic_write_bytes(out / f"{STEM}{f.suffix}", f.read_bytes())
            file = f"{STEM}{Path(src).suffix}"
            choice.update({"file": file, "copied_from": relative(src, out)})
            roles["recommended"] = file
            code = art.loader_code(ctx, file)
            if code:
                atomic_write_text(out / EXAMPLE, example_script(ctx, choice, art.description, file, code))
                choice["example"] = EXAMPLE
                roles["recommended_example"] = EXAMPLE
    write_json(out / CHOICE, choice)
    return roles


EXAMPLE_TEMPLATE = '''"""Classify one image with the deploy artifact LiteDA recommends for {label} ({task}): {name}.

{name}: {description}. `liteda bench` chose it as {rule}; {choice} lists every candidate.

    python {example} IMAGE
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FILE = str(Path(__file__).resolve().parent / {file!r})
CLASSES = {classes!r}
RESIZE, CROP = {resize}, {crop}
MEAN = np.array({mean!r}, dtype=np.float32)
STD = np.array({std!r}, dtype=np.float32)


def preprocess(path):
    """The run's test transform: RGB, RESIZE x RESIZE (bilinear), centre CROP, [0, 1], (x - MEAN) / STD, NCHW."""
    with Image.open(path) as img:
        img.draft("RGB", (RESIZE, RESIZE))
        img = ImageOps.exif_transpose(img).convert("RGB").resize((RESIZE, RESIZE), Image.BILINEAR)
    top = int(round((RESIZE - CROP) / 2.0))
    x = np.asarray(img, dtype=np.float32)[top:top + CROP, top:top + CROP] / 255.0
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(2, 0, 1)[None], dtype=np.float32)


# ---- the artifact and its runtime
{loader}

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {{sys.argv[0]}} IMAGE")
    logits = run(preprocess(sys.argv[1]))
    print(CLASSES[int(np.argmax(logits[0]))])
'''


def example_script(ctx: DeployContext, choice: dict, description: str, file: str, loader: str) -> str:
    rec, tf = ctx.inputs.record, ctx.inputs.record.transform
    return EXAMPLE_TEMPLATE.format(
        label=rec.label, task=rec.task, name=choice["artifact"], description=description or choice["runtime"],
        rule=choice["rule"], choice=CHOICE, example=EXAMPLE, file=file, classes=list(rec.dataset.classes),
        resize=int(tf.resize), crop=int(tf.crop), mean=[float(v) for v in tf.mean], std=[float(v) for v in tf.std],
        loader=loader.rstrip("\n") + "\n")
