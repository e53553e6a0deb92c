"""Benchmark of batch normalization (issue 18): Keskar's F1 training step, eval-mode HVP and exact Hessian.

    PYTHONPATH=. python benchmarks/bench_batchnorm.py            # full configuration (a few minutes)
    PYTHONPATH=. python benchmarks/bench_batchnorm.py --quick    # tiny configuration, a smoke test in seconds

Sections (each one a Markdown table on stdout):
  a. one float32 Adam step of F1, 784 -> 5 x [512, BN, ReLU] -> 10 (P = 1,462,794), cross-entropy, at B = 256 (SB)
     and B = 6,000 (LB): minisgd in training mode (batch statistics, exact gradient through them, running statistics
     updated) against the same net without BN (784-5x512-10, plain loss_and_grad) and against PyTorch
     (nn.Sequential with BatchNorm1d from minisgd's to_torch, the same numbers; CrossEntropyLoss, optim.Adam).
  b. a small BN net in eval mode (running statistics fixed), float64: net.eval_mode(stats).hvp (one direction) and
     .hessian against torch.func (jvp of grad; torch.func.hessian) on the same function of the flat theta
     (functional_call of the eval-mode model), and against the plain net of the same widths without BN.

Every timing prints the load: the cores that *other* processes used during it (``_common.ForeignLoad``; 1.0 is a
whole core taken), and the 1-minute load average at the start and end. PyTorch is optional ("n/a" without it).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (no NumPy import at module level: threads are set first)

FULL = {"step_sizes": [784] + [512] * 5 + [10], "step_batches": [256, 6000], "step_repeats": {256: 10, 6000: 3},
        "small_sizes": [32, 32, 32, 10], "small_N": 512, "repeats": 3}
QUICK = {"step_sizes": [784, 64, 64, 10], "step_batches": [32, 256], "step_repeats": {32: 3, 256: 2},
         "small_sizes": [8, 6, 6, 3], "small_N": 64, "repeats": 2}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    return p.parse_args(argv)


def _foreign():
    return C.TIMINGS[-1]["foreign"]


def _best(fn, repeats, label):
    return min(C.timeit(fn, repeats=repeats, warmup=1, label=label))


def _data(np, N, d, K, seed, dtype):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, d)).astype(dtype), rng.integers(0, K, N)


def step_section(np, torch, cfg):
    """a. One Adam step of F1 (float32) in training mode, against the plain net and against PyTorch."""
    from minisgd import MLP
    from minisgd.core import batchnorm
    from minisgd.training.optim import Adam

    sizes, rule, rows = cfg["step_sizes"], Adam(), []
    bn_net = MLP(sizes, activation="relu", batch_norm=True)
    plain = MLP(sizes, activation="relu")
    theta_bn = bn_net.init(seed=0, scheme="he", dtype="float32")
    theta_plain = plain.init(seed=0, scheme="he", dtype="float32")
    for B in cfg["step_batches"]:
        X, y = _data(np, B, sizes[0], sizes[-1], seed=B, dtype="float32")
        reps = cfg["step_repeats"][B]
        state = {"theta": theta_bn.copy(), "opt": rule.init(theta_bn), "stats": bn_net.initial_statistics("float32")}

        def bn_step():
            _, g, batch_stats = batchnorm.train_loss_and_grad(bn_net, state["theta"], X, y)
            state["theta"], state["opt"] = rule.update(state["theta"], g, state["opt"], 1e-3)
            state["stats"] = batchnorm.update_running_statistics(bn_net, state["stats"], batch_stats, B)

        pstate = {"theta": theta_plain.copy(), "opt": rule.init(theta_plain)}

        def plain_step():
            _, g = plain.loss_and_grad(pstate["theta"], X, y)
            pstate["theta"], pstate["opt"] = rule.update(pstate["theta"], g, pstate["opt"], 1e-3)

        t_bn = _best(bn_step, reps, f"minisgd BN step B={B}")
        f_bn = _foreign()
        t_plain = _best(plain_step, reps, f"minisgd plain step B={B}")
        f_plain = _foreign()
        t_torch = f_torch = None
        if torch is not None:
            model = bn_net.to_torch(theta_bn)  # training mode: BatchNorm1d on batch statistics
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            loss_fn = torch.nn.CrossEntropyLoss()
            Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

            def torch_step():
                opt.zero_grad(set_to_none=True)
                loss_fn(model(Xt), yt).backward()
                opt.step()

            t_torch = _best(torch_step, reps, f"torch BN step B={B}")
            f_torch = _foreign()
        rows.append([B, C.fmt_time(t_bn), C.fmt_time(t_plain), C.fmt_time(t_torch), C.fmt(t_bn / t_plain, ".2f"),
                     C.fmt(None if t_torch is None else t_torch / t_bn, ".2f"),
                     "/".join(C.fmt(f) for f in (f_bn, f_plain, f_torch))])
    print(f"### a. F1 Adam step, float32, {'-'.join(map(str, sizes))} with BN on every hidden layer "
          f"(P = {bn_net.num_params:,}; without BN {plain.num_params:,})\n")
    print(C.markdown_table(["B", "minisgd BN (train mode)", "minisgd no BN", "torch BatchNorm1d",
                            "BN / no BN", "torch / minisgd BN", "other procs' cores (BN/noBN/torch)"], rows))
    print()


def _torch_eval_loss(torch, net, theta, stats, X, y):
    """``loss(theta_t)``: the eval-mode BN net's mean cross-entropy as a function of a flat torch theta, through
    ``torch.func.functional_call`` of minisgd's ``to_torch`` model (its parameters sliced out of theta)."""
    from minisgd.core.interop import to_torch
    model = to_torch(net, theta, stats)  # eval mode: BatchNorm1d on the running statistics ``stats``
    names = [name for name, _ in model.named_parameters()]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def views(th):
        out = []
        for l, layer in enumerate(net.layers):
            split = layer.start + layer.fan_in * layer.fan_out
            out += [th[layer.start:split].reshape(layer.fan_in, layer.fan_out).T, th[split:layer.stop]]
            if l < len(net.bn_layers):
                bn = net.bn_layers[l]
                out += [th[bn.start:bn.start + bn.width], th[bn.start + bn.width:bn.stop]]
        return dict(zip(names, out))

    def loss(th):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, views(th), (Xt,)), yt)
    return loss


def curvature_section(np, torch, cfg):
    """b. Eval-mode HVP and exact Hessian of a small BN net (float64) against torch.func and the plain net."""
    from minisgd import MLP
    from minisgd.core import batchnorm

    sizes, N, reps = cfg["small_sizes"], cfg["small_N"], cfg["repeats"]
    net = MLP(sizes, activation="tanh", batch_norm=True)
    plain = MLP(sizes, activation="tanh")
    theta, theta_plain = net.init(seed=1), plain.init(seed=1)
    X, y = _data(np, N, sizes[0], sizes[-1], seed=2, dtype="float64")
    rng = np.random.default_rng(3)
    theta[[i for bn in net.bn_layers for i in range(bn.start, bn.stop)]] += 0.1 * rng.standard_normal(
        sum(bn.stop - bn.start for bn in net.bn_layers))  # gamma != 1, beta != 0: every fold term nonzero
    stats = batchnorm.train_forward(net, theta, X).statistics  # a plausible running state
    ev = net.eval_mode(stats)
    v, v_plain = rng.standard_normal(net.num_params), rng.standard_normal(plain.num_params)
    rows = []
    t_hvp = _best(lambda: ev.hvp(theta, X, y, v), reps, "minisgd eval hvp")
    f_hvp = _foreign()
    t_hvp_plain = _best(lambda: plain.hvp(theta_plain, X, y, v_plain), reps, "minisgd plain hvp")
    t_h = _best(lambda: ev.hessian(theta, X, y), reps, "minisgd eval hessian")
    f_h = _foreign()
    t_h_plain = _best(lambda: plain.hessian(theta_plain, X, y), reps, "minisgd plain hessian")
    t_thvp = t_th = f_th = err_hvp = err_h = None
    if torch is not None:
        loss = _torch_eval_loss(torch, net, theta, stats, X, y)
        th_t, v_t = torch.from_numpy(theta.copy()), torch.from_numpy(v)
        assert abs(float(loss(th_t)) - float(ev.loss(theta, X, y))) < 1e-10, "the torch twin computes another loss"

        def torch_hvp():
            return torch.func.jvp(torch.func.grad(loss), (th_t,), (v_t,))[1]

        t_thvp = _best(torch_hvp, reps, "torch.func hvp")
        err_hvp = float(np.max(np.abs(torch_hvp().numpy() - ev.hvp(theta, X, y, v)))
                        / np.max(np.abs(torch_hvp().numpy())))
        t_th = _best(lambda: torch.func.hessian(loss)(th_t), max(1, reps - 1), "torch.func.hessian")
        f_th = _foreign()
        H_t = torch.func.hessian(loss)(th_t).numpy()
        err_h = float(np.max(np.abs(H_t - ev.hessian(theta, X, y))) / np.max(np.abs(H_t)))
    rows.append(["HVP (1 direction)", C.fmt_time(t_hvp), C.fmt_time(t_hvp_plain), C.fmt_time(t_thvp),
                 C.fmt(t_hvp / t_hvp_plain), C.fmt(None if t_thvp is None else t_thvp / t_hvp),
                 C.fmt(err_hvp, ".1e"), C.fmt(f_hvp)])
    rows.append(["exact Hessian", C.fmt_time(t_h), C.fmt_time(t_h_plain), C.fmt_time(t_th),
                 C.fmt(t_h / t_h_plain), C.fmt(None if t_th is None else t_th / t_h), C.fmt(err_h, ".1e"),
                 f"{C.fmt(f_h)}/{C.fmt(f_th)}"])
    print(f"### b. eval mode, float64, {'-'.join(map(str, sizes))} tanh with BN (P = {net.num_params:,}; "
          f"without BN {plain.num_params:,}), N = {N}\n")
    print(C.markdown_table(["", "minisgd eval BN", "minisgd no BN", "torch.func", "BN / no BN", "torch / minisgd BN",
                            "max|d|/max|ref| vs torch", "other procs' cores"], rows))
    print()


def main(argv=None):
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    desc = C.set_threads(threads)
    import numpy as np
    C.limit_blas(threads)
    torch = None if args.no_torch else C.load_torch(threads)
    load = os.getloadavg()[0]
    print(f"# bench_batchnorm ({'quick' if args.quick else 'full'}): {desc}")
    print(f"machine: {C.machine_info(np, torch=torch)}")
    print(f"1-min load average at start: {load:.2f}" + (" (something else is running: timings are noisy)"
                                                         if load > 0.5 else "") + "\n")
    t0 = time.perf_counter()
    step_section(np, torch, cfg)
    curvature_section(np, torch, cfg)
    print(f"(total {time.perf_counter() - t0:.0f} s; 1-min load average at the end {os.getloadavg()[0]:.2f}; "
          "'other procs' cores': CPU used by other processes during the accepted timing batch, 1.0 = one core)")


if __name__ == "__main__":
    main()
