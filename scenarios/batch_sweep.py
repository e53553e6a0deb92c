"""Sharpness and test accuracy against the batch size, from 32 to the full training set.

    python scenarios/batch_sweep.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run batch-sweep [options]``;
the experiment itself is ``minisgd/scenarios/batch_sweep.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "batch-sweep", *sys.argv[1:]]))
