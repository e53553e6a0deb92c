"""Curvature at MNIST scale: the top Hessian eigenvalue, HVPs, the exact diagonal and SLQ of a 784-512-512-10
ReLU net (P = 669,706) over 10,000 MNIST training images, against JAX and PyTorch HVPs in the same run.

    MINISGD_DATA=../shared/data python benchmarks/bench_curvature.py [--examples 10000] [--threads 2]

Issue target: the top eigenvalue in under a minute on a 2-core CPU (float32 allowed; accuracy against float64
reported). JAX's HVP is forward-over-reverse (jvp of grad) under jit; PyTorch's is torch.func.jvp of
torch.func.grad. Both are what a user would write; Lanczos needs nothing else from them. Missing libraries are
skipped columns.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_jax, load_torch, markdown_table, set_threads, timeit  # noqa: E402


def best(fn, repeats=3, warmup=1):
    """Best wall time of ``repeats`` calls after ``warmup`` (the least disturbed by other processes)."""
    return min(timeit(fn, repeats, warmup))

SIZES = (784, 512, 512, 10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)

    import numpy as np

    import minisgd as ms
    from minisgd.data import load_mnist

    ds = load_mnist(n_train=args.examples, seed=0)
    X64, y = ds.X_train, ds.y_train
    net = ms.MLP(SIZES, activation="relu", loss="cross_entropy")
    print(f"{net}\nN = {X64.shape[0]} MNIST training images; {threads}\n")
    rows, top = [], {}
    for dtype in ("float32", "float64"):
        theta, X = net.init(seed=0, dtype=dtype), X64.astype(dtype)
        v = np.random.default_rng(1).standard_normal(net.num_params).astype(dtype)
        t_grad = best(lambda: net.loss_and_grad(theta, X, y))
        t_hvp = best(lambda: net.hvp(theta, X, y, v))
        start = time.perf_counter()
        spec = ms.curvature.eigen.top_eigenvalues(net, theta, X, y, k=1, tol=1e-4)
        t_top = time.perf_counter() - start
        top[dtype] = spec.values[0]
        t_diag = best(lambda: net.hessian_diagonal(theta, X, y), repeats=1, warmup=0)
        start = time.perf_counter()
        ms.curvature.eigen.spectral_density(net, theta, X, y, num_probes=1, steps=30)
        t_slq = time.perf_counter() - start
        rows.append([dtype, f"{t_grad:.3f}", f"{t_hvp:.3f} ({t_hvp / t_grad:.2f} grads)",
                     f"{t_top:.1f} ({spec.iterations} HVPs)", f"{spec.values[0]:.6f}", f"{t_diag:.2f}",
                     f"{t_slq:.1f}"])
    print(markdown_table(["dtype", "gradient (s)", "HVP (s)", "top eigenvalue (s)", "lambda_max",
                          "exact diagonal (s)", "SLQ, 1 probe x 30 steps (s)"], rows))
    print(f"\nfloat32 against float64: |lambda32 - lambda64| / lambda64 = "
          f"{abs(top['float32'] - top['float64']) / top['float64']:.1e}\n")

    # The same HVP (float32) in JAX and PyTorch, same parameters, same data.
    theta, X = net.init(seed=0, dtype="float32"), X64.astype("float32")
    v = np.random.default_rng(1).standard_normal(net.num_params).astype("float32")
    ours = net.hvp(theta, X, y, v)
    t_ours = best(lambda: net.hvp(theta, X, y, v))
    compare = [["minisgd (R-operator)", f"{t_ours:.3f}", "1.00", "-"]]
    jax = load_jax()
    if jax is not None:
        jnp = jax.numpy
        from _common import jax_functions
        fns = jax_functions(jax, SIZES, activation="relu")
        jt, jX, jy, jv = jnp.asarray(theta), jnp.asarray(X), jnp.asarray(y), jnp.asarray(v)[None, :]
        hvp = fns["hvp"]
        out = np.asarray(hvp(jt, jX, jy, jv))[:, 0]
        t = best(lambda: hvp(jt, jX, jy, jv).block_until_ready())
        compare.append(["JAX jit(jvp(grad))", f"{t:.3f}", f"{t / t_ours:.2f}",
                        f"{np.abs(out - ours).max() / np.abs(ours).max():.1e}"])
    torch = load_torch(args.threads)
    if torch is not None:
        from _common import torch_functions
        loss = torch_functions(torch, SIZES, activation="relu")["loss"]
        tt, tX, ty, tv = (torch.from_numpy(a) for a in (theta, X, y.astype(np.int64), v))
        grad = torch.func.grad(loss)
        hvp = lambda: torch.func.jvp(lambda t: grad(t, tX, ty), (tt,), (tv,))[1]  # noqa: E731
        out = hvp().numpy()
        t = best(hvp)
        compare.append(["PyTorch func.jvp(func.grad)", f"{t:.3f}", f"{t / t_ours:.2f}",
                        f"{np.abs(out - ours).max() / np.abs(ours).max():.1e}"])
    print(markdown_table(["HVP, float32", "time (s)", "time / minisgd", "max rel. difference"], compare))


if __name__ == "__main__":
    main()
