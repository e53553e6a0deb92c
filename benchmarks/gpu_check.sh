#!/usr/bin/env bash
# gpu_check.sh: the one command of a GPU machine's visit. It proves minisgd's CuPy path end to end and measures it
# in under 8 minutes (BUDGET_S, default 450 s), and writes what it found into $OUT as Markdown and JSON:
#   summary.md / summary.json   what ran, what passed, every table below (start here)
#   keskar_f64.json, keskar_quick.json   every number of the GPU runs against the CPU runs
#   bench_gpu.json              every number of benchmarks/bench_gpu.py
#   log                         everything printed
# The steps, in order:
#   0. print the GPU (nvidia-smi) and `pip show` of every package the run expects, so a surprise shows at once;
#   1. install the wheels the machine lacks into a fresh --target (no network there) and put it and the checkout
#      on PYTHONPATH (minisgd runs from the tree: python3 -m minisgd); MINISGD_DATA to the carried MNIST;
#   2. the test suite's GPU tests on CuPy: pytest -m gpu;
#   3. keskar-mnist --quick on --device gpu and on --device cpu, compared number by number: first a float64
#      version (2 epochs, 1 seed: must agree to 1e-6), then the --quick run itself (float32 training: reported);
#   4. benchmarks/bench_gpu.py in the time that is left (it skips, and says so, what would not fit);
#   5. the summary.
#
# On the GPU machine, from the root of the checkout the device tool sends (/work/main), in one device-tool call:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".mnist"], timeout_s=500)
#
# The two ignored folders it carries must exist in that checkout first. Make them on the CPU machine, in the
# checkout, with `bash benchmarks/gpu_prepare.sh`:
#   .whl/           wheels of the pure-Python packages the GPU machine lacks (array-api-compat, array-api-strict)
#   .mnist/mnist/   MNIST's four .gz files (11 MB)
#
# Rehearsal on a CPU machine: NumPy in place of CuPy and tiny sizes, every step above (tests/test_gpu_check.py runs
# it, so the script cannot rot between visits):
#
#   DRY_RUN=1 bash benchmarks/gpu_check.sh
#
# Settings (environment): OUT (default: a new folder under /tmp), PYTHON (python3), WHEELS (.whl), DATA (.mnist,
# the folder that holds mnist/), BUDGET_S (450), DRY_RUN (0). Exit status 0 when every part passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
DRY_RUN=${DRY_RUN:-0}
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-$ROOT/.whl}
DATA=${DATA:-$ROOT/.mnist}
BUDGET_S=${BUDGET_S:-450}
PACKAGES="numpy scipy numba cupy-cuda13x cupy-cuda12x jax jaxlib jax-cuda13-plugin jax-cuda13-pjrt torch pytest \
threadpoolctl matplotlib tqdm array-api-compat array-api-strict"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" || exit 2
WORK=$(mktemp -d /tmp/gpu_check_work.XXXXXX)
START=$(date +%s)

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }

# step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, and never into the last 40 s of the budget (the
# benchmark's and the summary's); record its exit status and duration in steps.tsv.
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  [ "$limit" -gt $(( $(left) - 40 )) ] && limit=$(( $(left) - 40 ))
  [ "$limit" -lt 5 ] && limit=5
  echo
  echo "=== [$(elapsed) s] $name (limit ${limit} s)"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$WORK/steps.tsv"
  echo "=== [$(elapsed) s] $name: exit $rc"
  return $rc
}

main() {
  echo "gpu_check.sh: $(date -u +%FT%TZ) on $(hostname), checkout $ROOT (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')), DRY_RUN=$DRY_RUN, OUT=$OUT"

  # 0. what the machine has
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/nvidia-smi.txt"
  else
    echo "no nvidia-smi on this machine" | tee "$WORK/nvidia-smi.txt"
  fi
  "$PYTHON" --version
  # shellcheck disable=SC2086  # the package names are words
  "$PYTHON" -m pip show $PACKAGES 2>&1 | grep -E '^(Name|Version|Location):|not found' | tee "$WORK/packages.txt"

  # 1. wheels into a fresh target, the checkout on the path, the carried MNIST
  local site
  site=$(mktemp -d /tmp/minisgd_site.XXXXXX)
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "gpu_check.sh: no wheels in $WHEELS: run 'bash benchmarks/gpu_prepare.sh' in the checkout on the CPU machine and carry .whl" >&2
    return 2
  fi
  step install 60 "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl || return 2
  echo "installed: $(ls "$site" | grep -v 'dist-info$' | tr '\n' ' ')"
  export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ ! -f "$DATA/mnist/$f.gz" ]; then
      echo "gpu_check.sh: $DATA/mnist/$f.gz is missing: run 'bash benchmarks/gpu_prepare.sh' and carry .mnist" >&2
      return 2
    fi
  done
  export MINISGD_DATA=$DATA MINISGD_OFFLINE=1
  "$PYTHON" -c "import array_api_compat, array_api_strict, minisgd, os
for m in (array_api_compat, array_api_strict, minisgd): print(m.__name__, getattr(m, '__version__', ''), os.path.dirname(m.__file__))
print('MINISGD_DATA', os.environ['MINISGD_DATA'], sorted(os.listdir(os.path.join(os.environ['MINISGD_DATA'], 'mnist'))))" || return 2

  # 2. the GPU tests
  step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml "$WORK/tests.xml" tests

  # 3. keskar-mnist on the GPU against the CPU
  local device=gpu small
  [ "$DRY_RUN" = 1 ] && device=cpu  # NumPy in place of CuPy
  small=(--set epochs=2 seeds=1 optimizers=adam)
  [ "$DRY_RUN" = 1 ] && small=(--set n_train=300 hidden=8,8 epochs=1 seeds=1 optimizers=adam sharpness_examples=50
                               subspace_dim=3 alphas=3 interp_train_examples=50 sharpness_maxiter=2)
  local run=("$PYTHON" -m minisgd run keskar-mnist --quick)
  local kinds=(f64 quick)
  [ "$DRY_RUN" = 1 ] && kinds=(f64)  # on NumPy the quick pair would run the same code again
  for kind in "${kinds[@]}"; do
    local extra=()
    [ $kind = f64 ] && extra=("${small[@]}" dtype=float64)
    local jobs=1
    [ $kind = quick ] && [ "$DRY_RUN" != 1 ] && jobs=4  # 4 points on 16 cores: 4 BLAS threads each
    step "keskar_${kind}_cpu" 60 "${run[@]}" "${extra[@]}" --device cpu --jobs $jobs --out "$WORK/keskar_${kind}_cpu"
    step "keskar_${kind}_gpu" 120 "${run[@]}" "${extra[@]}" --device $device --out "$WORK/keskar_${kind}_gpu"
    local rtol=1e-6
    [ $kind = quick ] && rtol=0.05  # float32 training on two machines: rounding grows over 384 steps; reported
    step "keskar_${kind}_compare" 30 "$PYTHON" benchmarks/gpu_check_report.py compare "$WORK/keskar_${kind}_cpu" \
      "$WORK/keskar_${kind}_gpu" --rtol $rtol --title "keskar-mnist ($kind): GPU against CPU" \
      --json "$WORK/keskar_$kind.json" --md "$WORK/keskar_$kind.md"
  done

  # 4. the benchmark, in the time that is left
  local budget=$(( $(left) - 60 )) dry=()
  [ "$DRY_RUN" = 1 ] && dry=(--dry-run)
  # its own --budget makes it skip (and say so) what would not fit; the step's limit (left - 40 s) is the backstop
  step bench "$(left)" "$PYTHON" benchmarks/bench_gpu.py "${dry[@]}" --budget "$budget" \
    --json "$WORK/bench_gpu.json" --md "$WORK/bench_gpu.md"

  # 5. the summary
  local flag=()
  [ "$DRY_RUN" = 1 ] && flag=(--dry-run)
  "$PYTHON" benchmarks/gpu_check_report.py summary "$WORK" "${flag[@]}" --json "$WORK/summary.json" --md "$WORK/summary.md"
  local rc=$?
  cp "$WORK/summary.md" "$WORK/summary.json" "$OUT"/ 2>/dev/null
  for f in keskar_f64.json keskar_quick.json bench_gpu.json; do [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT"/; done
  echo "gpu_check.sh: done in $(elapsed) s, exit $rc; results in $OUT (work folder $WORK)"
  return $rc
}

main 2>&1 | tee "$OUT/log"
