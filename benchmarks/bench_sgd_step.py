"""float32 SGD step of a 784-512-512-10 MLP, minisgd against a plain torch.nn loop, ReLU and tanh, batch 256 and 4096.

    .venv-bench/bin/python benchmarks/bench_sgd_step.py

Alternating rounds (minisgd, then PyTorch, six times) and the best time per step of each side: on a shared machine
this is fairer than timing one side after the other. 2 threads for both; the same parameters on both sides.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import ForeignLoad, load_torch, markdown_table, set_threads, torch_sequential  # noqa: E402

SIZES = [784, 512, 512, 10]
LR = 0.05


def best_per_step(step, steps, rounds):
    """Best seconds per step over ``rounds`` rounds of ``steps`` steps (one warm-up step each round)."""
    best = float("inf")
    for _ in range(rounds):
        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main():
    set_threads(2)
    import numpy as np

    import minisgd as ms
    torch = load_torch(2)
    if torch is None:
        sys.exit("PyTorch is not installed: pip install -e '.[bench]'")
    rows = []
    for activation in ("relu", "tanh"):
        net = ms.MLP(SIZES, activation=activation)
        rng = np.random.default_rng(0)
        for B in (256, 4096):
            X, y = rng.random((B, 784), dtype=np.float32), rng.integers(0, 10, B)
            theta = net.init(seed=0, dtype="float32")
            model = torch_sequential(torch, theta.astype(np.float64), SIZES, activation).float()
            opt, loss_fn = torch.optim.SGD(model.parameters(), lr=LR), torch.nn.CrossEntropyLoss()
            tX, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
            state = {"theta": theta}

            def ours():
                _, g = net.loss_and_grad(state["theta"], X, y)
                state["theta"] -= np.float32(LR) * g

            def theirs():
                opt.zero_grad()
                loss_fn(model(tX), ty).backward()
                opt.step()

            steps = 20 if B == 256 else 4
            best = {"minisgd": float("inf"), "torch": float("inf")}
            with ForeignLoad() as load:
                for _ in range(6):  # alternate the two sides so that background load hits both alike
                    best["minisgd"] = min(best["minisgd"], best_per_step(ours, steps, 1))
                    best["torch"] = min(best["torch"], best_per_step(theirs, steps, 1))
            rows.append([activation, B, f"{best['minisgd'] * 1e3:.2f} ms", f"{best['torch'] * 1e3:.2f} ms",
                         f"{best['torch'] / best['minisgd']:.2f}", f"{load.cores:.2f}"])
    print(markdown_table(["activation", "batch", "minisgd", "PyTorch", "PyTorch / minisgd", "other CPU (cores)"], rows))


if __name__ == "__main__":
    main()
