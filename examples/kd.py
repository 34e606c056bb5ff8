"""Knowledge distillation on the unlabeled target: teacher(s) trained/adapted first (or --teacher-ckpt), then
the MobileNetV3-Small student learns from their soft target predictions (plugins/distill.py)."""
import sys

from liteda.distill import run_kd
from liteda.utils import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(run_kd))
