#!/usr/bin/env bash
# gpu_prepare.sh: make, in this checkout, the two ignored folders that benchmarks/gpu_check.sh needs on the GPU
# machine (which has no network, and to which only the checkout travels, not ../shared):
#   .whl/           wheels of the pure-Python packages that machine lacks, for its Python 3.12: array-api-compat
#                   (minisgd needs it) and array-api-strict (tests/test_backend.py imports it)
#   .mnist/mnist/   MNIST's four .gz files, copied from $MINISGD_DATA/mnist (default ../shared/data/mnist)
# Both are git-ignored; the device tool carries them: run(..., carry=[".whl", ".mnist"]). Run it from anywhere, for
# this checkout or for the one named:
#   bash benchmarks/gpu_prepare.sh [CHECKOUT]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
PYTHON=${PYTHON:-python3}
# The versions this project's tests run with (setup.cfg: array-api-compat>=1.9, array-api-strict>=2.0).
WHEELS=("array-api-compat==1.16.0" "array-api-strict==2.6.1")
rm -rf .whl
mkdir .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "${WHEELS[@]}"
src=${MINISGD_DATA:-../shared/data}/mnist
rm -rf .mnist
mkdir -p .mnist/mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  cp "$src/$f.gz" .mnist/mnist/
done
ls -l .whl .mnist/mnist
du -sh .whl .mnist
