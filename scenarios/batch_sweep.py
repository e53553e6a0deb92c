"""Sharpness and test accuracy against the batch size, from 32 to the full training set.

    python scenarios/batch_sweep.py [options]       is      minisgd run batch-sweep [options]

The experiment is ``minisgd/experiments/batch_sweep.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
