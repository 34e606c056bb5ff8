"""`liteda train`: source-only training on labeled source (tllib's flags)."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
