"""`liteda oracle`: MobileNetV3-Small trained on labeled target-train (the reference the adapted model is held to)."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["oracle", *sys.argv[1:]])
