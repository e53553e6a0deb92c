"""How well each sharpness measure ranks the generalization gap (Kendall tau, Jiang et al. 2019).

    python scenarios/flatness_measures.py [options]       is      minisgd run flatness-measures [options]

The experiment is ``minisgd/experiments/flatness_measures.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
