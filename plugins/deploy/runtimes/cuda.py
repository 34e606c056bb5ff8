"""PyTorch on the GPU: fp32/fp16/bf16 weights and activations, channels_last, eager or replayed CUDA graphs."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np

from ...utils import fail
from ..artifact import DeployArtifact, DeployContext, LoadedArtifact

CUDA_PRECISIONS = ("fp32", "fp16", "bf16")


def cuda_unavailable_reason() -> Optional[str]:
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"


def cuda_runner(model, precision: str = "fp32", graphs: bool = True, path: Optional[str] = None) -> LoadedArtifact:
    """``graphs``: each input shape is captured once as a CUDA graph and replayed, which removes the per-kernel
    launch cost that dominates a bs1 MobileNet. Synchronous, the host-device copies included, as the TensorRT
    rows are."""
    import torch

    if precision not in CUDA_PRECISIONS:
        fail(f"PyTorch CUDA runs {'/'.join(CUDA_PRECISIONS)}, not {precision}")
    if (why := cuda_unavailable_reason()):
        fail(why)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    net = copy.deepcopy(model).eval().to("cuda", dtype).to(memory_format=torch.channels_last)
    static: dict[tuple, tuple] = {}  # shape -> (graph, input buffer, output buffer)

    @torch.inference_mode()
    def capture(shape: tuple) -> tuple:
        buf = torch.zeros(shape, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as graph capture requires
            for _ in range(3):
                net(buf)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = net(buf)
        return g, buf, out

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x).to("cuda", non_blocking=False)
        if not graphs:
            return net(xt.to(dtype).contiguous(memory_format=torch.channels_last)).float().cpu().numpy()
        if x.shape not in static:
            static[x.shape] = capture(tuple(x.shape))
        g, buf, out = static[x.shape]
        buf.copy_(xt)
        g.replay()
        return out.float().cpu().numpy()  # .cpu() waits for the replay

    return LoadedArtifact(f"cuda-{precision}" + ("-graph" if graphs else ""), "cuda", precision, run, path,
                          {"threads": "-", "providers": f"PyTorch {torch.__version__} CUDA on "
                                                        f"{torch.cuda.get_device_name(0)}"})


class CudaEager(DeployArtifact):
    runtime = "cuda"
    graphs = False

    def environment(self, ctx: DeployContext) -> Optional[str]:
        return cuda_unavailable_reason()

    def path(self, ctx: DeployContext) -> Optional[Path]:
        return ctx.inputs.model_file

    def load(self, ctx: DeployContext) -> LoadedArtifact:
        return cuda_runner(ctx.inputs.model, self.precision, self.graphs, str(self.path(ctx)))

    def loader_code(self, ctx: DeployContext, file: str) -> str:
        from .torch import torch_model_loader_code

        return torch_model_loader_code(ctx) + (
            "from liteda.deploy.runtimes.cuda import cuda_runner\n\n"
            f"run = cuda_runner(model, {self.precision!r}, graphs={self.graphs}).run\n")


class CudaGraph(CudaEager):
    graphs = True


class CudaFP32(CudaEager):
    name, precision, description = "cuda-fp32", "fp32", "PyTorch CUDA FP32, eager"


class CudaFP32Graph(CudaGraph):
    name, precision, description = "cuda-fp32-graph", "fp32", "PyTorch CUDA FP32, replayed CUDA graph"


class CudaFP16(CudaEager):
    name, precision, description = "cuda-fp16", "fp16", "PyTorch CUDA FP16, eager"


class CudaFP16Graph(CudaGraph):
    name, precision, description = "cuda-fp16-graph", "fp16", "PyTorch CUDA FP16, replayed CUDA graph"


class CudaBF16(CudaEager):
    name, precision, description = "cuda-bf16", "bf16", "PyTorch CUDA bf16, eager"


class CudaBF16Graph(CudaGraph):
    name, precision, description = "cuda-bf16-graph", "bf16", "PyTorch CUDA bf16, replayed CUDA graph"
