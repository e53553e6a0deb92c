"""How much of the small-batch / large-batch gap each remedy closes (Keskar et al. 2017, section 5, and later work).

    python scenarios/remedies.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run remedies [options]``;
the experiment itself is ``minisgd/scenarios/remedies.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "remedies", *sys.argv[1:]]))
