"""The full training set's gradient against the population gradient: distance against N (slope -1/2).

    python scenarios/true_gradient.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run true-gradient [options]``;
the experiment itself is ``minisgd/scenarios/true_gradient.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "true-gradient", *sys.argv[1:]]))
