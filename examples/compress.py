"""``liteda compress``: compress a run's model (``--recipe 1mb``, or techniques by flag); ``--help`` lists them."""
import sys

from liteda.cli import main

if __name__ == "__main__":
    main(["compress", *sys.argv[1:]])
