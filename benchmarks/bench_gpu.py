"""minisgd on a GPU (CuPy) against JAX and PyTorch on the same GPU, with the CPU's figures beside them.

    python benchmarks/bench_gpu.py --budget 240 --json bench_gpu.json --md bench_gpu.md
    python benchmarks/bench_gpu.py --dry-run      # NumPy in place of CuPy, tiny sizes: rehearses every line on a CPU

Needs MNIST (``$MINISGD_DATA/mnist``). Sections, each a Markdown table:

  a. The exact float64 Hessian and its full ``eigh`` (eigenvalues and eigenvectors) for 196-h-h-10 ReLU networks
     on N = 2,048 pooled (14x14) MNIST images, h chosen for P = 5k, 10k, 20k, 40k: seconds, memory (CuPy pool
     high-water mark above what was allocated before), the GEMM flops of the Hessian per second as a fraction
     of the float64 GEMM rate measured on the same GPU (its FP64 rate), the eigenpairs' residuals.
     ``jax.jit(jax.hessian(loss))`` on the same GPU (a child process, so that its memory goes when it ends)
     where its memory estimate fits; NumPy + Numba on all CPU cores for the smallest size, which also checks the
     GPU's Hessian against the CPU's.
  b. 784-512-512-10 ReLU over all 60,000 MNIST training images, float32 and float64: one Hessian-vector product
     and the top-10 eigenvalues by Lanczos (tolerance 1e-6); the CPU's HVP beside (its Lanczos estimated as
     iterations x HVP, marked "est.").
  c. A float32 SGD step of 784-512-512-10 ReLU at batch 256 and 6,000 on the 60,000 images: minisgd's ``train()``
     (per step: the time of S1 + S steps minus that of S1, so setup and the final evaluation cancel) against a
     ``torch.nn`` loop on CUDA (gather, forward, backward, ``optim.SGD``, one ``loss.item()`` per step, as
     ``train()`` reads the loss once per step); both on the CPU beside.

Every item has a predicted cost where one can be had (the next Hessian from the last one's P^2 and P^3 scaling),
and one that would end past ``--budget`` seconds is skipped with the reason in the table: the benchmark always
finishes and writes what it measured.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (no NumPy import at module level: threads are set first)

FULL = {
    "hess_targets": [5000, 10000, 20000, 40000], "hess_N": 2048, "jax_mem_fraction": 0.6, "cpu_hessian_max_P": 5000,
    "lanczos_sizes": [784, 512, 512, 10], "lanczos_N": None, "lanczos_k": 10,
    "step_sizes": [784, 512, 512, 10], "step_N": None, "step_batches": [256, 6000],
    "step_counts": {"gpu": {256: (20, 200), 6000: (5, 50)}, "cpu": {256: (5, 30), 6000: (2, 6)}},
    "gemm_n": {"gpu": 8192, "cpu": 4096}, "reserve_bc": 50.0,
}
TINY = {
    "hess_targets": [300, 600], "hess_N": 64, "jax_mem_fraction": 0.0025, "cpu_hessian_max_P": 300,  # JAX: 1st fits
    "lanczos_sizes": [784, 16, 16, 10], "lanczos_N": 500, "lanczos_k": 3,
    "step_sizes": [784, 16, 16, 10], "step_N": 1000, "step_batches": [32, 100],
    "step_counts": {"gpu": {32: (2, 6), 100: (2, 4)}, "cpu": {32: (2, 6), 100: (2, 4)}},
    "gemm_n": {"gpu": 256, "cpu": 256}, "reserve_bc": 0.0,
}
LR = 0.05
LANCZOS_TOL = 1e-6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="NumPy in place of CuPy (the 'GPU' rows run on the CPU) and tiny sizes: a rehearsal")
    p.add_argument("--budget", type=float, default=240.0, help="seconds for everything (default 240)")
    p.add_argument("--only", default="abc", help="sections to run (default abc)")
    p.add_argument("--json", metavar="PATH", help="write every number as JSON")
    p.add_argument("--md", metavar="PATH", help="write the tables as Markdown")
    p.add_argument("--_jax-child", dest="jax_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Budget:
    """Wall seconds left until the end; an item runs when its predicted cost fits what is left."""

    def __init__(self, seconds):
        self.end = time.perf_counter() + seconds

    def left(self):
        return self.end - time.perf_counter()

    def skip_reason(self, predicted, reserve=0.0):
        """``None`` when ``predicted`` seconds fit before the end less ``reserve``, else why not."""
        if predicted is None or predicted <= self.left() - reserve:
            return None
        return f"skipped: predicted {predicted:.0f} s, {max(0.0, self.left() - reserve):.0f} s left for it"


class Device:
    """minisgd's arrays on one device: ``"gpu"`` (CuPy; NumPy in a dry run) or ``"cpu"`` (NumPy), with a clock that
    waits for the device and, on CuPy, the memory pool's high-water mark."""

    def __init__(self, name, dry_run):
        from minisgd import backend
        self.name, self.backend = name, backend
        self.cupy = None
        if name == "gpu" and not dry_run:
            import cupy
            self.cupy = cupy
        self.where = "cpu" if self.cupy is None else "gpu"
        self.label = "CuPy" if self.cupy is not None else ("NumPy (dry run)" if name == "gpu" else "NumPy, CPU")
        self.xp = backend.device_namespace(self.where)

    def put(self, a):
        return self.backend.to_device(a, self.where)

    def sync(self):
        if self.cupy is not None:
            self.cupy.cuda.Device().synchronize()

    def run(self, fn):
        """``(result, seconds, extra_bytes)``: one call of ``fn``, timed to the device's end; extra_bytes is the
        CuPy pool's high-water mark above what was in use before (None off CuPy)."""
        base = None
        if self.cupy is not None:
            pool = self.cupy.get_default_memory_pool()
            pool.free_all_blocks()
            base = pool.used_bytes()
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        seconds = time.perf_counter() - t0
        extra = None if base is None else self.cupy.get_default_memory_pool().total_bytes() - base
        return out, seconds, extra

    def best(self, fn, repeats):
        """Best wall time of ``repeats`` calls after one warm-up (kernel compilation, first allocations)."""
        self.run(fn)
        return min(self.run(fn)[1] for _ in range(repeats))

    def free(self):
        if self.cupy is not None:
            self.cupy.get_default_memory_pool().free_all_blocks()

    def describe(self):
        if self.cupy is None:
            return {"device": "NumPy on the CPU" + (" (dry run: in place of CuPy)" if self.name == "gpu" else "")}
        cp = self.cupy
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return {"device": name, "memory_GiB": round(props["totalGlobalMem"] / 2 ** 30, 1), "cupy": cp.__version__,
                "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(), "cuda_driver": cp.cuda.runtime.driverGetVersion()}

    def gemm_rate(self, n, dtype):
        """Measured GEMM rate, GFLOP/s: best of 3 (n x n) @ (n x n) products in ``dtype``."""
        import numpy as np
        rng = np.random.default_rng(0)
        a, b = (self.put(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))
        return 2.0 * n ** 3 / self.best(lambda: a @ b, 3) / 1e9


def mib(nbytes):
    return None if nbytes is None else nbytes / 2 ** 20


def width_for(target_P, d=196, K=10):
    """Hidden width h of a d-h-h-10 network whose P = (d + 1) h + (h + 1) h + (h + 1) K is nearest ``target_P``."""
    return min(range(1, 2000), key=lambda h: abs((d + 1) * h + (h + 1) * h + (h + 1) * K - target_P))


def _eigh(dev, H):
    """Full eigendecomposition on the device; ``(w, V, route)``. CuPy's ``eigh`` calls cuSOLVER's 32-bit
    ``syevd``, whose int workspace size can overflow near P = 40k: then PyTorch's (64-bit ``Xsyevd``) on the same
    memory through DLPack, and the route says so."""
    try:
        w, V = dev.xp.linalg.eigh(H)
        return w, V, "xp.linalg.eigh"
    except Exception as exc:  # noqa: BLE001  (cuSOLVER reports a workspace overflow in several ways)
        if dev.cupy is None:
            raise
        first = f"{type(exc).__name__}: {exc}"
    import torch
    w, V = torch.linalg.eigh(torch.from_dlpack(H))
    return dev.cupy.from_dlpack(w), dev.cupy.from_dlpack(V), f"torch.linalg.eigh via DLPack (CuPy: {first[:120]})"


def _eig_residual(dev, H, w, V):
    """``max |H v - w v| / max |w|`` over the largest and the smallest eigenpair."""
    xp = dev.xp
    res = []
    for i in (0, w.shape[0] - 1):
        v = V[:, i]
        res.append(float(xp.max(xp.abs(H @ v - w[i] * v))))
    return max(res) / float(xp.max(xp.abs(w)))


# ---- a. exact Hessian and eigh ----------------------------------------------------------------------------------

def hessian_inputs(cfg):
    """``[(target, sizes, theta, X, y)]``: the networks of section a on pooled MNIST (NumPy float64)."""
    from minisgd import MLP
    from minisgd.data import load_mnist
    ds = load_mnist(n_train=cfg["hess_N"], pool=2, seed=0)
    out = []
    for target in cfg["hess_targets"]:
        h = width_for(target, d=ds.input_dim)
        sizes = [ds.input_dim, h, h, 10]
        out.append((target, sizes, MLP(sizes, activation="relu").init(seed=0, scheme="he"), ds.X_train, ds.y_train))
    return out


def section_hessian(gpu, cpu, cfg, budget, gemm, dry_run):
    import numpy as np
    from minisgd import MLP, hessian_flops
    rows, probes, last = [], {}, None
    inputs = hessian_inputs(cfg)
    total = gpu.cupy.cuda.Device().mem_info[1] if gpu.cupy is not None else 8 * 2 ** 30
    fits = [_jax_need(sizes, theta, X) <= cfg["jax_mem_fraction"] * total for _, sizes, theta, X, _ in inputs]
    jax_at = fits.index(False) if False in fits else len(inputs)  # JAX runs before the sizes it cannot hold
    for i, (target, sizes, theta, X, y) in enumerate(inputs):
        if i == jax_at:
            rows += _jax_hessians(gpu, inputs[:i], probes, cfg, budget, dry_run)
        net = MLP(sizes, activation="relu")
        P, N = net.num_params, X.shape[0]
        row = {"target_P": target, "P": P, "net": "-".join(map(str, sizes)), "N": N, "device": gpu.label}
        rows.append(row)
        predicted = None if last is None else last[1] * (P / last[0]) ** 2 + last[2] * (P / last[0]) ** 3
        why = budget.skip_reason(predicted, cfg["reserve_bc"])
        if why:
            row["status"] = why
            continue
        try:
            th, Xd, yd = gpu.put(theta), gpu.put(X), gpu.put(y)
            if last is None:  # compile the kernels on a small net first, so the first size is not charged for it
                small = MLP([sizes[0], 4, 4, 10], activation="relu")
                for dev in (gpu, cpu):
                    dev.run(lambda: dev.xp.linalg.eigh(small.hessian(dev.put(small.init(seed=0)), dev.put(X),
                                                                     dev.put(y))))
            H, t_h, m_h = gpu.run(lambda: net.hessian(th, Xd, yd))
            (w, V, route), t_e, m_e = gpu.run(lambda: _eigh(gpu, H))
            flops = hessian_flops(net, N)
            row.update(status="ok", hessian_s=t_h, eigh_s=t_e, total_s=t_h + t_e, hessian_extra_MiB=mib(m_h),
                       eigh_extra_MiB=mib(m_e), result_MiB=P * P * 8 / 2 ** 20, hessian_gflop=flops / 1e9,
                       hessian_gflops=flops / t_h / 1e9, fp64_fraction=flops / t_h / 1e9 / gemm["gpu_fp64"],
                       eigh_route=route, eig_residual=_eig_residual(gpu, H, w, V),
                       lambda_max=float(w[-1]), lambda_min=float(w[0]))
            V_probe = np.random.default_rng(1).standard_normal((P, 4))
            probes[P] = (V_probe, gpu.backend.to_numpy(H @ gpu.put(V_probe)))
            if target <= cfg["cpu_hessian_max_P"]:
                row["H_vs_cpu"] = _cpu_hessian(cpu, net, theta, X, y, gpu.backend.to_numpy(H), rows, budget, cfg)
            last = (P, t_h, t_e)
            del H, w, V
        except Exception as exc:  # noqa: BLE001  (a failure is a result: record it, go on to the next item)
            row.update(status=f"failed: {type(exc).__name__}: {str(exc)[:300]}")
            print(traceback.format_exc(), file=sys.stderr)
        gpu.free()
    if jax_at == len(inputs):
        rows += _jax_hessians(gpu, inputs, probes, cfg, budget, dry_run)
    rows += [{"target_P": t, "P": th.shape[0], "net": "-".join(map(str, sz)), "N": X.shape[0], "device": "JAX",
              "status": f"skipped: needs about {_jax_need(sz, th, X) / 2 ** 30:.3g} GiB, more than "
                        f"{cfg['jax_mem_fraction']:g} of the device's"} for t, sz, th, X, _ in inputs[jax_at:]]
    order = {gpu.label: 0, "JAX": 1, cpu.label: 2}
    return sorted(rows, key=lambda r: (r["P"], order[r["device"]]))


def _jax_need(sizes, theta, X):
    """Bytes ``jax.hessian`` (jacfwd over jacrev) needs, estimated: P tangents of the backward pass, each about
    2 N (twice the summed widths) numbers, and the P x P result."""
    P, N = theta.shape[0], X.shape[0]
    return 8 * (P * P + 2 * N * (2 * sum(sizes[1:]) + sizes[-1]) * P)


def _cpu_hessian(cpu, net, theta, X, y, H_gpu, rows, budget, cfg):
    """The CPU's row for this net (NumPy + Numba, all cores); returns max |H_gpu - H_cpu| / max |H_cpu|."""
    import numpy as np
    H, t_h, _ = cpu.run(lambda: net.hessian(theta, X, y))
    row = {"target_P": None, "P": net.num_params, "net": "-".join(map(str, net.sizes)), "N": X.shape[0],
           "device": cpu.label, "hessian_s": t_h}
    if budget.left() - cfg["reserve_bc"] < 60:
        row["status"] = f"Hessian only: {budget.left() - cfg['reserve_bc']:.0f} s left for eigh"
    else:
        (w, V), t_e, _ = cpu.run(lambda: np.linalg.eigh(H))
        row.update(status="ok", eigh_s=t_e, total_s=t_h + t_e, eig_residual=_eig_residual(cpu, H, w, V))
    rows.append(row)
    return float(np.max(np.abs(H_gpu - H)) / np.max(np.abs(H)))


def _jax_hessians(gpu, inputs, probes, cfg, budget, dry_run):
    """``jax.jit(jax.hessian(loss))`` in a child process for ``inputs`` (whose memory estimates fit)."""
    import numpy as np
    todo, rows = [], []
    for target, sizes, theta, X, y in inputs:
        P, N = theta.shape[0], X.shape[0]
        row = {"target_P": target, "P": P, "net": "-".join(map(str, sizes)), "N": N, "device": "JAX",
               "need_GiB": _jax_need(sizes, theta, X) / 2 ** 30}
        rows.append(row)
        if P not in probes:
            row["status"] = "skipped: minisgd's Hessian was not computed at this size"
        else:
            todo.append((row, sizes, theta, X, y))
    if not todo:
        return rows
    left = budget.left() - cfg["reserve_bc"]
    if left < 20:
        for row, *_ in todo:
            row["status"] = f"skipped: {max(0, left):.0f} s left"
        return rows
    gpu.free()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (row, sizes, theta, X, y) in enumerate(todo):
            np.savez(os.path.join(tmp, f"in{i}.npz"), sizes=np.asarray(sizes), theta=theta, X=X, y=y,
                     V=probes[theta.shape[0]][0])
        env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        cmd = [sys.executable, os.path.abspath(__file__), "--_jax-child", tmp] + (["--dry-run"] if dry_run else [])
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left)
            sys.stderr.write(proc.stderr[-4000:])
            results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        except subprocess.TimeoutExpired:
            results = []
        for i, (row, sizes, theta, X, y) in enumerate(todo):
            got = next((r for r in results if r["i"] == i), None)
            if got is None:
                row["status"] = "failed or timed out (see the log)"
                continue
            row.update({k: v for k, v in got.items() if k not in ("i", "HV")})
            if "HV" in got:
                ref = probes[theta.shape[0]][1]
                row["H_vs_minisgd"] = float(np.max(np.abs(np.asarray(got["HV"]) - ref)) / np.max(np.abs(ref)))
    return rows


def jax_child(folder, dry_run):
    """Child process: jax.jit(jax.hessian) for each ``in{i}.npz``; one JSON line per size on stdout."""
    import numpy as np
    jax = C.load_jax(platform="cpu" if dry_run else "gpu")
    if jax is None:
        print(json.dumps({"i": 0, "status": "skipped: JAX is not installed"}))
        return
    i = 0
    while os.path.exists(os.path.join(folder, f"in{i}.npz")):
        d = np.load(os.path.join(folder, f"in{i}.npz"))
        out = {"i": i, "jax": jax.__version__, "platform": jax.default_backend()}
        try:
            f = C.jax_functions(jax, [int(s) for s in d["sizes"]], "relu")
            args = [jax.device_put(d[k]) for k in ("theta", "X", "y")]
            compiled, out["compile_s"] = C.jax_compile(f["hessian"], *args)
            t0 = time.perf_counter()
            H = compiled(*args).block_until_ready()
            out["hessian_s"] = time.perf_counter() - t0
            out["HV"] = np.asarray(H @ jax.device_put(d["V"])).tolist()
            stats = jax.devices()[0].memory_stats() or {}
            out["peak_MiB"] = mib(stats.get("peak_bytes_in_use"))
            out["status"] = "ok"
            del H
        except Exception as exc:  # noqa: BLE001  (out of memory is a result here)
            out["status"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps(out), flush=True)
        i += 1


# ---- b. HVP and Lanczos at MNIST scale ---------------------------------------------------------------------------

def section_lanczos(gpu, cpu, cfg, budget):
    import numpy as np
    from minisgd import MLP, ConvergenceError
    from minisgd.curvature import eigen
    from minisgd.data import load_mnist
    ds = load_mnist(n_train=cfg["lanczos_N"], seed=0)
    net = MLP(cfg["lanczos_sizes"], activation="relu")
    theta = net.init(seed=0, scheme="he")
    v = np.random.default_rng(2).standard_normal(net.num_params)
    rows, tops = [], {}
    for dtype in ("float32", "float64"):
        for dev in (gpu, cpu):
            row = {"dtype": dtype, "device": dev.label, "P": net.num_params,
                   "N": ds.X_train.shape[0]}
            rows.append(row)
            if budget.left() < 10:
                row["status"] = f"skipped: {budget.left():.0f} s left"
                continue
            try:
                th, X, y = dev.put(theta.astype(dtype)), dev.put(ds.X_train.astype(dtype)), dev.put(ds.y_train)
                hvp = net.hvp_operator(th, X, y)
                vd = dev.put(v.astype(dtype))
                row["hvp_s"] = dev.best(lambda: hvp(vd), 3 if dev is gpu else 1)
                if dev is gpu:
                    def spectrum():
                        try:
                            return eigen.hessian_spectrum(net, th, X, y, k=cfg["lanczos_k"], method="lanczos",
                                                          tol=LANCZOS_TOL, max_iter=200)
                        except ConvergenceError as exc:
                            return exc.partial
                    s, row["lanczos_s"], row["lanczos_extra_MiB"] = dev.run(spectrum)
                    s.residuals = np.asarray(s.residuals)
                    row.update(iterations=s.iterations, top=float(s.values[0]), tenth=float(s.values[-1]),
                               converged=bool(np.all(s.residuals <= LANCZOS_TOL * abs(s.values[0]))))
                    tops[dtype] = np.asarray(s.values)
                else:
                    iters = next((r["iterations"] for r in rows if r.get("iterations") and r["dtype"] == dtype), None)
                    row["lanczos_s_est"] = None if iters is None else iters * row["hvp_s"]
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001
                row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                print(traceback.format_exc(), file=sys.stderr)
            dev.free()
    check = None
    if len(tops) == 2:
        check = float(np.max(np.abs(tops["float32"] - tops["float64"]) / np.abs(tops["float64"])))
    return rows, check


# ---- c. training step against PyTorch ----------------------------------------------------------------------------

def section_step(gpu, cpu, cfg, budget, torch):
    import numpy as np
    from minisgd import MLP
    from minisgd.data import load_mnist
    from minisgd.training.train import TrainConfig, batch_sequence, train
    ds = load_mnist(n_train=cfg["step_N"], seed=0)
    sizes = cfg["step_sizes"]
    net = MLP(sizes, activation="relu")
    theta = net.init(seed=0, scheme="he").astype("float32")
    X, y = ds.X_train.astype("float32"), ds.y_train
    N = X.shape[0]
    rows = []
    for B in cfg["step_batches"]:
        for dev in (gpu, cpu):
            kind = "gpu" if dev is gpu else "cpu"
            s1, s = cfg["step_counts"][kind][B]
            row = {"batch": B, "device": dev.label, "steps_timed": s}
            rows.append(row)
            if budget.left() < 10:
                row["status"] = f"skipped: {budget.left():.0f} s left"
                continue
            try:
                th, Xd, yd = dev.put(theta), dev.put(X), dev.put(y)

                def run(steps):
                    cfg_t = TrainConfig(optimizer="sgd", lr=LR, batch_size=B, max_steps=steps, eval_every=None, seed=0,
                                        eval_subset=256)  # the final evaluation: small, and the same in both runs
                    return train(net, th, (Xd, yd), cfg_t, progress=False)
                run(2)  # warm-up: kernels, allocations
                (r1, t1, _), (r2, t2, _) = dev.run(lambda: run(s1)), dev.run(lambda: run(s1 + s))
                row["minisgd_ms"] = 1e3 * (t2 - t1) / s
                row["first_loss"] = r2.history["loss"][0]
                if torch is not None:
                    device = "cuda" if dev.cupy is not None else "cpu"
                    batches = [idx for e in range(s1 + s) for idx in
                               batch_sequence(TrainConfig(batch_size=B, max_steps=1), N, e)][: s1 + s]
                    t_ms, loss0 = torch_steps(torch, theta, sizes, X, y, batches, s1, device)
                    row.update(torch_ms=t_ms, torch_over_minisgd=t_ms / row["minisgd_ms"],
                               first_loss_rel_diff=abs(loss0 - row["first_loss"]) / abs(row["first_loss"]))
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001
                row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                print(traceback.format_exc(), file=sys.stderr)
            dev.free()
    return rows


def torch_steps(torch, theta, sizes, X, y, batches, warm, device):
    """``(ms per step, first loss)`` of a ``torch.nn`` SGD loop over ``batches`` (the first ``warm`` untimed) from
    ``theta``, reading ``loss.item()`` each step."""
    model = C.torch_sequential(torch, theta, sizes, "relu").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    first, t0 = None, None
    for i, idx in enumerate(batches):
        if i == warm:
            sync()
            t0 = time.perf_counter()
        it = torch.from_numpy(idx).to(device)
        loss = loss_fn(model(Xt.index_select(0, it)), yt.index_select(0, it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        first = value if first is None else first
    sync()
    return 1e3 * (time.perf_counter() - t0) / (len(batches) - warm), first


# ---- report ------------------------------------------------------------------------------------------------------

def f(x, spec=".3g"):
    return "n/a" if x is None else (x if isinstance(x, str) else f"{x:{spec}}")


def markdown(res):
    out = [f"# GPU benchmark{' (DRY RUN: NumPy in place of CuPy, tiny sizes)' if res['dry_run'] else ''}", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in res["machine"].items() if v is not None), "",
           f"Measured GEMM rates (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in res["gemm"].items()), ""]
    if "hessian" in res:
        out += ["## a. Exact float64 Hessian and full eigh (196-h-h-10 ReLU, pooled MNIST)", "",
                C.markdown_table(["P", "net", "N", "device", "Hessian", "eigh", "total", "extra memory (MiB) H / eigh",
                                  "fraction of FP64 GEMM rate", "residual", "check", "status"],
                                 [[r["P"], r["net"], r["N"], r["device"], C.fmt_time(r.get("hessian_s")),
                                   C.fmt_time(r.get("eigh_s")), C.fmt_time(r.get("total_s")),
                                   f"{f(r.get('hessian_extra_MiB'), '.0f')} / {f(r.get('eigh_extra_MiB'), '.0f')}"
                                   if r["device"] != "JAX" else f"peak {f(r.get('peak_MiB'), '.0f')}",
                                   f(r.get("fp64_fraction"), ".2f"), f(r.get("eig_residual"), ".1e"),
                                   _check(r), r.get("status", "")] for r in res["hessian"]]), ""]
    if "lanczos" in res:
        out += ["## b. HVP and top-10 Lanczos, 784-512-512-10 ReLU over the MNIST training set", "",
                C.markdown_table(["dtype", "device", "P", "N", "one HVP", "Lanczos", "iterations", "top", "10th",
                                  "status"],
                                 [[r["dtype"], r["device"], r["P"], r["N"], C.fmt_time(r.get("hvp_s")),
                                   C.fmt_time(r.get("lanczos_s")) if "lanczos_s" in r else
                                   (C.fmt_time(r.get("lanczos_s_est")) + " est." if r.get("lanczos_s_est") else "n/a"),
                                   f(r.get("iterations")), f(r.get("top"), ".5g"), f(r.get("tenth"), ".5g"),
                                   r.get("status", "")] for r in res["lanczos"]]), "",
                f"Top-{len(res.get('lanczos_tops', [])) or 10} eigenvalues, float32 against float64: max relative "
                f"difference {f(res.get('lanczos_f32_vs_f64'), '.1e')}.", ""]
    if "step" in res:
        out += ["## c. float32 SGD step, 784-512-512-10 ReLU", "",
                C.markdown_table(["batch", "device", "minisgd train() per step", "PyTorch per step",
                                  "PyTorch / minisgd", "first loss rel. diff", "status"],
                                 [[r["batch"], r["device"], f(r.get("minisgd_ms"), ".3g") + " ms",
                                   f(r.get("torch_ms"), ".3g") + " ms", f(r.get("torch_over_minisgd"), ".2f"),
                                   f(r.get("first_loss_rel_diff"), ".1e"), r.get("status", "")] for r in res["step"]]),
                ""]
    out += [f"Total {res['seconds']:.0f} s.", ""]
    return "\n".join(out)


def _check(r):
    if "H_vs_cpu" in r:
        return f"H vs CPU {r['H_vs_cpu']:.1e}"
    if "H_vs_minisgd" in r:
        return f"HV vs minisgd {r['H_vs_minisgd']:.1e}"
    return ""


def main(argv=None):
    args = parse_args(argv)
    if args.jax_child:
        return jax_child(args.jax_child, args.dry_run)
    C.set_threads(os.cpu_count() or 1)
    t_start = time.perf_counter()
    budget = Budget(args.budget)
    cfg = TINY if args.dry_run else FULL
    import numpy as np
    gpu, cpu = Device("gpu", args.dry_run), Device("cpu", args.dry_run)
    torch = C.load_torch(os.cpu_count() or 1)
    if torch is not None and not args.dry_run and not torch.cuda.is_available():
        torch = None
    res = {"dry_run": args.dry_run, "budget_s": args.budget,
           "machine": {**gpu.describe(), "cpu": C._cpu_model(), "cores": os.cpu_count(), "numpy": np.__version__,
                       "torch": None if torch is None else torch.__version__}}
    res["gemm"] = {"gpu_fp64": gpu.gemm_rate(cfg["gemm_n"]["gpu"], "float64"),
                   "gpu_fp32": gpu.gemm_rate(cfg["gemm_n"]["gpu"], "float32"),
                   "cpu_fp64": cpu.gemm_rate(cfg["gemm_n"]["cpu"], "float64")}
    gpu.free()
    sections = [("a", "hessian", lambda: section_hessian(gpu, cpu, cfg, budget, res["gemm"], args.dry_run)),
                ("b", "lanczos", lambda: section_lanczos(gpu, cpu, cfg, budget)),
                ("c", "step", lambda: section_step(gpu, cpu, cfg, budget, torch))]
    for letter, key, fn in sections:
        if letter not in args.only:
            continue
        print(f"[bench_gpu] section {letter} ({key}), {budget.left():.0f} s left", file=sys.stderr, flush=True)
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001  (a broken section must not lose the others)
            print(traceback.format_exc(), file=sys.stderr)
            res[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
            continue
        if key == "lanczos":
            res["lanczos"], res["lanczos_f32_vs_f64"] = out
        else:
            res[key] = out
        _write(args, res, t_start)  # after every section: a run stopped later keeps what it measured
    _write(args, res, t_start)
    print(markdown(res))


def _write(args, res, t_start):
    res["seconds"] = time.perf_counter() - t_start
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(markdown(res))


if __name__ == "__main__":
    main()
