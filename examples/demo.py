"""`liteda demo` (`make demo`): the whole pipeline in miniature on the embedded default dataset, offline."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
