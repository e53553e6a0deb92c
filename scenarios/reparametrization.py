"""The same function, rescaled (alpha W1, W2 / alpha): which sharpness measures move (Dinh et al. 2017).

    python scenarios/reparametrization.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run reparametrization [options]``;
the experiment itself is ``minisgd/scenarios/reparametrization.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "reparametrization", *sys.argv[1:]]))
