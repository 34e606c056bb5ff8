"""Deep CORAL: covariance alignment of bottleneck features."""
import os, sys  # noqa: E401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from plugins.runner import cli  # noqa: E402

if __name__ == "__main__":
    cli("coral", regime="adapt")
