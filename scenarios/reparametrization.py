"""The same function, rescaled (alpha W1, W2 / alpha): which sharpness measures move (Dinh et al. 2017).

    python scenarios/reparametrization.py [options]       is      minisgd run reparametrization [options]

The experiment is ``minisgd/experiments/reparametrization.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
