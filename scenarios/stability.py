"""Step sizes around 2/lambda_max for GD and SGD, and the edge of stability.

    python scenarios/stability.py [options]       is      minisgd run stability [options]

The experiment is ``minisgd/experiments/stability.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
