"""Export a trained LiteDA model to ONNX FP32 / FP16 / INT8 (and TensorRT engines on a GPU).

    python examples/export.py --run runs/OfficeCaltech/W2A/source_only/seed0 --precision fp32 fp16 int8
"""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.deploy.cli import export_cli  # noqa: E402

if __name__ == "__main__":
    export_cli()
