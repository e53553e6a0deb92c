"""Each Numba kernel of minisgd/core/kernels.py against its array-API twin, on the shapes the exact Hessian uses.

    python benchmarks/bench_kernels.py

Prints best-of-15 times and the twin/kernel ratio. A kernel stays in minisgd only while its ratio is > 1.
Each timing includes the same copy of the input on both sides. The kernels are serial on purpose: a parallel region right after an OpenBLAS GEMM competes with OpenBLAS's
still-spinning worker threads, and measured slower inside `hessian` than the serial kernel.
"""
import time

import numpy as np

from minisgd.core import kernels


def best_of(fn, repeats=15):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    rng = np.random.default_rng(0)
    rows = []
    # Blocks of the 64-32-32-10 net (P = 3466): diagonal layer-1 chunk, layer 2 x layer 1 with its cross term.
    P = 3466
    H = np.zeros((P, P))
    cases = [
        ("scatter (15, 65, 32, 32)", rng.standard_normal((15, 65, 32, 32)), None, 0, 0),
        ("scatter + cross (33, 65, 32, 32)", rng.standard_normal((33, 65, 32, 32)),
         rng.standard_normal((32, 65, 32, 32)), 2080, 0),
        ("scatter (33, 33, 10, 32)", rng.standard_normal((33, 33, 10, 32)), None, 3136, 2080),
    ]
    for name, first, cross, r0, c0 in cases:
        kernels.scatter_block_numba(H, first, cross, r0, c0)  # compile
        t_kernel = best_of(lambda: kernels.scatter_block_numba(H, first, cross, r0, c0))
        t_twin = best_of(lambda: kernels.scatter_block_reference(H, first, cross, r0, c0))
        rows.append((name, t_kernel, t_twin))
    for P in (1000, 3466, 8000):
        H = rng.standard_normal((P, P))
        kernels.symmetrize_from_lower_numba(H)
        t_kernel = best_of(lambda: kernels.symmetrize_from_lower_numba(H), 7)
        t_twin = best_of(lambda: kernels.symmetrize_from_lower_reference(H), 7)
        rows.append((f"symmetrize P = {P}", t_kernel, t_twin))
    from minisgd.core import activations
    for name in ("relu",):
        act = activations.get(name)
        for N in (256, 4096):
            z = rng.standard_normal((N, 512)).astype(np.float32)
            b = rng.standard_normal(512).astype(np.float32)
            kernels.bias_activation_numba(z.copy(), b, act)
            t_kernel = best_of(lambda: kernels.bias_activation_numba(z.copy(), b, act))
            t_twin = best_of(lambda: kernels.bias_activation_reference(z.copy(), b, act))
            rows.append((f"bias + {name} + derivative ({N}, 512) float32", t_kernel, t_twin))
    print("| kernel | Numba (ms) | NumPy twin (ms) | twin / Numba |")
    print("|---|---|---|---|")
    for name, t_kernel, t_twin in rows:
        print(f"| {name} | {t_kernel * 1e3:.2f} | {t_twin * 1e3:.2f} | {t_twin / t_kernel:.2f} |")


if __name__ == "__main__":
    main()
