"""Knowledge distillation on the unlabeled target: teacher(s) trained/adapted first (or --teacher-ckpt), then
the MobileNetV3-Small student learns from their soft target predictions (plugins/distill.py)."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.distill import run_kd  # noqa: E402
from plugins.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(run_kd))
