"""The exact, full Hessian approximations at a small-batch and a large-batch minimizer of a reduced MNIST model.

    python scenarios/approximations.py [options]       is      minisgd run approximations [options]

The experiment is ``minisgd/experiments/approximations.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
