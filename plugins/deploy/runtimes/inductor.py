"""PyTorch's compiled path (TorchInductor): ``torch.compile`` of the eager model; ``torch.export`` + AOTInductor
into a ``.pt2`` package that a process loads and runs without tracing or compiling (``aoti_load_package``); on
an NVIDIA GPU, ``torch.compile(mode="reduce-overhead")``, which replays each input shape as a CUDA graph.

On the CPU both generate C++ kernels for the instruction set of the machine that compiles them (AVX2, AVX-512):
a C++ compiler must be installed, and a ``.pt2`` made on an AVX-512 machine does not run on an AVX2-only one
(its recipe names the instruction set, so a different machine remakes it). Compiling takes tens of seconds to
minutes on a small CPU: these artifacts are benchmarked when asked for (``--runtime inductor``, ``--artifacts``).
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..artifact import DeployArtifact, DeployContext, LoadedArtifact, StampedFile
from .cuda import CudaEager
from .torch import torch_model_loader_code

STATIC_BATCH = 32  # compiled shapes: batch 1 (latency) and this one (throughput, accuracy passes)


def compiler_missing() -> Optional[str]:
    """None when TorchInductor can build its C++ kernels here, else why not."""
    import torch

    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 - InvalidCxxCompiler, or an older torch without cpp_builder
        return f"TorchInductor needs a C++ compiler on this machine (install g++ or clang): {type(e).__name__}"
    return None


def aoti_missing() -> Optional[str]:
    import torch

    try:
        import torch._inductor as inductor
    except ImportError:
        return f"torch {torch.__version__} has no TorchInductor"
    if not (hasattr(inductor, "aoti_compile_and_package") and hasattr(inductor, "aoti_load_package")
            and hasattr(torch, "export")):
        return f"torch {torch.__version__} has no torch.export + AOTInductor packages (torch >= 2.6)"
    return compiler_missing()


def static_batches(run: Callable[[np.ndarray], np.ndarray], batch: int = STATIC_BATCH) -> Callable:
    """``run`` called only with batch 1 or ``batch``: a compiled model specialises on every shape it sees (one
    compilation each), so other sizes go through in chunks of ``batch``, the last one padded with zeros."""

    def wrapped(x: np.ndarray) -> np.ndarray:
        if len(x) in (1, batch):
            return run(x)
        out = []
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch]
            pad = np.zeros((batch - len(chunk), *x.shape[1:]), x.dtype)
            out.append(run(np.ascontiguousarray(np.concatenate([chunk, pad])))[:len(chunk)])
        return np.concatenate(out)

    return wrapped


def warm(run: Callable, crop: int, batches=(1, STATIC_BATCH)) -> float:
    """Seconds to run each compiled shape once (the compilations happen here, not in the timed calls)."""
    t = time.perf_counter()
    for b in batches:
        run(np.zeros((b, 3, crop, crop), np.float32))
    return time.perf_counter() - t


def compile_runner(model, crop: int, threads: Optional[int] = None, name: str = "torch-compile") -> LoadedArtifact:
    """``torch.compile`` on the CPU: static shapes, frozen weights (constant-folded and pre-packed for the CPU
    kernels, as for inference)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    compiled = torch.compile(copy.deepcopy(model).eval(), dynamic=False, options={"freezing": True})

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return compiled(torch.from_numpy(x)).float().numpy()

    run = static_batches(run)
    return LoadedArtifact(name, "inductor", "fp32", run, None,
                          {"threads": torch.get_num_threads(), "compile_s": round(warm(run, crop), 1),
                           "providers": f"torch.compile (inductor, frozen) CPU, torch {torch.__version__}"})


class TorchCompile(DeployArtifact):
    name, runtime, precision, slow = "torch-compile", "inductor", "fp32", True
    description = "torch.compile of the eager model on the CPU (inductor, static shapes, frozen weights)"

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return compiler_missing()

    def path(self, ctx: DeployContext) -> Optional[Path]:
        return ctx.inputs.model_file  # compiled in the process that runs it: the file is the model's

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return compile_runner(ctx.inputs.model, ctx.crop, ctx.options.threads, self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        return torch_model_loader_code(ctx) + (
            "# compiles on the first call of each input shape\n"
            "compiled = torch.compile(model, dynamic=False, options={\"freezing\": True})\n\n\n"
            "@torch.inference_mode()\n"
            "def run(x):\n"
            "    return compiled(torch.from_numpy(x)).numpy()\n")


def aoti_package(model, path: str | os.PathLike, crop: int, meta: Optional[dict] = None) -> dict:
    """``torch.export`` (batch dynamic) + AOTInductor with frozen weights into the ``.pt2`` at ``path``;
    ``meta`` (str -> JSON) is embedded (``aoti_load_package(path).get_metadata()``)."""
    import json

    import torch
    import torch._inductor

    from ..onnx import fold_bottleneck_bn

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = fold_bottleneck_bn(model)  # the graph the ONNX file has: one Gemm for Linear + BatchNorm1d
    batch = torch.export.Dim("batch", min=1, max=4096)
    t = time.perf_counter()
    with torch.no_grad():
        ep = torch.export.export(net, (torch.zeros(2, 3, crop, crop),), dynamic_shapes=({0: batch},))
    tmp = path.with_name(f".{path.stem}.tmp.pt2")  # the packager insists on the suffix
    configs = {"freezing": True, "aot_inductor.metadata": {k: json.dumps(v) for k, v in (meta or {}).items()}}
    torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp), inductor_configs=configs)
    os.replace(tmp, path)
    return {"exporter": "torch.export + aoti_compile_and_package", "compile_s": round(time.perf_counter() - t, 1),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def aoti_runner(path: str | os.PathLike, threads: Optional[int] = None, name: str = "torch-aoti") -> LoadedArtifact:
    import torch
    import torch._inductor

    if threads:
        torch.set_num_threads(int(threads))
    compiled = torch._inductor.aoti_load_package(str(path))

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return compiled(torch.from_numpy(x)).float().numpy()

    return LoadedArtifact(name, "inductor", "fp32", run, str(path),
                          {"threads": torch.get_num_threads(),
                           "providers": f"AOTInductor package CPU, torch {torch.__version__}"})


class TorchAOTI(StampedFile):
    name, runtime, precision, file, slow = "torch-aoti", "inductor", "fp32", "model_aoti.pt2", True
    description = "torch.export + AOTInductor package (.pt2) on the CPU, frozen weights, dynamic batch"

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return aoti_missing()

    def recipe(self, ctx: DeployContext) -> dict:
        import torch

        return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "freezing": True, "batch": "dynamic"}

    def write(self, ctx: DeployContext, path: Path) -> dict:
        from ..onnx import model_meta

        info = aoti_package(ctx.inputs.model, path, ctx.crop, model_meta(ctx.inputs.record))
        print(f"AOTInductor package: {path} ({info['compile_s']:.0f} s to compile)")
        return info

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return aoti_runner(ctx.file_of(self.name), ctx.options.threads, self.name)

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        threads = ctx.options.threads
        return ("import torch\n"
                "import torch._inductor\n\n"
                + (f"torch.set_num_threads({int(threads)})\n" if threads else "")
                + "compiled = torch._inductor.aoti_load_package(FILE)  # compiled.get_metadata(): classes, mean, std\n"
                  "\n\n"
                  "@torch.inference_mode()\n"
                  "def run(x):\n"
                  "    return compiled(torch.from_numpy(x)).numpy()\n")


def cuda_compile_runner(model, precision: str, crop: int, name: str) -> LoadedArtifact:
    """``torch.compile(mode="reduce-overhead")`` on the GPU: inductor's kernels, each shape replayed as a CUDA
    graph; synchronous, the host-device copies included, as the other GPU rows are."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    net = copy.deepcopy(model).eval().to("cuda", dtype).to(memory_format=torch.channels_last)
    compiled = torch.compile(net, mode="reduce-overhead", dynamic=False)

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x).to("cuda", dtype).contiguous(memory_format=torch.channels_last)
        return compiled(xt).float().cpu().numpy()  # .cpu() copies out before the next replay reuses the buffer

    run = static_batches(run)
    return LoadedArtifact(name, "cuda", precision, run, None,
                          {"threads": "-", "compile_s": round(warm(run, crop), 1),
                           "providers": f"torch.compile reduce-overhead (CUDA graphs) on "
                                        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"})


class CudaCompile(CudaEager):
    slow = True

    def environment(self, ctx: DeployContext) -> Optional[str]:
        import importlib.util

        why = super().environment(ctx)
        if why is None and importlib.util.find_spec("triton") is None:
            why = "torch.compile on CUDA needs triton (pip install triton)"
        return why

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        art = cuda_compile_runner(ctx.inputs.model, self.precision, ctx.crop, self.name)
        art.path = str(self.path(ctx))
        return art


class CudaFP32Compile(CudaCompile):
    name, precision = "cuda-fp32-compile", "fp32"
    description = "torch.compile(mode='reduce-overhead') FP32 on the GPU: inductor kernels replayed as CUDA graphs"


class CudaFP16Compile(CudaCompile):
    name, precision = "cuda-fp16-compile", "fp16"
    description = "torch.compile(mode='reduce-overhead') FP16 on the GPU: inductor kernels replayed as CUDA graphs"
