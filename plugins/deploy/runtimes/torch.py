"""PyTorch eager on the CPU: the reference every other artifact is compared with."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..artifact import TORCH_INT8, DeployArtifact, DeployContext, LoadedArtifact


def torch_runner(model, precision: str = "fp32", threads: Optional[int] = None,
                 path: Optional[str] = None, name: Optional[str] = None) -> LoadedArtifact:
    """``model`` in eager mode: fp32 (or whatever precision its weights are), or bf16 autocast."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    model = model.eval()

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(torch.from_numpy(x)).float().numpy()

    return LoadedArtifact(name or f"torch-{precision}", "torch", precision, run, path,
                          {"threads": torch.get_num_threads(), "providers": "torch eager CPU"})


def torch_model_loader_code(ctx: DeployContext) -> str:
    """Example lines that load the run's model file (``FILE``) as ``model`` with LiteDA's own loader."""
    threads = ctx.options.threads
    load = ("from liteda.compress import load_compressed\n\nmodel = load_compressed(FILE)[0].eval()\n"
            if "compressed" in ctx.inputs.record.artifacts else
            "from liteda.classifier import load_classifier\n\nmodel = load_classifier(FILE)[0].eval()\n")
    return "import torch\n" + load + (f"torch.set_num_threads({int(threads)})\n" if threads else "")


class TorchEager(DeployArtifact):
    runtime = "torch"

    def path(self, ctx: DeployContext) -> Optional[Path]:
        return ctx.inputs.model_file  # its size column: the model file it runs

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return torch_runner(ctx.inputs.model, self.precision, ctx.options.threads, str(self.path(ctx)), self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        body = ("    with torch.autocast(\"cpu\", dtype=torch.bfloat16):\n        return" if self.precision == "bf16"
                else "    return")
        return torch_model_loader_code(ctx) + (
            "\n\n@torch.inference_mode()\n"
            "def run(x):\n"
            f"{body} model(torch.from_numpy(x)).float().numpy()\n")


class TorchFP32(TorchEager):
    name, precision = "torch-fp32", "fp32"
    description = "PyTorch eager FP32 on the CPU (the reference)"


class TorchBF16(TorchEager):
    name, precision = "torch-bf16", "bf16"
    description = "PyTorch eager with bf16 autocast (CPUs with native bf16)"

    def environment(self, ctx: DeployContext) -> Optional[str]:
        import torch

        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return f"no native bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()})"
        return None


class TorchInt8(TorchEager):
    name, precision = "torch-int8", "int8"
    model_kinds = (TORCH_INT8,)
    description = "PyTorch eager of a model PyTorch quantized (PTSQ/QAT, fbgemm INT8)"

