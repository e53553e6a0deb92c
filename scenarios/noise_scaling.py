"""Gradient noise against the batch size (slope -1/2) and the cost of a step (slope 1), measured and predicted.

    python scenarios/noise_scaling.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run noise-scaling [options]``;
the experiment itself is ``minisgd/scenarios/noise_scaling.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "noise-scaling", *sys.argv[1:]]))
