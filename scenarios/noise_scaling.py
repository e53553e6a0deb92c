"""Gradient noise against the batch size (slope -1/2) and the cost of a step (slope 1), measured and predicted.

    python scenarios/noise_scaling.py [options]       is      minisgd run noise-scaling [options]

The experiment is ``minisgd/experiments/noise_scaling.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
