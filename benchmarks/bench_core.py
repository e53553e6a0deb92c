"""Benchmark of the minisgd core against JAX and PyTorch, in one run, with equal thread counts.

    python benchmarks/bench_core.py            # full configuration (a few minutes; ~13 GB peak for jax/torch Hessians)
    python benchmarks/bench_core.py --quick    # tiny configuration, a smoke test in seconds
    python benchmarks/bench_core.py --json results.json --threads 2 --only ace

Sections (each one a Markdown table on stdout):
  a. exact float64 Hessian, MLP 64-32-32-10 tanh + cross-entropy, N = 2048 (P = 3466):
     net.hessian vs jax.jit(jax.hessian(loss)) vs torch.func.hessian(loss), loss a function of the flat theta;
     time, JAX compile time, ratio, max|dH|/max|H|, 2 N P^2 flops, fraction of the measured float64 GEMM rate.
  b. peak memory of net.hessian (tracemalloc, and RSS high-water) as a multiple of the P x P result.
  c. per-example gradients (N, P): net.per_example_grads vs jax.jit(jax.vmap(jax.grad(.))) vs torch.func.vmap(grad).
  d. HVP with k = 1, 8, 32 directions (net.hvp with V (P, k)) vs k calls of net.loss_and_grad; jax jvp-of-grad.
  e. float32 SGD step, MLP 784-512-512-10 tanh + cross-entropy, batch 256 and 4096:
     minisgd loss_and_grad + theta -= lr * g vs a torch.nn.Sequential / CrossEntropyLoss / optim.SGD loop.

JAX and PyTorch are optional: a missing library is an "n/a" column. The competitors compute the same function with
the same parameters (converted from the flat theta; the converters are checked: same loss, same Hessian).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (no NumPy import at module level: threads are set first)

FULL = {
    "hess_sizes": [64, 32, 32, 10], "hess_N": 2048, "activation": "tanh",
    "repeats": 5, "competitor_repeats": 2, "gemm_n": 4096,
    "hvp_ks": [1, 8, 32],
    "sgd_sizes": [784, 512, 512, 10], "sgd_batches": [256, 4096], "sgd_steps": {256: 40, 4096: 6},
    "sgd_repeats": 3, "lr": 0.05,
}
QUICK = {
    "hess_sizes": [16, 8, 8, 4], "hess_N": 128, "activation": "tanh",
    "repeats": 3, "competitor_repeats": 2, "gemm_n": 1024,
    "hvp_ks": [1, 8, 32],
    "sgd_sizes": [784, 64, 64, 10], "sgd_batches": [32, 256], "sgd_steps": {32: 10, 256: 5},
    "sgd_repeats": 2, "lr": 0.05,
}
TARGETS = {
    "hessian_vs_jax": 10.0,      # jax.hessian time / minisgd time >=
    "hessian_vs_torch": 25.0,    # torch.func.hessian time / minisgd time >=
    "hessian_gemm_frac": 0.50,   # (2 N P^2 / t) / GEMM rate >=
    "hessian_mem": 1.5,          # tracemalloc peak / (P^2 * itemsize) <= 1.5 (+ O(N P))
    "pex_vs_jax": 1.0,           # jax time / minisgd time >=
    "hvp_ratio": 3.0,            # hvp(k) time / (k x loss_and_grad) time <=
    "sgd_vs_torch": 1.0,         # torch step time / minisgd step time >=
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every library (default: all cores of this machine)")
    p.add_argument("--only", default="abcde", help="sections to run, e.g. 'ad' (default abcde)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats for minisgd (best is reported)")
    p.add_argument("--competitor-repeats", type=int, default=None, help="timed repeats for jax / torch")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", metavar="PATH", help="also write all numbers as JSON")
    p.add_argument("--profile", action="store_true",
                   help="print a cProfile breakdown (top functions by own time) of net.hessian, net.per_example_grads "
                        "and one SGD step, after the tables")
    p.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def best(times):
    return min(times) if times else None


def ratio(num, den):
    return None if num is None or den is None or den == 0 else num / den


def rel_diff(np, A, B):
    if A is None or B is None:
        return None
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return float(np.abs(A - B).max() / max(np.abs(A).max(), 1e-300))


def load_minisgd():
    try:
        import minisgd
        from minisgd.core.mlp import MLP
        return minisgd, MLP
    except Exception as exc:  # the core is not written yet: competitors still run
        print(f"> minisgd not importable ({type(exc).__name__}: {exc}); its columns are n/a\n", file=sys.stderr)
        return None, None


def make_theta(np, MLP, sizes, activation, dtype="float64"):
    if MLP is not None:
        net = MLP(sizes, activation=activation, loss="cross_entropy")
        theta = net.init(seed=0, dtype=dtype)
        assert net.num_params == C.num_params(sizes), (net.num_params, C.num_params(sizes))
        lay = [(l.fan_in, l.fan_out, l.start, l.stop) for l in net.layers]
        assert lay == C.layer_slices(sizes), (lay, C.layer_slices(sizes))
        return net, np.asarray(theta)
    return None, C.init_np(np, sizes, seed=0, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# a. Hessian
# ----------------------------------------------------------------------------------------------

def bench_hessian(np, MLP, jax, torch, cfg, R):
    sizes, N, act = cfg["hess_sizes"], cfg["hess_N"], cfg["activation"]
    net, theta = make_theta(np, MLP, sizes, act)
    P = theta.size
    X, y = C.synthetic_data(np, N, sizes[0], sizes[-1], seed=1)
    res = {"sizes": sizes, "N": N, "P": P, "flops": 2.0 * N * P * P}
    res["gemm_gflops"] = C.gemm_rate(np, cfg["gemm_n"])
    res["gemm_n"] = cfg["gemm_n"]
    res["loss_numpy_ref"] = C.loss_np(np, theta, X, y, sizes, act)
    H = None
    if net is not None:
        res["loss_minisgd"] = float(net.loss(theta, X, y))
        t0 = time.perf_counter()
        H = np.asarray(net.hessian(theta, X, y))  # warm-up (Numba compilation)
        res["minisgd_first_call"] = time.perf_counter() - t0
        ts = C.timeit(lambda: net.hessian(theta, X, y), repeats=R["repeats"], warmup=0, label="minisgd hessian")
        res["minisgd_time"] = best(ts)
        res["minisgd_times"] = ts
        res["minisgd_gflops"] = res["flops"] / best(ts) / 1e9
        res["minisgd_gemm_frac"] = res["minisgd_gflops"] / res["gemm_gflops"]
        res["minisgd_symmetry"] = rel_diff(np, H, H.T)
        try:  # the GEMM flops the block algorithm actually runs (lower triangle only), if the core says
            from minisgd.core.hessian import hessian_flops
            res["minisgd_actual_flops"] = float(hessian_flops(net, N))
            res["minisgd_actual_gemm_frac"] = res["minisgd_actual_flops"] / res["minisgd_time"] / 1e9 / res["gemm_gflops"]
        except Exception:
            pass
    # rough memory need of forward-over-reverse with all P tangents at once (measured on 64-32-32-10):
    need = 1.2e9 + 6.3e6 * N * (P / 3466.0) * (sum(sizes[1:-1]) / 64.0)
    from minisgd.backend import available_memory
    avail = available_memory(np)
    res["competitor_mem_estimate_GB"] = need / 1e9
    Href = H
    if jax is not None:
        if avail is not None and need > 0.9 * avail:
            res["jax_skipped"] = f"needs ~{need / 1e9:.0f} GB, {avail / 1e9:.0f} GB available"
        else:
            jf = C.jax_functions(jax, sizes, act)
            res["loss_jax"] = float(jf["loss"](theta, X, y))
            comp, tc = C.jax_compile(jf["hessian"], theta, X, y)
            res["jax_compile"] = tc
            ts = C.timeit(lambda: comp(theta, X, y).block_until_ready(), repeats=R["competitor_repeats"], warmup=1,
                           label="jax hessian", retries=2, budget_s=240)
            res["jax_time"] = best(ts)
            res["jax_times"] = ts
            Hj = np.asarray(comp(theta, X, y))
            res["jax_diff"] = rel_diff(np, Href, Hj) if Href is not None else None
            if Href is None:
                Href = Hj
            del Hj, comp
    if torch is not None:
        if avail is not None and need > 0.9 * avail:
            res["torch_skipped"] = f"needs ~{need / 1e9:.0f} GB, {avail / 1e9:.0f} GB available"
        else:
            tf = C.torch_functions(torch, sizes, act)
            tt, Xt, yt = torch.from_numpy(theta), torch.from_numpy(X), torch.from_numpy(y)
            res["loss_torch"] = float(tf["loss"](tt, Xt, yt))
            ts = C.timeit(lambda: tf["hessian"](tt, Xt, yt), repeats=R["competitor_repeats"], warmup=1,
                           label="torch hessian", retries=2, budget_s=300)
            res["torch_time"] = best(ts)
            res["torch_times"] = ts
            Ht = tf["hessian"](tt, Xt, yt).numpy()
            res["torch_diff"] = rel_diff(np, Href, Ht) if Href is not None else None
            del Ht
    res["jax_over_minisgd"] = ratio(res.get("jax_time"), res.get("minisgd_time"))
    res["torch_over_minisgd"] = ratio(res.get("torch_time"), res.get("minisgd_time"))
    return res, (net, theta, X, y, H)


def table_hessian(r, R):
    hdr = ["method", f"time (best of {R['repeats']} / {R['competitor_repeats']})", "compile / 1st call",
           "time / minisgd", "max\\|dH\\| / max\\|H\\|", "GFLOP/s (2NP^2/t)", "% of GEMM rate"]
    g = lambda t: None if t is None else r["flops"] / t / 1e9
    rows = [
        ["minisgd `net.hessian`", C.fmt_time(r.get("minisgd_time")), C.fmt_time(r.get("minisgd_first_call")) + " (1st call)",
         "1.00" if "minisgd_time" in r else "n/a", "(reference)",
         C.fmt(g(r.get("minisgd_time")), ".1f"), C.fmt(None if "minisgd_gemm_frac" not in r else 100 * r["minisgd_gemm_frac"], ".0f", " %")],
        ["`jax.jit(jax.hessian(loss))`", r.get("jax_skipped") or C.fmt_time(r.get("jax_time")),
         C.fmt_time(r.get("jax_compile")) + (" (compile)" if "jax_compile" in r else ""),
         C.fmt(r.get("jax_over_minisgd"), ".1f", "x"), C.fmt(r.get("jax_diff"), ".1e"),
         C.fmt(g(r.get("jax_time")), ".2f"), C.fmt(None if "jax_time" not in r else 100 * g(r["jax_time"]) / r["gemm_gflops"], ".1f", " %")],
        ["`torch.func.hessian(loss)`", r.get("torch_skipped") or C.fmt_time(r.get("torch_time")), "-",
         C.fmt(r.get("torch_over_minisgd"), ".1f", "x"), C.fmt(r.get("torch_diff"), ".1e"),
         C.fmt(g(r.get("torch_time")), ".2f"), C.fmt(None if "torch_time" not in r else 100 * g(r["torch_time"]) / r["gemm_gflops"], ".1f", " %")],
    ]
    head = (f"### a. Exact float64 Hessian: MLP {'-'.join(map(str, r['sizes']))} tanh, cross-entropy, "
            f"N = {r['N']}, P = {r['P']}\n\n"
            f"2 N P^2 = {r['flops'] / 1e9:.1f} GFLOP; measured float64 GEMM rate (numpy matmul {r['gemm_n']}^3, best of 3) "
            f"= {r['gemm_gflops']:.1f} GFLOP/s. Losses at theta: numpy reference {r['loss_numpy_ref']:.12f}"
            + "".join(f", {k[5:]} {r[k]:.12f}" for k in ("loss_minisgd", "loss_jax", "loss_torch") if k in r) + ".\n")
    if "minisgd_actual_flops" in r:
        head += (f"minisgd's GEMMs actually run {r['minisgd_actual_flops'] / 1e9:.1f} GFLOP (`minisgd.core.hessian.hessian_flops`): "
                 f"{r['minisgd_actual_flops'] / r['minisgd_time'] / 1e9:.1f} GFLOP/s = "
                 f"{100 * r['minisgd_actual_gemm_frac']:.0f} % of the GEMM rate on the work done.\n")
    if "minisgd_symmetry" in r:
        head += f"minisgd H symmetry max|H - H^T|/max|H| = {r['minisgd_symmetry']:.1e}.\n"
    return head + "\n" + C.markdown_table(hdr, rows)


# ----------------------------------------------------------------------------------------------
# b. memory of net.hessian (in a fresh process: only NumPy + minisgd)
# ----------------------------------------------------------------------------------------------

def memory_child(spec):
    """Runs in a subprocess: tracemalloc peak and RSS high-water increase of one net.hessian call."""
    import tracemalloc
    import numpy as np
    from minisgd.core.mlp import MLP
    spec = json.loads(spec)
    sizes, N, act = spec["sizes"], spec["N"], spec["activation"]
    net = MLP(sizes, activation=act, loss="cross_entropy")
    theta = net.init(seed=0)
    X, y = C.synthetic_data(np, N, sizes[0], sizes[-1], seed=1)
    Xs, ys = X[:16], y[:16]
    net.hessian(theta, Xs, ys)  # compile with a tiny batch
    out = {}

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    try:  # reset the RSS high-water mark (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss0 = status("VmRSS")
        H = net.hessian(theta, X, y)
        out["rss_peak_increase"] = status("VmHWM") - rss0
        del H
    except OSError:
        pass
    tracemalloc.start()
    H = net.hessian(theta, X, y)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["tracemalloc_peak"] = peak
    out["result_bytes"] = H.nbytes
    out["P"] = int(H.shape[0])
    print(json.dumps(out))


def bench_memory(np, cfg):
    spec = json.dumps({"sizes": cfg["hess_sizes"], "N": cfg["hess_N"], "activation": cfg["activation"]})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child", spec],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    P, N = r["P"], cfg["hess_N"]
    item = r["result_bytes"] // (P * P)
    r["N"] = N
    r["NP_bytes"] = N * P * item
    r["peak_over_result"] = r["tracemalloc_peak"] / r["result_bytes"]
    r["extra_over_NP"] = (r["tracemalloc_peak"] - r["result_bytes"]) / r["NP_bytes"]
    r["c_over_1p5"] = (r["tracemalloc_peak"] - 1.5 * r["result_bytes"]) / r["NP_bytes"]
    if "rss_peak_increase" in r:
        r["rss_over_result"] = r["rss_peak_increase"] / r["result_bytes"]
    return r


def table_memory(r):
    if "error" in r:
        return f"### b. Peak memory of net.hessian\n\nn/a: {r['error']}"
    MB = 1e6
    hdr = ["measure", "peak", "P x P result", "peak / result", "(peak - result) / (N P itemsize)",
           "(peak - 1.5 result) / (N P itemsize)"]
    rows = [["tracemalloc (NumPy allocations)", f"{r['tracemalloc_peak'] / MB:.1f} MB", f"{r['result_bytes'] / MB:.1f} MB",
             f"{r['peak_over_result']:.2f}x", f"{r['extra_over_NP']:.2f}", f"{r['c_over_1p5']:.2f}"]]
    if "rss_peak_increase" in r:
        rows.append(["RSS high-water increase (all allocations)", f"{r['rss_peak_increase'] / MB:.1f} MB",
                     f"{r['result_bytes'] / MB:.1f} MB", f"{r['rss_over_result']:.2f}x",
                     f"{(r['rss_peak_increase'] - r['result_bytes']) / r['NP_bytes']:.2f}",
                     f"{(r['rss_peak_increase'] - 1.5 * r['result_bytes']) / r['NP_bytes']:.2f}"])
    return (f"### b. Peak memory of one net.hessian call (fresh process; N = {r['N']}, P = {r['P']}, "
            f"N P itemsize = {r['NP_bytes'] / MB:.1f} MB)\n\n" + C.markdown_table(hdr, rows))


# ----------------------------------------------------------------------------------------------
# c. per-example gradients
# ----------------------------------------------------------------------------------------------

def bench_pex(np, MLP, jax, torch, cfg, R, ctx=None):
    sizes, N, act = cfg["hess_sizes"], cfg["hess_N"], cfg["activation"]
    if ctx is None:
        net, theta = make_theta(np, MLP, sizes, act)
        X, y = C.synthetic_data(np, N, sizes[0], sizes[-1], seed=1)
    else:
        net, theta, X, y = ctx[:4]
    res = {"N": N, "P": theta.size}
    G = None
    if net is not None:
        t0 = time.perf_counter()
        G = np.asarray(net.per_example_grads(theta, X, y))
        res["minisgd_first_call"] = time.perf_counter() - t0
        ts = C.timeit(lambda: net.per_example_grads(theta, X, y), repeats=max(R["repeats"], 5), warmup=1,
                      label="minisgd per_example_grads")
        res["minisgd_time"] = best(ts)
        _, g = net.loss_and_grad(theta, X, y)
        res["minisgd_mean_vs_grad"] = rel_diff(np, g, G.mean(axis=0))
    Gref = G
    if jax is not None:
        jf = C.jax_functions(jax, sizes, act)
        comp, tc = C.jax_compile(jf["per_example_grads"], theta, X, y)
        res["jax_compile"] = tc
        ts = C.timeit(lambda: comp(theta, X, y).block_until_ready(), repeats=max(R["competitor_repeats"], 5), warmup=1,
                      label="jax per_example_grads")
        res["jax_time"] = best(ts)
        Gj = np.asarray(comp(theta, X, y))
        res["jax_diff"] = rel_diff(np, Gref, Gj) if Gref is not None else None
        Gref = Gj if Gref is None else Gref
    if torch is not None:
        tf = C.torch_functions(torch, sizes, act)
        tt, Xt, yt = torch.from_numpy(theta), torch.from_numpy(X), torch.from_numpy(y)
        ts = C.timeit(lambda: tf["per_example_grads"](tt, Xt, yt), repeats=max(R["competitor_repeats"], 5), warmup=1,
                      label="torch per_example_grads")
        res["torch_time"] = best(ts)
        Gt = tf["per_example_grads"](tt, Xt, yt).numpy()
        res["torch_diff"] = rel_diff(np, Gref, Gt) if Gref is not None else None
    res["jax_over_minisgd"] = ratio(res.get("jax_time"), res.get("minisgd_time"))
    res["torch_over_minisgd"] = ratio(res.get("torch_time"), res.get("minisgd_time"))
    return res


def table_pex(r, R):
    hdr = ["method", "time (best)", "compile / 1st call", "time / minisgd", "max\\|dG\\| / max\\|G\\|"]
    rows = [
        ["minisgd `net.per_example_grads`", C.fmt_time(r.get("minisgd_time")),
         C.fmt_time(r.get("minisgd_first_call")) + " (1st call)", "1.00" if "minisgd_time" in r else "n/a", "(reference)"],
        ["`jax.jit(jax.vmap(jax.grad(l_n), (None, 0, 0)))`", C.fmt_time(r.get("jax_time")),
         C.fmt_time(r.get("jax_compile")) + (" (compile)" if "jax_compile" in r else ""),
         C.fmt(r.get("jax_over_minisgd"), ".2f", "x"), C.fmt(r.get("jax_diff"), ".1e")],
        ["`torch.func.vmap(torch.func.grad(l_n))`", C.fmt_time(r.get("torch_time")), "-",
         C.fmt(r.get("torch_over_minisgd"), ".2f", "x"), C.fmt(r.get("torch_diff"), ".1e")],
    ]
    extra = ""
    if "minisgd_mean_vs_grad" in r:
        extra = f"\nminisgd: mean of rows vs loss_and_grad, max rel diff {r['minisgd_mean_vs_grad']:.1e}.\n"
    return (f"### c. Per-example gradients (N, P) = ({r['N']}, {r['P']}), float64\n" + extra + "\n"
            + C.markdown_table(hdr, rows))


# ----------------------------------------------------------------------------------------------
# d. Hessian-vector products
# ----------------------------------------------------------------------------------------------

def bench_hvp(np, MLP, jax, cfg, R, ctx=None):
    sizes, N, act = cfg["hess_sizes"], cfg["hess_N"], cfg["activation"]
    if ctx is None:
        net, theta = make_theta(np, MLP, sizes, act)
        X, y = C.synthetic_data(np, N, sizes[0], sizes[-1], seed=1)
        H = None if net is None else np.asarray(net.hessian(theta, X, y))  # to check H V against H @ V
    else:
        net, theta, X, y, H = ctx
    P = theta.size
    rows = []
    jf = C.jax_functions(jax, sizes, act) if jax is not None else None
    rng = np.random.default_rng(3)
    t_grad = None
    if net is not None:
        net.loss_and_grad(theta, X, y)
        t_grad = best(C.timeit(lambda: net.loss_and_grad(theta, X, y), repeats=max(R["repeats"], 10), warmup=1,
                                label="minisgd loss_and_grad"))
    for k in cfg["hvp_ks"]:
        V = rng.standard_normal((P, k))
        r = {"k": k, "grad_time": t_grad}
        HV = None
        if net is not None:
            HV = np.asarray(net.hvp(theta, X, y, V))
            r["minisgd_hvp"] = best(C.timeit(lambda: net.hvp(theta, X, y, V), repeats=max(R["repeats"], 5), warmup=1,
                                               label=f"minisgd hvp k={k}"))

            def k_grads():
                for _ in range(k):
                    net.loss_and_grad(theta, X, y)
            r["minisgd_k_grads"] = best(C.timeit(k_grads, repeats=max(R["repeats"], 3), warmup=0, label=f"minisgd {k} grads"))
            r["hvp_over_k_grads"] = r["minisgd_hvp"] / r["minisgd_k_grads"]
            if H is not None:
                r["diff_vs_H"] = rel_diff(np, H @ V, HV)
        if jf is not None:
            Vt = np.ascontiguousarray(V.T)
            comp, tc = C.jax_compile(jf["hvp"], theta, X, y, Vt)
            r["jax_compile"] = tc
            r["jax_hvp"] = best(C.timeit(lambda: comp(theta, X, y, Vt).block_until_ready(),
                                         repeats=max(R["competitor_repeats"], 5), warmup=1, label=f"jax hvp k={k}"))
            HVj = np.asarray(comp(theta, X, y, Vt))
            r["jax_diff"] = rel_diff(np, HV if HV is not None else HVj, HVj)
            r["jax_over_minisgd"] = ratio(r["jax_hvp"], r.get("minisgd_hvp"))
        rows.append(r)
    return {"N": N, "P": P, "rows": rows, "grad_time": t_grad}


def table_hvp(r):
    hdr = ["k", "minisgd `net.hvp` (P, k)", "k x `net.loss_and_grad`", "hvp / k grads (target <= 3)",
           "minisgd max\\|HV - H@V\\| / max\\|H@V\\|", "jax jvp(grad) vmapped, jit", "jax compile", "jax / minisgd", "jax max\\|d\\| / max"]
    rows = [[x["k"], C.fmt_time(x.get("minisgd_hvp")), C.fmt_time(x.get("minisgd_k_grads")),
             C.fmt(x.get("hvp_over_k_grads"), ".2f"), C.fmt(x.get("diff_vs_H"), ".1e"),
             C.fmt_time(x.get("jax_hvp")), C.fmt_time(x.get("jax_compile")), C.fmt(x.get("jax_over_minisgd"), ".2f", "x"),
             C.fmt(x.get("jax_diff"), ".1e")] for x in r["rows"]]
    return (f"### d. Hessian-vector products, float64, N = {r['N']}, P = {r['P']} "
            f"(one loss_and_grad: {C.fmt_time(r['grad_time'])})\n\n" + C.markdown_table(hdr, rows))


# ----------------------------------------------------------------------------------------------
# e. float32 SGD step
# ----------------------------------------------------------------------------------------------

def bench_sgd(np, MLP, torch, cfg, R):
    sizes, act, lr = cfg["sgd_sizes"], cfg["activation"], cfg["lr"]
    net, theta0 = make_theta(np, MLP, sizes, act, dtype="float32")
    out = {"sizes": sizes, "P": theta0.size, "rows": []}
    for B in cfg["sgd_batches"]:
        X, y = C.synthetic_data(np, B, sizes[0], sizes[-1], seed=4, dtype="float32")
        steps = cfg["sgd_steps"][B]
        r = {"B": B, "steps": steps}
        theta1 = None
        if net is not None:
            theta = theta0.copy()
            loss, g = net.loss_and_grad(theta, X, y)
            r["minisgd_grad_dtype"] = str(np.asarray(g).dtype)
            r["minisgd_loss0"] = float(loss)
            theta -= lr * g
            theta1 = theta.copy()

            def run_mini():
                nonlocal theta
                for _ in range(steps):
                    loss, g = net.loss_and_grad(theta, X, y)
                    theta -= lr * g
            ts = C.timeit(run_mini, repeats=R["sgd_repeats"], warmup=1, label=f"minisgd sgd B={B}")
            r["minisgd_step"] = best(ts) / steps
            r["minisgd_dtype_after"] = str(theta.dtype)
        if torch is not None:
            model = C.torch_sequential(torch, theta0.copy(), sizes, act)
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            loss_fn = torch.nn.CrossEntropyLoss()
            Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
            opt.zero_grad()
            loss = loss_fn(model(Xt), yt)
            loss.backward()
            opt.step()
            r["torch_loss0"] = float(loss.detach())
            if theta1 is not None:
                r["theta1_diff"] = float(np.abs(C.torch_sequential_to_flat(np, model) - theta1).max())
                r["loss0_diff"] = abs(r["torch_loss0"] - r["minisgd_loss0"])

            def run_torch():
                for _ in range(steps):
                    opt.zero_grad()
                    loss = loss_fn(model(Xt), yt)
                    loss.backward()
                    opt.step()
            ts = C.timeit(run_torch, repeats=R["sgd_repeats"], warmup=1, label=f"torch sgd B={B}")
            r["torch_step"] = best(ts) / steps
        r["torch_over_minisgd"] = ratio(r.get("torch_step"), r.get("minisgd_step"))
        out["rows"].append(r)
    return out


def table_sgd(r):
    hdr = ["batch", "minisgd step", "torch.nn + optim.SGD step", "torch / minisgd (target >= 1)",
           "\\|loss_0 diff\\|", "max\\|theta_1 diff\\| after 1 step", "minisgd g dtype"]
    rows = [[x["B"], C.fmt_time(x.get("minisgd_step")), C.fmt_time(x.get("torch_step")),
             C.fmt(x.get("torch_over_minisgd"), ".2f", "x"), C.fmt(x.get("loss0_diff"), ".1e"),
             C.fmt(x.get("theta1_diff"), ".1e"), x.get("minisgd_grad_dtype", "n/a")] for x in r["rows"]]
    return (f"### e. float32 SGD step (forward + backward + update), MLP {'-'.join(map(str, r['sizes']))} tanh, "
            f"cross-entropy, P = {r['P']} (time per step, best of repeats of {', '.join(str(x['steps']) for x in r['rows'])} steps)\n\n"
            + C.markdown_table(hdr, rows))


# ----------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------

def targets_table(res):
    rows = []

    def add(name, value, target, ge, spec=".2f", suffix="x"):
        met = "n/a" if value is None else ("met" if (value >= target if ge else value <= target) else "**MISSED**")
        rows.append([name, C.fmt(value, spec, suffix), ("&ge; " if ge else "&le; ") + f"{target:g}{suffix}", met])

    a = res.get("hessian")
    if a:
        add("Hessian: jax.hessian time / minisgd", a.get("jax_over_minisgd"), TARGETS["hessian_vs_jax"], True, ".1f")
        add("Hessian: torch.func.hessian time / minisgd", a.get("torch_over_minisgd"), TARGETS["hessian_vs_torch"], True, ".1f")
        add("Hessian: fraction of float64 GEMM rate", None if "minisgd_gemm_frac" not in a else 100 * a["minisgd_gemm_frac"],
            100 * TARGETS["hessian_gemm_frac"], True, ".0f", " %")
    b = res.get("memory")
    if b and "peak_over_result" in b:
        add("Hessian peak memory (tracemalloc) / P x P result, strict", b["peak_over_result"], TARGETS["hessian_mem"], False)
        rows.append(["Hessian peak memory: c in peak = 1.5 P^2 + c N P (itemsize units)", f"{b['c_over_1p5']:.2f}",
                     "O(1)", "met" if b["c_over_1p5"] <= 0 else f"info (c = {b['c_over_1p5']:.2f})"])
    c = res.get("per_example_grads")
    if c:
        add("Per-example grads: jax time / minisgd", c.get("jax_over_minisgd"), TARGETS["pex_vs_jax"], True)
    d = res.get("hvp")
    if d:
        for x in d["rows"]:
            add(f"HVP k={x['k']}: hvp / (k x loss_and_grad)", x.get("hvp_over_k_grads"), TARGETS["hvp_ratio"], False)
    e = res.get("sgd")
    if e:
        for x in e["rows"]:
            add(f"SGD step B={x['B']}: torch / minisgd", x.get("torch_over_minisgd"), TARGETS["sgd_vs_torch"], True)
    return "### Targets\n\n" + C.markdown_table(["target", "measured", "goal", "status"], rows)


def profile_minisgd(np, MLP, cfg, top=14):
    """cProfile of the minisgd calls (after a warm-up call), to say where the time goes."""
    import cProfile
    import io
    import pstats
    sizes, N, act = cfg["hess_sizes"], cfg["hess_N"], cfg["activation"]
    net, theta = make_theta(np, MLP, sizes, act)
    X, y = C.synthetic_data(np, N, sizes[0], sizes[-1], seed=1)
    ssizes = cfg["sgd_sizes"]
    snet, stheta = make_theta(np, MLP, ssizes, act, dtype="float32")
    B = max(cfg["sgd_batches"])
    Xs, ys = C.synthetic_data(np, B, ssizes[0], ssizes[-1], seed=4, dtype="float32")
    jobs = [("net.hessian", lambda: net.hessian(theta, X, y)),
            ("net.per_example_grads", lambda: net.per_example_grads(theta, X, y)),
            (f"net.loss_and_grad float32 B={B} (x5)", lambda: [snet.loss_and_grad(stheta, Xs, ys) for _ in range(5)])]
    for name, fn in jobs:
        fn()
        pr = cProfile.Profile()
        t0 = time.perf_counter()
        pr.enable()
        fn()
        pr.disable()
        wall = time.perf_counter() - t0
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        print(f"\n#### profile: {name} ({wall:.3f} s under cProfile)\n\n```")
        print("\n".join(lines[start:]))
        print("```")


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    thread_note = C.set_threads(threads)
    if args.memory_child:
        return memory_child(args.memory_child)
    import numpy as np
    limiter = C.limit_blas(threads)  # noqa: F841  (kept alive for the whole run)
    jax = None if args.no_jax else C.load_jax()
    torch = None if args.no_torch else C.load_torch(threads)
    minisgd, MLP = load_minisgd()
    cfg = dict(QUICK if args.quick else FULL)
    R = {"repeats": args.repeats or cfg["repeats"],
         "competitor_repeats": args.competitor_repeats or cfg["competitor_repeats"], "sgd_repeats": cfg["sgd_repeats"]}
    info = C.machine_info(np, jax, torch)
    info["minisgd"] = getattr(minisgd, "__version__", "present") if minisgd is not None else None
    info["threads"] = thread_note
    info["config"] = "quick" if args.quick else "full"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["load average (1 min) at start"] = None if load is None else round(load, 2)
    if load is not None and load > 0.5:
        print(f"> warning: load average {load:.2f} at start: something else is running; timings will be noisy\n",
              file=sys.stderr)

    print(f"## minisgd core benchmark ({info['config']} configuration)\n")
    print(C.markdown_table(["machine", ""], [[k, v] for k, v in info.items()]))
    print(flush=True)
    res = {"info": info, "config": cfg}
    ctx = None
    t_start = time.perf_counter()
    sections = [
        ("a", "hessian", lambda: bench_hessian(np, MLP, jax, torch, cfg, R), lambda r: table_hessian(r, R)),
        ("b", "memory", lambda: bench_memory(np, cfg) if MLP is not None else None, table_memory),
        ("c", "per_example_grads", lambda: bench_pex(np, MLP, jax, torch, cfg, R, ctx), lambda r: table_pex(r, R)),
        ("d", "hvp", lambda: bench_hvp(np, MLP, jax, cfg, R, ctx), table_hvp),
        ("e", "sgd", lambda: bench_sgd(np, MLP, torch, cfg, R), table_sgd),
    ]
    res["foreign_load"] = {}
    for letter, key, run, table in sections:
        if letter not in args.only:
            continue
        n_timings = len(C.TIMINGS)
        with C.ForeignLoad() as fl:
            out = run()
        dirty = [t for t in C.TIMINGS[n_timings:] if t["foreign"] > C.FOREIGN_THRESHOLD]
        if out is None:
            continue
        if key == "hessian":
            out, ctx = out
        res[key] = out
        res["foreign_load"][key] = fl.cores
        note = "" if fl.cores is None else (
            f"\n_Other processes used {fl.cores:.2f} cores on average during this section ({fl.wall:.0f} s); "
            + (f"timed batches kept with other processes above {C.FOREIGN_THRESHOLD} cores (contaminated, rerun on a "
               "quiet machine): " + ", ".join(f"{t['label']} ({t['foreign']:.2f})" for t in dirty) + "._"
               if dirty else f"every timed batch kept ran with other processes below {C.FOREIGN_THRESHOLD} cores._"))
        res["foreign_load"][key + "_dirty"] = [t["label"] for t in dirty]
        print(table(out) + "\n" + note + "\n", flush=True)
    print(targets_table(res))
    if args.profile and MLP is not None:
        profile_minisgd(np, MLP, cfg)
    if args.quick:
        print("\n(quick configuration: the targets are meant for the full configuration; these statuses only "
              "show that the harness runs)")
    res["timings"] = C.TIMINGS
    res["total_seconds"] = time.perf_counter() - t_start
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    res["load_average_end"] = load_end
    print(f"\n(total {res['total_seconds']:.0f} s; 1-min load average at the end {C.fmt(load_end)})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
