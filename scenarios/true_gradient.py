"""The full training set's gradient against the population gradient: distance against N (slope -1/2).

    python scenarios/true_gradient.py [options]       is      minisgd run true-gradient [options]

The experiment is ``minisgd/experiments/true_gradient.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
