"""`liteda adapt`: unsupervised domain adaptation with any registered method: -m dann|cdan|mcc|... (tllib's flags)."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["adapt", *sys.argv[1:]])
