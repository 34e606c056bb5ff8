"""What a benchmark row depends on besides the model: the CPU's instruction sets and the runtimes' versions.

INT8 and bf16 rows change most from one x86 CPU to another: without a dot-product instruction (AVX2 only) INT8
convolutions multiply through ``vpmaddubsw``, whose 16-bit sums saturate and which is barely faster than FP32;
AVX512-VNNI / AVX-VNNI add a fused INT8 dot product, AMX an INT8/bf16 matrix unit. The benchmark writes these
flags beside its table so that a reader on another CPU knows which rows to expect to move.
"""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any, Optional

# /proc/cpuinfo flag -> the name used in the tables
X86_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16"}
ARM_FLAGS = {"asimddp": "NEON-DOTPROD", "i8mm": "I8MM", "bf16": "BF16", "sve": "SVE"}
RUNTIMES = ("torch", "onnxruntime", "openvino", "nncf", "tensorrt")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> Optional[set[str]]:
    """The first CPU's feature flags (``flags`` on x86, ``Features`` on Arm); None where /proc/cpuinfo is absent."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def int8_dot_product(flags: Optional[set[str]]) -> str:
    """The fastest INT8 multiply-accumulate this CPU has, as the INT8 kernels of ORT/OpenVINO/fbgemm use it."""
    if flags is None:
        return "unknown"
    for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"),
                       ("i8mm", "I8MM"), ("asimddp", "NEON-DOTPROD")):
        if flag in flags:
            return name
    return "none (AVX2 vpmaddubsw)" if "avx2" in flags else "none"


def int8_weight_bits(flags: Optional[set[str]]) -> tuple[int, str]:
    """INT8 weight range for this CPU's INT8 kernels, and why: 8 bits where it has an INT8 dot product (VNNI,
    AMX, Arm dot product), which sums u8 x s8 products in 32 bits; 7 bits on AVX2 without one, where
    ``vpmaddubsw`` sums pairs of products into saturating 16-bit lanes (255 x 127 x 2 > 32767)."""
    dot = int8_dot_product(flags)
    if dot.startswith("none") or dot == "unknown":
        return 7, f"7-bit weights: this CPU has no INT8 dot product ({dot})"
    return 8, f"8-bit weights: this CPU has an INT8 dot product ({dot}); on AVX2 without one use 7-bit weights"


def cpu_isa(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's instruction sets that decide which rows are fast: flags, INT8 dot product, torch's and
    OpenVINO's view of the CPU."""
    import torch

    flags, arch = cpu_flags(cpuinfo), platform.machine()
    known = ARM_FLAGS if _is_arm(arch) else X86_FLAGS
    out: dict[str, Any] = {
        "arch": arch,
        "flags": None if flags is None else {name: flag in flags for flag, name in known.items()},
        "flags_source": str(cpuinfo) if flags is not None else "unavailable on this OS",
        "int8_dot_product": int8_dot_product(flags),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    try:  # what OpenVINO's CPU plugin will use (FP32/BF16/INT8 ...), when it is installed
        import openvino as ov

        out["openvino_cpu_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - optional package or no CPU plugin
        pass
    return out


def runtime_versions() -> dict[str, Optional[str]]:
    """Installed version of every runtime the benchmark can use (None: not installed)."""
    out: dict[str, Optional[str]] = {}
    for name in RUNTIMES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def isa_summary(isa: dict[str, Any]) -> str:
    """One line for the Markdown: which of the flags that move rows this CPU has."""
    flags = isa.get("flags")
    if flags is None:
        have = "flags unknown"
    else:
        shown = [n for n in flags if n not in ("FMA", "AMX-INT8", "AMX-BF16")]  # AMX stands for its parts
        have = ", ".join(f"{n} {'yes' if flags[n] else 'no'}" for n in shown)
    return (f"CPU instruction sets: {have}; INT8 dot product: {isa.get('int8_dot_product')}; torch CPU capability: "
            f"{isa.get('torch_cpu_capability')}")


def _is_arm(arch: str) -> bool:
    return arch.lower() in ("aarch64", "arm64")
