"""Deployment: a run's model -> deploy artifacts (runtime x precision) -> a benchmark table.

    liteda export --run RUN [--artifacts ort-fp32 ort-int8 ...]
    liteda bench  --run RUN [--artifacts torch-fp32 ort-fp32 ort-int8 ort-int8w ...]

Every artifact is one class in ``runtimes/<runtime>.py`` plus one line below (see :mod:`.artifact`); the CLI,
``liteda list artifacts`` and the tests read this registry. Order matters: the tables list artifacts in it, the
first runnable FP32 row is the reference of the target-test agreement column, and of two equally fast artifacts
the recommendation (:mod:`.recommend`) keeps the first.
"""
from ..registry import Registry
from .artifact import DeployArtifact, DeployContext, LoadedArtifact, OnnxFile, StampedFile

ARTIFACTS = Registry("deploy artifact", {
    "torch-fp32": "liteda.deploy.runtimes.torch:TorchFP32",        # PyTorch eager on the CPU: the reference
    "torch-bf16": "liteda.deploy.runtimes.torch:TorchBF16",
    "torch-int8": "liteda.deploy.runtimes.torch:TorchInt8",        # a PTSQ/QAT model in PyTorch
    "torch-compile": "liteda.deploy.runtimes.inductor:TorchCompile",  # torch.compile on the CPU
    "torch-aoti": "liteda.deploy.runtimes.inductor:TorchAOTI",     # torch.export + AOTInductor .pt2
    "cuda-fp32": "liteda.deploy.runtimes.cuda:CudaFP32",
    "cuda-fp32-graph": "liteda.deploy.runtimes.cuda:CudaFP32Graph",
    "cuda-fp16": "liteda.deploy.runtimes.cuda:CudaFP16",
    "cuda-fp16-graph": "liteda.deploy.runtimes.cuda:CudaFP16Graph",
    "cuda-bf16": "liteda.deploy.runtimes.cuda:CudaBF16",
    "cuda-bf16-graph": "liteda.deploy.runtimes.cuda:CudaBF16Graph",
    "cuda-fp32-compile": "liteda.deploy.runtimes.inductor:CudaFP32Compile",  # mode="reduce-overhead"
    "cuda-fp16-compile": "liteda.deploy.runtimes.inductor:CudaFP16Compile",
    "ort-fp32": "liteda.deploy.runtimes.ort:OrtFP32",              # the FP32 ONNX every other file comes from
    "ort-fp16": "liteda.deploy.runtimes.ort:OrtFP16",
    "ort-int8": "liteda.deploy.runtimes.ort:OrtInt8",              # static INT8 QDQ (or a PTSQ/QAT model's own)
    "ort-int8w": "liteda.deploy.runtimes.ort:OrtInt8Weights",      # INT8 weights, FP32 compute
    "openvino-fp32": "liteda.deploy.runtimes.openvino:OpenVinoFP32",
    "openvino-int8": "liteda.deploy.runtimes.openvino:OpenVinoInt8",
    "openvino-ir-fp32": "liteda.deploy.runtimes.openvino:OpenVinoIRFP32",     # IR from the FP32 ONNX
    "openvino-nncf-int8": "liteda.deploy.runtimes.openvino:OpenVinoNNCFInt8",  # NNCF INT8 of that IR
    "trt-fp32": "liteda.deploy.runtimes.tensorrt:TrtFP32",
    "trt-fp16": "liteda.deploy.runtimes.tensorrt:TrtFP16",
    "trt-int8": "liteda.deploy.runtimes.tensorrt:TrtInt8",
    "trt-fp8": "liteda.deploy.runtimes.tensorrt:TrtFP8",
})

__all__ = ["ARTIFACTS", "DeployArtifact", "DeployContext", "LoadedArtifact", "OnnxFile", "StampedFile"]
