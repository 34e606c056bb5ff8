"""Deep CORAL: covariance alignment of bottleneck features."""
import sys

from liteda.runner import cli

if __name__ == "__main__":
    cli("coral", regime="adapt")
