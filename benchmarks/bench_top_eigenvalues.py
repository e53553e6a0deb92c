"""Top-10 Hessian eigenvalues of 784-512-512-10 over MNIST: minisgd's (block) Lanczos against the PyHessian way.

    PYTHONPATH=. /work/venvs/bench/bin/python benchmarks/bench_top_eigenvalues.py [--examples 10000] [--quick]

minisgd: Lanczos and block Lanczos (``--blocks`` directions per step, one batched HVP each), both to a residual
of ``tol x lambda_max``. PyTorch: PyHessian's ``eigenvalues`` (Yao et al. 2020): power iteration with
deflation against the eigenvectors found so far, one ``torch.func`` HVP (forward-over-reverse) per iteration,
stopped when an eigenvalue changes by less than ``tol`` relatively (at most 100 iterations each). Same
parameters, data and dtype on both sides. The last column is the CPU that other processes used, in cores.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import _common as C  # noqa: E402

SIZES = [784, 512, 512, 10]


def pyhessian_top(torch, hvp, P, dtype, k, tol, max_iter=100, seed=0):
    """PyHessian's ``hessian.eigenvalues(maxIter, tol, top_n)`` on a flat parameter vector: ``(values, HVPs)``."""
    gen = torch.Generator().manual_seed(seed)
    values, vectors, products = [], [], 0
    for _ in range(k):
        v = torch.randn(P, generator=gen, dtype=dtype)
        v = v / v.norm()
        value = None
        for _ in range(max_iter):
            for u in vectors:  # deflation: orthonormalize against the eigenvectors found so far
                v = v - (v @ u) * u
            v = v / v.norm()
            Hv = hvp(v)
            products += 1
            new = float(v @ Hv)
            v = Hv / Hv.norm()
            if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
                value = new
                break
            value = new
        values.append(value)
        vectors.append(v)
    return values, products


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="1,000 examples")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--blocks", type=int, nargs="+", default=[10, 4], help="block Lanczos block sizes")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    described = C.set_threads(args.threads)
    import numpy as np
    torch = C.load_torch(args.threads)

    import minisgd as ms
    from minisgd.curvature import eigen
    from minisgd.data import load_mnist
    N = 1000 if args.quick else args.examples
    ds = load_mnist(n_train=N, seed=0)
    X, y = ds.X_train.astype(args.dtype), ds.y_train
    net = ms.MLP(SIZES, activation="relu")
    theta = net.init(seed=0, dtype=args.dtype)
    print(f"# bench_top_eigenvalues: {net}, N = {N} MNIST images, {args.dtype}, top {args.k}, tol {args.tol:g}; "
          f"{described}; 1-min load average {os.getloadavg()[0]:.2f}\n")
    rows, found = [], {}

    def run(label, fn):
        with C.ForeignLoad() as load:
            start = time.perf_counter()
            values, products = fn()
            seconds = time.perf_counter() - start
        found[label] = np.sort(np.asarray(values, dtype=np.float64))[::-1]
        rows.append([label, f"{seconds:.1f} s", products, f"{seconds / products * 1e3:.0f} ms", f"{load.cores:.2f}"])
        return seconds

    def ours(method, block=None):
        def fn():
            s = eigen.hessian_spectrum(net, theta, X, y, k=args.k, method=method, tol=args.tol, max_iter=2000,
                                       block=block)
            return s.values, s.iterations
        return fn

    run("minisgd Lanczos", ours("lanczos"))
    for b in args.blocks:
        run(f"minisgd block Lanczos ({b} per step)", ours("block_lanczos", b))
    if torch is not None and not args.no_torch:
        tdtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        F = C.torch_functions(torch, SIZES, "relu")
        tX, ty, tt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(theta.copy())
        grad = torch.func.grad(lambda t: F["loss"](t, tX, ty))
        hvp = lambda v: torch.func.jvp(grad, (tt,), (v,))[1]  # noqa: E731
        with torch.no_grad():
            run("PyTorch, PyHessian power iteration (torch.func HVP)",
                lambda: pyhessian_top(torch, hvp, net.num_params, tdtype, args.k, args.tol))
    ref = found["minisgd Lanczos"]
    for row, values in zip(rows, found.values()):
        row.insert(4, f"{np.max(np.abs(values - ref) / abs(ref[0])):.1e}")
    base = float(rows[0][1].split()[0])
    for row in rows:
        row.insert(2, f"{float(row[1].split()[0]) / base:.2f}x")
    print(C.markdown_table(["method", "time", "time / Lanczos", "HVPs (directions)", "per HVP",
                            "max |lambda - Lanczos| / lambda_1", "other CPU (cores)"], rows))
    print("\neigenvalues:")
    for label, values in found.items():
        print(f"  {label}: {np.array2string(values, precision=4, max_line_width=200)}")


if __name__ == "__main__":
    main()
