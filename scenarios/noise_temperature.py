"""Plain SGD at several temperatures eta / B (1 - B/N) and batch sizes: sharpness and test accuracy set by the ratio.

    python scenarios/noise_temperature.py [--quick] [--seed S] [--seeds K] [--device cpu|gpu]
        [--jobs J | --scheduler ADDRESS] [--out DIR] [--set key=value ...] [--plots DIR]

is ``minisgd run noise-temperature [options]``;
the experiment itself is ``minisgd/scenarios/noise_temperature.py`` (its config dataclass
lists every key that --set takes; ``--set help`` prints them).
"""
import sys

from minisgd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "noise-temperature", *sys.argv[1:]]))
