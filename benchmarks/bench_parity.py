"""Gradient and HVP of minisgd against ``jax.jit`` of the same function, and against the GEMMs they need (issue 16).

    PYTHONPATH=. /work/venvs/bench/bin/python benchmarks/bench_parity.py [--threads 1 2] [--quick] [--small]

Each thread count runs in its own process (XLA sizes its pool at start-up): ``--threads 1`` pins both sides to one
core; with every core, JAX uses its own pool and minisgd its thread policy (``minisgd.threads``). Per case the
two sides alternate, best of ``--repeats`` each. "GEMM only" runs the products the path performs (shapes
derived from the network, see ``gemm_shapes``) on preallocated arrays: its time is the floor the BLAS sets,
and "of GEMM rate" is that floor over minisgd's time (1.0 = nothing but GEMMs). The last column is the CPU
that other processes used during the case, in cores (0 = quiet).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common as C  # noqa: E402

ISSUE_CASES = [([64, 32, 32, 10], "tanh", 2048, "float64"), ([64, 32, 32, 10], "relu", 2048, "float32"),
               ([784, 512, 512, 10], "relu", 4096, "float32"), ([784, 512, 512, 10], "tanh", 4096, "float64")]
MORE_ACTIVATIONS = [([64, 32, 32, 10], act, 2048, dtype) for act in ("sigmoid", "softplus", "gelu")
                    for dtype in ("float64", "float32")]


def gemm_shapes(sizes, N, what):
    """``[(m, k, n), ...]``: the GEMMs of one gradient (``what="grad"``) or one-direction HVP (``"hvp"``)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = [(N, i, o) for i, o in layers]  # a_{l-1} W_l
    backward = [(N, o, i) for i, o in layers[1:]]  # delta_l W_l^T
    weights = [(i, N, o) for i, o in layers]  # a_{l-1}^T delta_l
    if what == "grad":
        return forward + backward + weights
    # R-forward: a V_l and R{a} W_l; R-backward: R{delta} W^T and delta V^T; Hv: a^T R{delta} and R{a}^T delta
    return forward + backward + forward + forward[1:] + backward + backward + weights + weights[1:]


def gemm_time(np, shapes, dtype, repeats):
    """Best time of the GEMMs ``shapes``, under minisgd's thread policy for the largest of them (as the path runs)."""
    from minisgd.threads import blas_threads
    rng = np.random.default_rng(0)
    ops = []
    for m, k, n in shapes:
        A, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        ops.append((A, B, np.empty((m, n), dtype=dtype)))

    def run():
        with blas_threads(max(2.0 * m * k * n for m, k, n in shapes)):
            for A, B, out in ops:
                np.matmul(A, B, out=out)
    return min(C.timeit(run, repeats=repeats, warmup=1, retries=0))


def child(threads, quick, repeats, small):
    C.set_threads(threads)
    import numpy as np
    jax = C.load_jax()
    import minisgd as ms
    from minisgd.core import backprop, hvp
    if threads == 1:
        os.environ["MINISGD_BLAS_THREADS"] = "1"
    cases = [c for c in ISSUE_CASES + MORE_ACTIVATIONS if not small or c[0][0] == 64]
    if quick:
        cases = [(s, a, N // 4 if s[0] == 784 else N, d) for s, a, N, d in cases]
    rows = []
    for sizes, act, N, dtype in cases:
        net = ms.MLP(sizes, activation=act)
        theta = net.init(seed=0, dtype=dtype)
        rng = np.random.default_rng(1)
        X, y = rng.standard_normal((N, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], N)
        v = rng.standard_normal(net.num_params).astype(dtype)
        jf = C.jax_functions(jax, sizes, act)
        jt, jX, jy, jv = (jax.device_put(a) for a in (theta, X, y, v[None, :]))
        jgrad = jf["loss_and_grad"].lower(jt, jX, jy).compile()
        jhvp = jf["hvp"].lower(jt, jX, jy, jv).compile()
        ours = {"grad": lambda: backprop.loss_and_grad(net, theta, X, y),
                "hvp": lambda: hvp.hessian_vector_product(net, theta, X, y, v)}
        theirs = {"grad": lambda: jax.block_until_ready(jgrad(jt, jX, jy)),
                  "hvp": lambda: jax.block_until_ready(jhvp(jt, jX, jy, jv))}
        g_ours, g_jax = ours["grad"]()[1], np.asarray(theirs["grad"]()[1])
        h_ours, h_jax = ours["hvp"](), np.asarray(theirs["hvp"]())[:, 0]
        err = max(float(np.max(np.abs(g_ours - g_jax)) / np.max(np.abs(g_jax))),
                  float(np.max(np.abs(h_ours - h_jax)) / np.max(np.abs(h_jax))))
        for what in ("grad", "hvp"):
            best = {"minisgd": float("inf"), "jax": float("inf")}
            with C.ForeignLoad() as load:
                for _ in range(3):  # alternate so that background load hits both sides alike
                    best["minisgd"] = min(best["minisgd"], min(C.timeit(ours[what], repeats=repeats, retries=0)))
                    best["jax"] = min(best["jax"], min(C.timeit(theirs[what], repeats=repeats, retries=0)))
                shapes = gemm_shapes(sizes, N, what)
                gemm = gemm_time(np, shapes, dtype, repeats)
            flops = sum(2 * m * k * n for m, k, n in shapes)
            rows.append({"case": f"{'-'.join(map(str, sizes))} {act} N={N} {dtype}", "what": what,
                         "threads": threads, "minisgd": best["minisgd"], "jax": best["jax"], "gemm": gemm,
                         "gflops": flops / best["minisgd"] / 1e9, "err": err, "load": load.cores})
    print(json.dumps({"rows": rows, "info": C.machine_info(np, jax)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count()])
    parser.add_argument("--quick", action="store_true", help="the large nets at N/4")
    parser.add_argument("--small", action="store_true", help="only the 64-32-32-10 cases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.quick, args.repeats, args.small)
    rows, info = [], None
    for threads in args.threads:
        cmd = [sys.executable, __file__, "--child", str(threads), "--repeats", str(args.repeats)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd + (["--small"] if args.small else []), capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows += result["rows"]
        info = result["info"]
    print(f"# bench_parity: {info['cpu']}, NumPy {info['numpy']} ({info['blas']}), JAX {info['jax']}\n")
    table = [[r["case"], r["what"], r["threads"], C.fmt_time(r["minisgd"]), C.fmt_time(r["jax"]),
              f"**{r['minisgd'] / r['jax']:.2f}x**", C.fmt_time(r["gemm"]), f"{r['gemm'] / r['minisgd']:.2f}",
              f"{r['gflops']:.1f}", f"{r['err']:.0e}", f"{r['load']:.2f}"] for r in rows]
    print(C.markdown_table(["case", "path", "threads", "minisgd", "jax.jit", "minisgd / jax", "GEMM only",
                            "of GEMM rate", "GFLOP/s", "max rel. diff", "other CPU (cores)"], table))


if __name__ == "__main__":
    main()
