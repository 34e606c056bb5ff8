"""Export a trained LiteDA model to ONNX FP32 / FP16 / INT8 (and TensorRT engines on a GPU).

    python examples/export.py --run runs/OfficeCaltech/W2A/source_only/seed0 --precision fp32 fp16 int8
"""
import sys

from liteda.deploy.cli import export_cli

if __name__ == "__main__":
    export_cli()
