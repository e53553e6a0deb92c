"""How much of the small-batch / large-batch gap each remedy closes (Keskar et al. 2017, section 5, and later work).

    python scenarios/remedies.py [options]       is      minisgd run remedies [options]

The experiment is ``minisgd/experiments/remedies.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
