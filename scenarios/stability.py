"""Step sizes around 2/lambda_max for GD and SGD, and the edge of stability.

    python scenarios/stability.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run stability [options]``;
the experiment itself is ``minisgd/scenarios/stability.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "stability", *sys.argv[1:]]))
