"""Plain SGD at several temperatures eta / B (1 - B/N) and batch sizes: sharpness and test accuracy set by the ratio.

    python scenarios/noise_temperature.py [options]       is      minisgd run noise-temperature [options]

The experiment is ``minisgd/experiments/noise_temperature.py``: its config dataclass lists every key ``--set`` takes.
"""
import sys

from minisgd.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
