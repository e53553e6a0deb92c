"""Curvature operators at MNIST scale: Gauss-Newton-vector products (k = 1 and 8 directions), KFAC's factors and
products, against curvlinops (PyTorch) and hand-written JAX / torch.func Gauss-Newton products, in the same run.

    MINISGD_DATA=../shared/data python benchmarks/bench_operators.py [--examples 2000] [--threads 2]

The network is 784-512-512-10 ReLU (P = 669,706), float64, on N MNIST training images. A user without minisgd would
take curvlinops's ``GGNLinearOperator`` and ``KFACLinearOperator`` (``fisher_type="type-2"``,
``separate_weight_and_bias=False``: minisgd's conventions), or write the product as the jvp of the outputs, the
loss Hessian, and the vjp (JAX under jit; torch.func). Every column also reports its largest difference from
minisgd's result (parameters permuted to torch's layout where needed). Missing libraries are skipped columns.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_jax, load_torch, markdown_table, set_threads, timeit  # noqa: E402

SIZES = (784, 512, 512, 10)


def best(fn, repeats=3, warmup=1):
    return min(timeit(fn, repeats, warmup))


def torch_order(np, net):
    """``perm`` with ``theta = torch_flat[perm]`` (torch's Linear weight is (out, in), minisgd's W is (in, out))."""
    perm, offset = [], 0
    for layer in net.layers:
        I, O = layer.fan_in, layer.fan_out
        perm.append(offset + (np.arange(O)[None, :] * I + np.arange(I)[:, None]).ravel())
        perm.append(offset + I * O + np.arange(O))
        offset += layer.size
    return np.concatenate(perm)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)

    import numpy as np

    import minisgd as ms
    from minisgd.curvature.operators import KFAC, GaussNewton
    from minisgd.data import load_mnist

    ds = load_mnist(n_train=args.examples, seed=0)
    X, y = ds.X_train.astype("float64"), ds.y_train.astype(np.int64)
    net = ms.MLP(SIZES, activation="relu", loss="cross_entropy")
    theta = net.init(seed=0)
    rng = np.random.default_rng(1)
    V = rng.standard_normal((net.num_params, 8))
    print(f"{net}\nN = {X.shape[0]} MNIST training images, float64; {threads}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start\n")

    G = GaussNewton(net, theta, X, y)
    ours = {k: G @ V[:, :k] for k in (1, 8)}
    times = {("minisgd", k): best(lambda k=k: G @ V[:, :k]) for k in (1, 8)}
    t0 = time.perf_counter()  # factors and the first product (curvlinops computes its factors at the first product)
    K = KFAC(net, theta, X, y)
    kfac_ours = K @ V
    times[("minisgd", "kfac")] = time.perf_counter() - t0
    times[("minisgd", "kfac @ V")] = best(lambda: K @ V)
    diffs = {}
    perm = torch_order(np, net)

    torch = load_torch(args.threads)
    if torch is not None:
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
        model = net.to_torch(theta)
        params = list(model.parameters())
        V_torch = np.empty_like(V)
        V_torch[perm] = V
        try:
            import curvlinops
        except ImportError:
            curvlinops = None
        if curvlinops is not None:
            loss = torch.nn.CrossEntropyLoss()
            data = [(tX, ty)]
            op = curvlinops.GGNLinearOperator(model, loss, params, data, check_deterministic=False)
            for k in (1, 8):
                Vk = torch.from_numpy(V_torch[:, :k].copy())
                out = (op @ Vk).numpy()[perm]
                diffs[("curvlinops", k)] = np.abs(out - ours[k]).max() / np.abs(ours[k]).max()
                times[("curvlinops", k)] = best(lambda Vk=Vk: op @ Vk)
            Vt = torch.from_numpy(V_torch)
            t0 = time.perf_counter()
            kop = curvlinops.KFACLinearOperator(model, loss, params, data, fisher_type="type-2",
                                                separate_weight_and_bias=False, check_deterministic=False)
            out = (kop @ Vt).numpy()[perm]
            times[("curvlinops", "kfac")] = time.perf_counter() - t0
            diffs[("curvlinops", "kfac @ V")] = np.abs(out - kfac_ours).max() / np.abs(kfac_ours).max()
            times[("curvlinops", "kfac @ V")] = best(lambda: kop @ Vt)
        from _common import torch_functions
        outputs = torch_functions(torch, SIZES, activation="relu")["outputs"]
        tt = torch.from_numpy(theta)

        def torch_ggn(Vt):  # (k, P): per direction J v, A (J v), J^T (...), vmapped over the k directions
            def one(v):
                Z, JV = torch.func.jvp(lambda t: outputs(t, tX), (tt,), (v,))
                p = torch.softmax(Z, dim=1)
                AJV = p * JV - p * (p * JV).sum(dim=1, keepdim=True)
                return torch.func.vjp(lambda t: outputs(t, tX), tt)[1](AJV / X.shape[0])[0]
            return torch.func.vmap(one)(Vt)

        for k in (1, 8):
            Vk = torch.from_numpy(V[:, :k].T.copy())
            out = torch_ggn(Vk).numpy().T
            diffs[("torch.func", k)] = np.abs(out - ours[k]).max() / np.abs(ours[k]).max()
            times[("torch.func", k)] = best(lambda Vk=Vk: torch_ggn(Vk))

    jax = load_jax()
    if jax is not None:
        jnp = jax.numpy
        from _common import jax_functions
        outputs = jax_functions(jax, SIZES, activation="relu")["outputs"]
        jt, jX = jnp.asarray(theta), jnp.asarray(X)

        @jax.jit
        def jax_ggn(t0, X0, Vt):  # theta and X as arguments: closed over, XLA would constant-fold the GEMMs
            def one(v):
                Z, JV = jax.jvp(lambda t: outputs(t, X0), (t0,), (v,))
                p = jax.nn.softmax(Z, axis=1)
                AJV = p * JV - p * (p * JV).sum(axis=1, keepdims=True)
                return jax.vjp(lambda t: outputs(t, X0), t0)[1](AJV / X0.shape[0])[0]
            return jax.vmap(one)(Vt)

        for k in (1, 8):
            Vk = jnp.asarray(V[:, :k].T)
            out = np.asarray(jax_ggn(jt, jX, Vk)).T
            diffs[("JAX", k)] = np.abs(out - ours[k]).max() / np.abs(ours[k]).max()
            times[("JAX", k)] = best(lambda Vk=Vk: jax_ggn(jt, jX, Vk).block_until_ready())

    rows = []
    for what, label in ((1, "GGN @ v, k = 1"), (8, "GGN @ V, k = 8"), ("kfac", "KFAC: factors + first product, k = 8"),
                        ("kfac @ V", "KFAC @ V, k = 8")):
        base = times[("minisgd", what)]
        row = [label, f"{base:.3f}"]
        for tool in ("curvlinops", "torch.func", "JAX"):
            t = times.get((tool, what))
            d = diffs.get((tool, what))
            diff = "" if d is None else f", diff {d:.0e}"
            row.append("-" if t is None else f"{t:.3f} ({t / base:.2f}x{diff})")
        rows.append(row)
    print(markdown_table(["float64, seconds", "minisgd", "curvlinops (time, / minisgd, max rel. diff)",
                          "torch.func jvp+vjp", "JAX jit(jvp+vjp)"], rows))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
