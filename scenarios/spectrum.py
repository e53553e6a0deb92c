"""The exact, full Hessian spectrum at a small-batch and a large-batch minimizer of a reduced MNIST model.

    python scenarios/spectrum.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run spectrum [options]``;
the experiment itself is ``minisgd/scenarios/spectrum.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "spectrum", *sys.argv[1:]]))
