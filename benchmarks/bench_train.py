"""Overhead of the trainer: ``minisgd.training.train`` against a hand-written SGD loop on the same batches.

    python benchmarks/bench_train.py              # 784-512-512-10 float32 MLP, batch 256 (about a minute on 2 cores)
    python benchmarks/bench_train.py --quick      # small net, seconds

Both sides do the same work per step: gather the batch (the trainer's own index arrays, listed with
``minisgd.training.train.batch_sequence``), ``net.loss_and_grad``, and the SGD update. The trainer also logs the minibatch
loss, the gradient norm (one O(P) reduction), lr, batch size, examples and wall time each step. Columns:

* ``hand loop``: ``loss, g = net.loss_and_grad(theta, X[idx], y[idx]); theta -= lr * g``;
* ``train() loop``: the trainer's steps only (from its own ``wall_time``, which excludes the final evaluation);
* ``train() call``: the whole call, with the final evaluation on a 256-example subset and a 256-example test set.

Runs alternate between the two sides (``--repeats`` rounds) and the table gives the best and the median rate of
each, and the median of the per-round ratios (each pair of runs adjacent in time), so a machine shared with other
jobs shows up as spread rather than as a bias; the "per CPU second" rows
divide by the process's CPU time instead of wall time, which other jobs disturb much less. Target: the trainer
within 10% of the hand loop.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (sets thread counts before NumPy is imported)

FULL = {"sizes": [784, 512, 512, 10], "batch": 256, "steps": 20, "N": 16384}
QUICK = {"sizes": [784, 64, 10], "batch": 256, "steps": 40, "N": 4096}


def hand_loop(net, theta, X, y, cfg, steps):
    from minisgd.training.train import batch_sequence

    idx_all = [i for e in range(steps // (len(X) // cfg.batch_size) + 1) for i in batch_sequence(cfg, len(X), e)]
    theta = theta.copy()
    t0, c0 = time.perf_counter(), time.process_time()
    for idx in idx_all[:steps]:
        loss, g = net.loss_and_grad(theta, X[idx], y[idx])
        theta -= cfg.lr * g
    return time.perf_counter() - t0, time.process_time() - c0, theta


def trainer(net, theta, X, y, cfg):
    from minisgd.training.train import train

    t0, c0 = time.perf_counter(), time.process_time()
    r = train(net, theta, (X, y, X[:256], y[:256]), cfg, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0, r.history["wall_time"][-1], r.theta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small configuration (smoke test)")
    p.add_argument("--repeats", type=int, default=15, help="alternating rounds of both sides")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all cores)")
    args = p.parse_args(argv)
    threads = C.set_threads(args.threads or os.cpu_count() or 1)
    import numpy as np

    import minisgd as ms
    from minisgd.training.train import TrainConfig
    conf = QUICK if args.quick else FULL
    rng = np.random.default_rng(0)
    N, d = conf["N"], conf["sizes"][0]
    X = rng.random((N, d), dtype=np.float32)  # pixel-like values in [0, 1)
    y = rng.integers(0, conf["sizes"][-1], N)
    net = ms.MLP(conf["sizes"], activation="tanh")
    theta0 = net.init(seed=0, dtype="float32")
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=conf["batch"], max_steps=conf["steps"], eval_every=None,
                      eval_subset=256, seed=0)
    S = conf["steps"]
    hand_loop(net, theta0, X, y, cfg, 3)  # warm-up (BLAS threads, caches)
    rates = {"hand loop": [], "train() loop": [], "train() call": []}
    cpu_rates = {"hand loop": [], "train() call": []}
    for _ in range(args.repeats):
        t_hand, c_hand, theta_hand = hand_loop(net, theta0, X, y, cfg, S)
        t_call, c_call, t_loop, theta_train = trainer(net, theta0, X, y, cfg)
        rates["hand loop"].append(S / t_hand)
        rates["train() loop"].append(S / t_loop)
        rates["train() call"].append(S / t_call)
        cpu_rates["hand loop"].append(S / c_hand)
        cpu_rates["train() call"].append(S / c_call)
    same = float(np.max(np.abs(theta_hand - theta_train)))
    print(f"MLP {conf['sizes']} float32 tanh + cross-entropy, P = {net.num_params}, batch {conf['batch']}, "
          f"{S} SGD steps, N = {N}; numpy {np.__version__}, {threads}, python {sys.version.split()[0]}")
    print(f"max |theta_hand - theta_train| = {same:.3g} (same batches, same updates)\n")
    best_hand = max(rates["hand loop"])
    print("| side | best steps/s | median steps/s | best vs hand loop | every round (steps/s) |")
    print("|---|---|---|---|---|")
    for name, r in rates.items():
        rounds = " ".join(f"{v:.1f}" for v in r)
        print(f"| {name} | {max(r):.2f} | {statistics.median(r):.2f} | {max(r) / best_hand:.3f} | {rounds} |")
    for name, r in cpu_rates.items():
        rounds = " ".join(f"{v:.1f}" for v in r)
        print(f"| {name}, per CPU second | {max(r):.2f} | {statistics.median(r):.2f} | "
              f"{max(r) / max(cpu_rates['hand loop']):.3f} | {rounds} |")
    ratios = [t / h for t, h in zip(rates["train() loop"], rates["hand loop"])]
    print(f"\nper-round ratio train() loop / hand loop (adjacent in time): median {statistics.median(ratios):.3f}, "
          f"quartiles {statistics.quantiles(ratios, n=4)[0]:.3f} - {statistics.quantiles(ratios, n=4)[2]:.3f}")
    ok = max(rates["train() loop"]) >= 0.9 * best_hand
    print(f"\ntarget: train() within 10% of the hand loop: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
