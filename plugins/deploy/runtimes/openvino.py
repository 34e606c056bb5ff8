"""OpenVINO's CPU runtime (optional: ``pip install liteda[openvino]``): on the ONNX files ONNX Runtime's artifacts
wrote (an INT8 QDQ file runs as INT8), on its own FP32 IR converted from the FP32 ONNX, and on the INT8 IR NNCF
makes from that IR (:mod:`liteda.deploy.openvino`)."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...utils import fail
from ..artifact import FLOAT, TORCH_INT8, DeployArtifact, DeployContext, LoadedArtifact, StampedFile
from ..openvino import NNCF_MODES, NNCF_NOT_INSTALLED, NNCF_PRESETS, NOT_INSTALLED, openvino_module


def openvino_config(threads: Optional[int] = None) -> dict[str, Any]:
    """Latency hint, FP32 for whatever is not INT8 (a bf16-capable CPU would otherwise be allowed bf16)."""
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    return cfg


def openvino_runner(path: str | Path, precision: str, threads: Optional[int] = None,
                    name: Optional[str] = None) -> LoadedArtifact:
    """An ONNX file or an IR on OpenVINO's CPU plugin. The file's batch is dynamic; each batch size that comes in
    is compiled once with a static shape (static shapes let the CPU plugin pick its kernels ahead of time, which
    is faster at batch 1) and kept."""
    ov = openvino_module()
    core, cfg = ov.Core(), openvino_config(threads)
    requests: dict[tuple, Any] = {}

    def request(shape: tuple):
        model = core.read_model(str(path))
        model.reshape(ov.PartialShape(list(shape)))  # one input: the image batch
        return core.compile_model(model, "CPU", cfg).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape not in requests:
            requests[x.shape] = request(x.shape)
        return requests[x.shape].infer({0: x})[0].copy()

    return LoadedArtifact(name or f"openvino-{precision}", "openvino", precision, run, str(path),
                          {"threads": threads or "openvino default",
                           "providers": f"OpenVINO {ov.__version__.split('-')[0]} CPU"})


def _openvino_missing() -> Optional[str]:
    return None if importlib.util.find_spec("openvino") else NOT_INSTALLED


def openvino_loader_code(threads: Optional[int]) -> str:
    return (
        "import openvino as ov\n\n"
        f"compiled = ov.Core().compile_model(FILE, \"CPU\", {openvino_config(threads)!r})\n\n\n"
        "def run(x):\n"
        "    return compiled(x)[0]\n")


class OpenVinoRuntime:
    """What every OpenVINO artifact shares: the package check, the runner on the file ``runs`` names, the loader
    example."""

    runtime = "openvino"

    def runs(self) -> str:
        """The artifact whose file OpenVINO runs."""
        return self.name

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return _openvino_missing()

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return openvino_runner(ctx.file_of(self.runs()), self.precision, ctx.options.threads, self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        return openvino_loader_code(ctx.options.threads)


class OpenVinoOnnx(OpenVinoRuntime, DeployArtifact):
    """Runs the file of ``source`` (no file of its own)."""

    source = ""

    def runs(self) -> str:
        return self.source

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return (self.source,)


class OpenVinoFP32(OpenVinoOnnx):
    name, precision, source = "openvino-fp32", "fp32", "ort-fp32"
    description = "OpenVINO CPU on the FP32 ONNX"


class OpenVinoInt8(OpenVinoOnnx):
    name, precision, source = "openvino-int8", "int8", "ort-int8"
    model_kinds = (FLOAT, TORCH_INT8)
    description = "OpenVINO CPU on the INT8 QDQ ONNX of ort-int8"


class OpenVinoIR(OpenVinoRuntime, StampedFile):
    """An OpenVINO IR file (``.xml`` + ``.bin``); its stamp is in the IR's rt_info."""

    def read_stamp(self, path: Path) -> dict:
        from ..openvino import read_ir_metadata

        return read_ir_metadata(path)

    def write_stamp(self, path: Path, meta: dict) -> None:
        from ..openvino import stamp_ir

        stamp_ir(path, meta)

    def described(self, path: Path) -> dict:
        recipe = self.read_stamp(path).get(f"{self.precision}_recipe")
        return {"recipe": recipe} if recipe is not None else {}


class OpenVinoIRFP32(OpenVinoIR):
    name, precision, file = "openvino-ir-fp32", "fp32", "openvino_fp32.xml"
    description = "OpenVINO IR (.xml/.bin) converted from the FP32 ONNX, FP32 on the CPU plugin"

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("ort-fp32",)

    def recipe(self, ctx: DeployContext) -> dict:
        return {"weights": "fp32"}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..openvino import convert_onnx_to_ir

        info = convert_onnx_to_ir(ctx.file_of("ort-fp32"), path)
        print(f"OpenVINO FP32 IR: {path} (+ .bin)")
        return info


class OpenVinoNNCFInt8(OpenVinoIR):
    """INT8 by NNCF on the unlabeled target-train calibration images; in accuracy-control mode (the default)
    the layers that cost the most top-1 agreement with the FP32 IR stay in float until the agreement on those
    images is at least ``--min-agreement``."""

    name, precision, file = "openvino-nncf-int8", "int8", "openvino_int8.xml"
    description = "OpenVINO INT8 IR by NNCF post-training quantization on unlabeled target-train images, " \
                  "accuracy control on the agreement with FP32"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        p = parser.add_argument_group("NNCF INT8 (openvino-nncf-int8)")
        p.add_argument("--nncf-mode", choices=NNCF_MODES, default="accuracy-control",
                       help="accuracy-control: layers go back to float until the top-1 agreement with the FP32 IR on "
                            "the calibration images is at least --min-agreement (no target labels); ptq: "
                            "quantize everything NNCF can")
        p.add_argument("--nncf-preset", choices=NNCF_PRESETS, default="performance",
                       help="performance: symmetric INT8 activations; mixed: asymmetric activations")
        p.add_argument("--nncf-max-iters", type=int, default=10, metavar="N",
                       help="accuracy control: at most N layers returned to float (each may re-rank every quantized "
                            "layer: minutes at 224 px on a small CPU); 0: no limit")

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> None:
        if args.nncf_max_iters < 0:
            fail(f"--nncf-max-iters must be 0 (no limit) or positive, got {args.nncf_max_iters}")

    def requires(self, ctx: DeployContext) -> tuple[str, ...]:
        return ("openvino-ir-fp32",)

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return _openvino_missing() or (None if importlib.util.find_spec("nncf") else NNCF_NOT_INSTALLED)

    def recipe(self, ctx: DeployContext) -> dict:
        o = ctx.options
        control = {"min_agreement": o.min_agreement, "max_iters": o.nncf_max_iters}
        return {"mode": o.nncf_mode, "preset": o.nncf_preset, "calib_size": int(len(ctx.inputs.calib)),
                "seed": o.seed, **(control if o.nncf_mode == "accuracy-control" else {})}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..openvino import quantize_nncf

        o = ctx.options
        recipe = quantize_nncf(ctx.file_of("openvino-ir-fp32"), path, ctx.inputs.calib, o.nncf_mode,
                               o.min_agreement, o.nncf_preset, o.nncf_max_iters or None)
        print(f"OpenVINO INT8 IR by NNCF: {path} ({recipe['mode']}, {recipe['fake_quantize_nodes']} quantizers, "
              f"{recipe['agreement_on_calibration_images']:.1f}% top-1 agreement with FP32 on "
              f"{recipe['calib_images']} calibration images)")
        return {}
