"""The processes of tests/test_faults.py: a small scenario and training run, and the faults a child arms.

A child runs ``python -c "import faults_toy; faults_toy.child()" ARGS``: ``minisgd ARGS`` (or, for ``train OUT
[HOLD]``, :func:`train_child`) with :func:`scenario` registered and the fault named in ``$FAULT`` armed:
``ACTION:NAME[#N]`` SIGKILLs the child ``before`` :func:`~minisgd.training.storage.atomic_write_bytes` writes the N-th
file called NAME (default the first), at the ``replace`` that would put it in place (its temporary file complete), or
right ``after``. ``$FAULT_FSIZE`` limits the size of every file it writes (RLIMIT_FSIZE: writes beyond it fail with
EFBIG, as on a full disk). The processes synchronize through files only: a held point writes ``running-SEED`` (its
PID) into the folder ``$FAULTS_HOLD`` and waits there for a ``release`` file.

A module of its own, light to import: the pool's workers import it to run :func:`fault_run_point`.
"""
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WAIT = 120  # seconds any one wait may take on a loaded machine before the test fails
NAME = "faults-toy"
HOLD = "FAULTS_HOLD"  # a folder: points with seed >= 2 announce themselves there and wait for its "release" file


# ---- the scenario: a small network trained for real, its Hessian spectrum ------------------------------------------

@dataclass(frozen=True)
class FaultConfig:
    seeds: int = 4
    seed: int = 0
    steps: int = 30  # Adam steps per point
    big: int = 2  # this seed also returns 16,384 random numbers (128 kB: more than the disk-full test allows)
    device: str = "cpu"  # the CLI's --device


def fault_grid(config):
    seeds = range(config.seed, config.seed + config.seeds)
    return [{"steps": config.steps, "big": config.big, "seed": s} for s in seeds]


def _announce(path):
    """Write this process's PID to ``path`` whole (renamed into place: a reader never sees it empty)."""
    tmp = path.with_name(f"{path.name}.part")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


def _hold(seed):
    folder = os.environ.get(HOLD)
    if not folder or seed < 2:
        return
    folder = Path(folder)
    _announce(folder / f"running-{seed}")
    deadline = time.monotonic() + WAIT
    while not (folder / "release").exists():  # the test creates it, or stops this sweep
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.02)


def fault_run_point(point):
    import minisgd as ms
    _hold(point["seed"])
    rng = np.random.default_rng(point["seed"])
    X = rng.standard_normal((64, 5))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    net = ms.MLP([5, 8, 2], activation="tanh")
    run = ms.train(net, net.init(seed=point["seed"]), (X, y), ms.TrainConfig(
        optimizer="adam", lr=0.05, batch_size=16, max_steps=point["steps"], seed=point["seed"]), progress=False)
    result = {"theta": run.theta, "loss": run.history["loss"], "eigenvalues": np.linalg.eigvalsh(
        net.hessian(run.theta, X, y)), "final_loss": run.history["loss"][-1]}
    if point["seed"] == point["big"]:
        result["big"] = rng.standard_normal(16384)
    return result


def fault_summarize(config, records):
    return {"loss": [{"seed": r["point"]["seed"], "loss": r["result"]["final_loss"]} for r in records]}, "faults"


def scenario():
    """The scenario (made on demand: importing ``minisgd.experiments`` loads every scenario, which the workers do not
    need)."""
    from minisgd.experiments import Scenario
    return Scenario(name=NAME, description="a small trained network and its spectrum, for fault tests",
                    config_class=FaultConfig, quick={}, grid=fault_grid, run_point=fault_run_point,
                    summarize=fault_summarize, figures=lambda config, records: {})


# ---- the child and its faults ---------------------------------------------------------------------------------------

def _arm(fault):
    """Patch the writes of this process so that it SIGKILLs itself at the moment ``fault`` names."""
    from minisgd import sweep
    from minisgd.training import checkpoint as ckpt
    from minisgd.training import storage
    action, _, target = fault.partition(":")
    name, _, nth = target.partition("#")
    seen = {"count": 0}
    real_write, real_replace = storage.atomic_write_bytes, os.replace

    def due(path):
        if Path(path).name != name:
            return False
        seen["count"] += 1
        return seen["count"] == int(nth or 1)

    def write(path, data):
        if action == "before" and due(path):
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, data)

    def replace(src, dst):
        hit = action in ("replace", "after") and due(dst)
        if hit and action == "replace":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    for module in (storage, sweep, ckpt):
        module.atomic_write_bytes = write


def child():
    """The child's ``main``: ``minisgd ARGS`` with the scenario registered, the fault in ``$FAULT`` armed, and a file
    size limit of ``$FAULT_FSIZE`` bytes (writes beyond it fail with EFBIG, as on a full disk)."""
    if os.environ.get("FAULT_FSIZE"):
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
        limit = int(os.environ["FAULT_FSIZE"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if os.environ.get("FAULT"):
        _arm(os.environ["FAULT"])
    if sys.argv[1] == "train":
        sys.exit(train_child(*sys.argv[2:]))
    from minisgd import experiments
    from minisgd.cli import main
    experiments.SCENARIOS[NAME] = scenario()
    sys.exit(main(sys.argv[1:]))


def problem():
    """The training data of the checkpoint tests."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return X, y


def train_child(out, hold=""):
    """Train (or resume) the checkpoint test's problem into ``out``; with ``hold``, wait at step 3 for the file
    ``hold/release`` after announcing this PID in ``hold/running``."""
    import minisgd as ms
    from minisgd.training import checkpoint as ckpt
    X, y = problem()
    net = ms.MLP([4, 6, 2], activation="tanh")

    def wait(net_, theta, data, step):
        if hold and step == 3:
            _hold_training(Path(hold))
        return 0.0

    cfg = ms.TrainConfig(optimizer="adam", lr=0.05, batch_size=8, epochs=3, checkpoint_every=5, out=out, seed=1)
    ms.train(net, net.init(seed=0), (X, y), cfg, callbacks=[ms.every(1, wait, name="wait")],
             resume=True if ckpt.has_checkpoint(out) else None, progress=False)
    return 0


def _hold_training(folder):
    _announce(folder / "running")
    deadline = time.monotonic() + WAIT
    while not (folder / "release").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
