"""`liteda distill`: teacher -> student distillation on the unlabeled target (--teacher-run DIR)."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["distill", *sys.argv[1:]])
