"""Shared pieces of the minisgd benchmarks: thread pinning, machine description, timing,
the flat-theta layout, and JAX / PyTorch twins of the MLP that compute the same function.

Import order matters for threads: call ``set_threads(n)`` *before* NumPy, Numba, JAX or PyTorch
are imported, so that every BLAS / OpenMP / Eigen pool starts with ``n`` threads.

The comparison libraries are optional: ``load_jax()`` / ``load_torch()`` return None when the
library is missing, and the benchmark prints "n/a" for their columns.
"""
import os
import platform
import sys
import time

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def set_threads(n):
    """Give every library the same ``n`` threads: environment variables for BLAS / OpenMP / Numba
    (read at import), and CPU affinity to the first ``n`` cores, which also bounds XLA's Eigen
    pool and anything else that sizes itself from the hardware. Returns a one-line description."""
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    if n == 1:  # XLA has no "n threads" flag; one thread is the only count it takes directly
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    pinned = "no"
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            os.sched_setaffinity(0, set(cpus[:n]))
            pinned = f"cores {cpus[:n]}"
        else:
            pinned = f"all {len(cpus)} cores"
    return f"{n} threads per library ({', '.join(v for v in THREAD_ENV[:3])}, NUMBA_NUM_THREADS, " \
           f"torch.set_num_threads, threadpoolctl; affinity: {pinned})"


def limit_blas(n):
    """threadpoolctl limit on NumPy's BLAS (in case the environment variables came too late)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n)


# ----------------------------------------------------------------------------------------------
# Optional libraries
# ----------------------------------------------------------------------------------------------

def load_jax(platform="cpu"):
    """JAX with float64 on ``platform`` ("cpu", or "gpu" for its CUDA plugin), or None when it cannot load."""
    try:
        import jax
    except Exception:  # ImportError, or a broken jaxlib
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", {"gpu": "cuda"}.get(platform, platform))
    return jax


def load_torch(threads):
    try:
        import torch
    except Exception:
        return None
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (parallel work has started)
        pass
    return torch


# ----------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------

def machine_info(np, jax=None, torch=None):
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "os.cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "blas": _blas(np),
    }
    try:
        import numba
        info["numba"] = numba.__version__
    except Exception:
        info["numba"] = None
    info["jax"] = jax.__version__ if jax is not None else None
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
    else:
        info["torch"] = None
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas(np):
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, "
                             f"{p.get('architecture')})" for p in pools)
    except Exception:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def gemm_rate(np, n=4096, repeats=3):
    """Measured float64 GEMM rate of NumPy's BLAS, GFLOP/s (best of ``repeats`` n x n x n products)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    c = np.empty((n, n))
    np.matmul(a, b, out=c)  # warm-up
    best = min(timeit(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=0, label=f"numpy GEMM {n}"))
    return 2.0 * n ** 3 / best / 1e9


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

TIMINGS = []  # one entry per timeit call: label, times, foreign load of the accepted batch, batches run
FOREIGN_THRESHOLD = 0.10  # cores used by other processes above which a batch of timings counts as contaminated


def timeit(fn, repeats=3, warmup=1, label=None, retries=3, budget_s=120.0):
    """Wall times (seconds) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.
    ``fn`` must block until its result is ready (JAX: block_until_ready).

    The CPU time that other processes used during the batch is measured (``ForeignLoad``); if it exceeds
    ``FOREIGN_THRESHOLD`` cores, the batch is run again (up to ``retries`` times, while the time spent stays
    under ``budget_s``) and the least contaminated batch is kept. The record goes to ``TIMINGS``."""
    t_call = None
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        t_call = time.perf_counter() - t0
    if t_call is not None and t_call > 0:  # fast functions: enough calls for a batch of >= 0.3 s (jiffy resolution)
        repeats = max(repeats, min(100, int(0.3 / t_call)))
    t_start = time.perf_counter()
    best_batch = None
    for attempt in range(1 + retries):
        times = []
        with ForeignLoad() as fl:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        foreign = fl.cores if fl.cores is not None else 0.0
        if best_batch is None or foreign < best_batch[1]:
            best_batch = (times, foreign)
        spent = time.perf_counter() - t_start
        if foreign <= FOREIGN_THRESHOLD or spent + spent / (attempt + 1) > budget_s:
            break
    TIMINGS.append({"label": label, "times": best_batch[0], "foreign": best_batch[1], "batches": attempt + 1})
    return best_batch[0]


class ForeignLoad:
    """CPU time used by *other* processes while a section runs, from /proc/stat minus our own os.times():
    ``cores`` is that time divided by the wall time (0 on a quiet machine; 1 means a whole core was taken)."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        busy, own = _busy_seconds(), _own_seconds()
        self.wall = wall
        self.cores = None if busy is None or self.busy0 is None else max(0.0, (busy - self.busy0) - (own - self.own0)) / wall
        return False


def _busy_seconds():
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    busy = sum(f[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def fmt_time(t):
    if t is None:
        return "n/a"
    if t >= 1.0:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


def fmt(x, spec=".2f", suffix=""):
    return "n/a" if x is None else f"{x:{spec}}{suffix}"


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# The flat parameter layout of the contract
# ----------------------------------------------------------------------------------------------

def layer_slices(sizes):
    """[(fan_in, fan_out, start, stop)] per layer; theta[start:stop] is [W; b] of shape
    (fan_in + 1, fan_out) flattened row-major (W: (fan_in, fan_out), b: (fan_out,) last row)."""
    out, start = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        stop = start + (fan_in + 1) * fan_out
        out.append((fan_in, fan_out, start, stop))
        start = stop
    return out


def num_params(sizes):
    return layer_slices(sizes)[-1][3]


def unflatten_np(theta, sizes):
    """[(W, b)] views of a flat NumPy theta."""
    out = []
    for fan_in, fan_out, start, stop in layer_slices(sizes):
        M = theta[start:stop].reshape(fan_in + 1, fan_out)
        out.append((M[:-1], M[-1]))
    return out


def init_np(np, sizes, seed=0, dtype="float64"):
    """A LeCun-normal theta in the contract layout (only for testing the competitor halves on their own;
    the benchmark itself uses ``net.init``)."""
    rng = np.random.default_rng(seed)
    parts = []
    for fan_in, fan_out, _, _ in layer_slices(sizes):
        parts.append(rng.standard_normal((fan_in, fan_out)).ravel() / np.sqrt(fan_in))
        parts.append(np.zeros(fan_out))
    return np.concatenate(parts).astype(dtype)


def _act_np(np, name):
    return {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "identity": lambda z: z}[name]


def loss_np(np, theta, X, y, sizes, activation="tanh"):
    """Reference mean cross-entropy in NumPy (float64), to check that all twins agree."""
    act = _act_np(np, activation)
    a = X
    layers = unflatten_np(theta, sizes)
    for i, (W, b) in enumerate(layers):
        z = a @ W + b
        a = act(z) if i < len(layers) - 1 else z
    m = a.max(axis=1, keepdims=True)
    lse = np.log(np.exp(a - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - a[np.arange(len(y)), y]))


def synthetic_data(np, N, d, K, seed=1, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)).astype(dtype)
    y = rng.integers(0, K, size=N)
    return X, y


def flat_outputs(sizes, act):
    """The network's outputs as a function of the flat theta, in minisgd's layout, for any array library whose
    arrays slice, reshape and matmul like NumPy's (JAX, PyTorch): ``outputs(theta, X) -> (N, K)``."""
    slices = layer_slices(sizes)

    def outputs(theta, X):
        a = X
        for i, (fan_in, fan_out, start, stop) in enumerate(slices):
            M = theta[start:stop].reshape(fan_in + 1, fan_out)  # (fan_in + 1, fan_out): weights, then bias row
            z = a @ M[:-1] + M[-1]
            a = act(z) if i < len(slices) - 1 else z
        return a

    return outputs


# ----------------------------------------------------------------------------------------------
# JAX twin: loss as a function of the flat theta (so jax.hessian is P x P in the same layout)
# ----------------------------------------------------------------------------------------------

def jax_functions(jax, sizes, activation="tanh"):
    jnp = jax.numpy
    outputs = flat_outputs(sizes, {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda z: z,
                                   "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus,
                                   "gelu": lambda z: jax.nn.gelu(z, approximate=True)}[activation])

    def per_example_loss(theta, x, y):
        """Loss of one example x: (d,), y: () int."""
        z = outputs(theta, x[None, :])[0]
        return jax.nn.logsumexp(z) - z[y]

    def loss(theta, X, y):
        Z = outputs(theta, X)
        return jnp.mean(jax.nn.logsumexp(Z, axis=1) - jnp.take_along_axis(Z, y[:, None], axis=1)[:, 0])

    def hvp(theta, X, y, Vt):
        """H @ V for V = Vt.T, Vt: (k, P); forward-over-reverse, vmapped over the k directions."""
        g = lambda t: jax.grad(loss)(t, X, y)
        return jax.vmap(lambda v: jax.jvp(g, (theta,), (v,))[1])(Vt).T

    return {
        "outputs": outputs,
        "loss": loss,
        "per_example_loss": per_example_loss,
        "hessian": jax.jit(jax.hessian(loss)),
        "per_example_grads": jax.jit(jax.vmap(jax.grad(per_example_loss), in_axes=(None, 0, 0))),
        "hvp": jax.jit(hvp),
        "loss_and_grad": jax.jit(jax.value_and_grad(loss)),
    }


def jax_compile(fn, *args):
    """(compiled function, compile seconds) via the AOT path lower().compile()."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# PyTorch twins
# ----------------------------------------------------------------------------------------------

def torch_functions(torch, sizes, activation="tanh"):
    """Functional twin on the flat theta, for torch.func.hessian / vmap(grad)."""
    F = torch.nn.functional
    outputs = flat_outputs(sizes, {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z,
                                   "sigmoid": torch.sigmoid, "softplus": F.softplus,
                                   "gelu": lambda z: F.gelu(z, approximate="tanh")}[activation])

    def loss(theta, X, y):
        return F.cross_entropy(outputs(theta, X), y)

    def per_example_loss(theta, x, y):
        z = outputs(theta, x.unsqueeze(0))
        return F.cross_entropy(z, y.unsqueeze(0))

    return {
        "outputs": outputs,
        "loss": loss,
        "hessian": torch.func.hessian(loss),
        "per_example_grads": torch.func.vmap(torch.func.grad(per_example_loss), in_dims=(None, 0, 0)),
    }


def torch_sequential(torch, theta, sizes, activation="tanh"):
    """nn.Sequential(Linear, act, ..., Linear) holding exactly the parameters of the flat theta
    (nn.Linear.weight is W.T: (fan_out, fan_in)). dtype follows theta."""
    nn = torch.nn
    Act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    mods = []
    layers = unflatten_np(theta, sizes)
    dtype = {"float32": torch.float32, "float64": torch.float64}[str(theta.dtype)]
    for i, (W, b) in enumerate(layers):
        lin = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(Act())
    return nn.Sequential(*mods)


def torch_sequential_to_flat(np, model):
    """The flat theta (contract layout) of an nn.Sequential built by ``torch_sequential``."""
    parts = []
    for m in model:
        if hasattr(m, "weight"):
            W = m.weight.detach().numpy().T
            b = m.bias.detach().numpy()
            parts.append(np.concatenate([W, b[None, :]], axis=0).ravel())
    return np.concatenate(parts)


def self_test(np, jax, torch, sizes=(8, 6, 5, 3), N=32):
    """Check that the JAX and torch twins compute the NumPy reference loss, and that their
    Hessians / per-example gradients agree with each other (run without minisgd)."""
    sizes = list(sizes)
    theta = init_np(np, sizes, seed=0)
    theta[:] += 0.1 * np.random.default_rng(5).standard_normal(theta.shape)  # nonzero biases
    X, y = synthetic_data(np, N, sizes[0], sizes[-1])
    ref = loss_np(np, theta, X, y, sizes)
    out = {"numpy_loss": ref}
    Hs, Gs = {}, {}
    if jax is not None:
        jf = jax_functions(jax, sizes)
        out["jax_loss"] = float(jf["loss"](theta, X, y))
        Hs["jax"] = np.asarray(jf["hessian"](theta, X, y))
        Gs["jax"] = np.asarray(jf["per_example_grads"](theta, X, y))
        V = np.random.default_rng(2).standard_normal((len(theta), 3))
        out["jax_hvp_vs_H"] = float(np.abs(np.asarray(jf["hvp"](theta, X, y, V.T)) - Hs["jax"] @ V).max())
    if torch is not None:
        tf = torch_functions(torch, sizes)
        tt, Xt, yt = torch.from_numpy(theta), torch.from_numpy(X), torch.from_numpy(y)
        out["torch_loss"] = float(tf["loss"](tt, Xt, yt))
        Hs["torch"] = tf["hessian"](tt, Xt, yt).numpy()
        Gs["torch"] = tf["per_example_grads"](tt, Xt, yt).numpy()
        model = torch_sequential(torch, theta, sizes)
        out["torch_seq_loss"] = float(torch.nn.functional.cross_entropy(model(Xt), yt).detach())
        out["torch_seq_roundtrip"] = float(np.abs(torch_sequential_to_flat(np, model) - theta).max())
    if len(Hs) == 2:
        out["H_jax_vs_torch"] = float(np.abs(Hs["jax"] - Hs["torch"]).max() / np.abs(Hs["jax"]).max())
        out["G_jax_vs_torch"] = float(np.abs(Gs["jax"] - Gs["torch"]).max() / np.abs(Gs["jax"]).max())
    for name, G in Gs.items():
        # mean of per-example gradients == gradient of the mean loss (finite difference check)
        e = 1e-6
        i = len(theta) // 2
        tp, tm = theta.copy(), theta.copy()
        tp[i] += e
        tm[i] -= e
        fd = (loss_np(np, tp, X, y, sizes) - loss_np(np, tm, X, y, sizes)) / (2 * e)
        out[f"{name}_grad_fd_err"] = float(abs(G.mean(axis=0)[i] - fd))
    return out


if __name__ == "__main__":  # python benchmarks/_common.py : check the competitor twins alone
    set_threads(int(sys.argv[1]) if len(sys.argv) > 1 else (os.cpu_count() or 1))
    import numpy
    jx, th = load_jax(), load_torch(os.cpu_count() or 1)
    for k, v in self_test(numpy, jx, th).items():
        print(f"{k:>22}: {v}")
