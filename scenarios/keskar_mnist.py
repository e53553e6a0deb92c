"""Keskar et al. 2017 on MNIST: small batch (256) against large batch (10%), with Adam and plain SGD.

    python scenarios/keskar_mnist.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run keskar-mnist [options]``;
the experiment itself is ``minisgd/scenarios/keskar_mnist.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "keskar-mnist", *sys.argv[1:]]))
