"""How well each sharpness measure ranks the generalization gap (Kendall tau, Jiang et al. 2019).

    python scenarios/flatness-measures.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run flatness-measures [options]``;
the experiment itself is ``minisgd/scenarios/flatness_measures.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "flatness-measures", *sys.argv[1:]]))
