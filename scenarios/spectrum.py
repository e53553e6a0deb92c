"""The exact, full Hessian spectrum at a small-batch and a large-batch minimizer of a reduced MNIST model.

    python scenarios/spectrum.py [options]       is      minisgd run spectrum [options]

The experiment is ``minisgd/experiments/spectrum.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
