"""The ``minisgd`` command line. Library code never prints; this module does.

``minisgd demo``: the exact Hessian spectrum of a small random network, checked against finite differences
of the hand-derived gradient. More commands (list, run, show) arrive with the scenarios.
"""
import argparse
import sys
import time

import numpy as np

from . import MLP, activations
from .testing import finite_difference_jacobian


def _demo_problem(args):
    rng = np.random.default_rng(args.seed)
    sizes = [args.inputs, *args.hidden, args.classes]
    net = MLP(sizes, activation=args.activation, loss="cross_entropy", l2=args.l2)
    theta = net.init(seed=args.seed)
    X = rng.normal(size=(args.examples, args.inputs))
    y = rng.integers(0, args.classes, size=args.examples)
    return net, theta, X, y


def demo(args):
    net, theta, X, y = _demo_problem(args)
    print(f"{net}\nN = {X.shape[0]} Gaussian inputs, uniform random labels, seed {args.seed}\n")

    net.hessian(theta, X[:2], y[:2])  # compiles the Numba kernel (cached on disk after the first run)
    start = time.perf_counter()
    H = net.hessian(theta, X, y)
    t_hessian = time.perf_counter() - start
    GN = net.gauss_newton(theta, X, y)
    start = time.perf_counter()
    eig = np.linalg.eigvalsh(H)  # ascending
    t_eigh = time.perf_counter() - start
    eig_gn = np.linalg.eigvalsh(GN)
    eig_res = np.linalg.eigvalsh(H - GN)

    P = net.num_params
    print(f"exact Hessian {P} x {P} in {t_hessian * 1e3:.1f} ms, full eigendecomposition in {t_eigh * 1e3:.1f} ms")
    print(f"  top 5 eigenvalues     {np.array2string(eig[::-1][:5], precision=5)}")
    print(f"  bottom 5 eigenvalues  {np.array2string(eig[:5], precision=5)}")
    print(f"  negative eigenvalues  {int(np.sum(eig < -1e-12 * abs(eig).max()))} of {P}")
    print(f"  trace {eig.sum():.6g}   Frobenius norm {np.sqrt((eig ** 2).sum()):.6g}")
    print(f"  Gauss-Newton: top {eig_gn[-1]:.6g}, min {eig_gn[0]:.3g} (PSD up to rounding)")
    print(f"  residual H - GN: eigenvalues in [{eig_res[0]:.4g}, {eig_res[-1]:.4g}]\n")

    start = time.perf_counter()
    H_fd = finite_difference_jacobian(lambda t: net.loss_and_grad(t, X, y)[1], theta, h=1e-5)
    t_fd = time.perf_counter() - start
    err = np.abs(H - H_fd).max() / np.abs(H).max()
    asym = np.abs(H - H.T).max() / np.abs(H).max()
    print(f"finite-difference check (central, h = 1e-5, {2 * P} gradient calls, {t_fd:.2f} s):")
    print(f"  max |H - H_fd| / max |H| = {err:.2e}   (tolerance 1e-6: FD truncation h^2 ~ 1e-10 plus rounding)")
    print(f"  max |H - H^T| / max |H|  = {asym:.2e}")
    ok = err < 1e-6 and asym < 1e-12
    print("OK: the exact Hessian matches finite differences" if ok else "FAILED: the Hessian does not match")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minisgd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="exact Hessian spectrum of a small random net, checked by finite differences")
    p.add_argument("--inputs", type=int, default=8, help="input dimension d")
    p.add_argument("--hidden", type=int, nargs="*", default=[16, 16], help="hidden widths")
    p.add_argument("--classes", type=int, default=4, help="number of classes K")
    p.add_argument("--examples", type=int, default=512, help="number of examples N")
    p.add_argument("--activation", default="tanh", choices=activations.NAMES)
    p.add_argument("--l2", type=float, default=0.0, help="L2 coefficient")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
