"""Keskar et al. 2017 on MNIST: small batch (256) against large batch (10%), with Adam and plain SGD.

    python scenarios/keskar_mnist.py [options]       is      minisgd run keskar-mnist [options]

The experiment is ``minisgd/experiments/keskar_mnist.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
