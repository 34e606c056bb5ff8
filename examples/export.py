"""Write a trained LiteDA run's deploy artifacts (same as ``liteda export``).

    python examples/export.py --run runs/OfficeCaltech/W2A/source_only/seed0 --artifacts ort-fp32 ort-fp16 ort-int8
"""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["export", *sys.argv[1:]])
