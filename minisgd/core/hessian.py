r"""The exact Hessian of an MLP by blocks, and its Gauss-Newton and residual parts.

Per example, with :math:`\tilde a = [a, 1]` and layer l's parameters the matrix :math:`\tilde W_l`, the
second derivative with respect to :math:`\tilde W_l[i, o]` and :math:`\tilde W_m[i', o']`, :math:`m \le l`, is

.. math::
    \tilde a_{l-1,i}\, \tilde a_{m-1,i'}\, [C_l J_{l \leftarrow m}]_{o o'}
    \;+\; \delta_{l,o}\, \tilde a_{m-1,i'}\, [\partial a_{l-1} / \partial z_m]_{i o'} \quad (m < l \text{ only}),

where :math:`J_{l \leftarrow m} = \partial z_l / \partial z_m` and :math:`C_l = \partial^2 \ell / \partial z_l^2`
(the loss as a function of layer l's pre-activations) follows the backward recursion

.. math::
    C_L = A, \qquad C_l = \mathrm{diag}(\sigma'_l)\, W_{l+1} C_{l+1} W_{l+1}^T\, \mathrm{diag}(\sigma'_l)
                        + \mathrm{diag}(\sigma''_l \odot g_l), \qquad g_l = \delta_{l+1} W_{l+1}^T .

Dropping every :math:`\sigma''` term and the first-order (second) term leaves the Gauss-Newton matrix
:math:`\frac1N\sum_n J_n^T A_n J_n`; what they contribute is the residual. So ``C = G + S`` with
``G`` (Gauss-Newton) and ``S`` (residual) each following the recursion on its own.

**Contraction order.** Summed over examples each block is a sum of Kronecker products. Forming them per
example would touch :math:`N P_l P_m` numbers; instead each term is one GEMM over the example axis,

.. math::
    [\tilde a_{l-1} \otimes \tilde a_{m-1}]^T [C_l J_{l \leftarrow m}] \;\; (N \text{ rows}, \; i i' \times o o')
    \qquad\text{and}\qquad [\delta_l \otimes \tilde a_{m-1}]^T [\partial a_{l-1}/\partial z_m]
    \;\; (o i' \times i o'),

followed by a permutation of axes to the ``(i, o) x (i', o')`` layout of ``theta``. Only the lower triangle
is computed (blocks m <= l; in a diagonal block, columns up to the current rows) and then mirrored. Two
shortcuts: for adjacent layers :math:`\partial a_{l-1} / \partial z_{l-1}` is diagonal, so the cross term
is one GEMM over i alone; the permutation and the mirror are Numba kernels with NumPy twins
(``minisgd.core.kernels``). About :math:`N P^2` flops in all (:math:`2 N P^2` for the naive full square), at the
machine's GEMM rate, with only :math:`O(N n^2)` per-example numbers materialized. Blocks are produced in
row chunks so the work space stays a fraction of ``P x P``. On several free cores the chunks run side by side, one
per core with one BLAS thread each: building a chunk's factors and scattering it then use every core too, where
one chunk at a time on multithreaded GEMMs left them on one.
"""
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial

from ..backend import available_memory, device_of, namespace
from ..errors import HessianTooLargeError
from ..threads import blas_threads, threads_for
from .passes import augmented, backward_pass, forward_pass
from .kernels import combine_block, scatter_block, symmetrize_from_lower

PARTS = ("full", "gauss_newton", "residual")
GIB = 2.0 ** 30


def _workspace_budget(P):
    """Elements allowed for one chunk's temporaries: 1/8 of the result, at least 2M."""
    return max(1 << 21, (P * P) // 8)


def hessian_memory_bytes(net, N, itemsize=8):
    """Bytes ``hessian`` needs: the ``(P, P)`` result, three chunk temporaries and the per-example blocks."""
    P, widths = net.num_params, net.sizes[1:]
    per_example = sum(3 * a * b for i, a in enumerate(widths) for b in widths[: i + 1])
    per_example += 2 * max((layer.fan_in + 1) * layer.fan_out for layer in net.layers)
    return itemsize * (P * P + 3 * _workspace_budget(P) + N * per_example)


def check_hessian_fits(net, N, itemsize, xp, max_memory=None):
    """Raise ``HessianTooLargeError`` before allocating if the dense Hessian does not fit."""
    need = hessian_memory_bytes(net, N, itemsize)
    have = available_memory(xp) if max_memory is None else max_memory
    if need > have:
        P = net.num_params
        raise HessianTooLargeError(
            f"the exact Hessian of {net!r} is a {P} x {P} matrix: {P * P * itemsize / GIB:.2f} GiB, "
            f"{need / GIB:.2f} GiB with work space, but only {have / GIB:.2f} GiB are available. "
            "Use Lanczos on Hessian-vector products (net.hvp) for the extreme eigenvalues, shrink the net "
            "(PCA or pooled inputs, narrower layers), or pass max_memory=<bytes> if you know better.")


def _curvature_wrt_preactivations(fwd, act_grads, A, part):
    r"""Per-example :math:`C_l = \partial^2\ell/\partial z_l^2` for each layer, ``(N, n_l, n_l)`` (None = zero).

    ``part`` picks Gauss-Newton (``G``: no :math:`\sigma''` terms), residual (``S``: :math:`C_L = 0`) or
    both; the recursion is linear in :math:`C_{l+1}`, so ``G + S`` follows it directly, one sandwich per layer.
    """
    xp = namespace(A)
    L = len(fwd.params)
    C = [None] * L
    C[-1] = None if part == "residual" else A
    for l in range(L - 2, -1, -1):
        W = fwd.params[l + 1][0]  # (n_l, n_{l+1})
        s1 = fwd.dact[l]  # (N, n_l)
        propagated = None
        if C[l + 1] is not None:  # diag(s1) W C W^T diag(s1), C symmetric
            N, b, _ = C[l + 1].shape
            Y = xp.reshape(xp.reshape(C[l + 1], (N * b, b)) @ W.T, (N, b, -1))  # C W^T: one GEMM
            # W C W^T = (C W^T)^T W^T because C = C^T: a second GEMM instead of N small ones.
            propagated = xp.reshape(xp.reshape(xp.permute_dims(Y, (0, 2, 1)), (-1, b)) @ W.T, (N, W.shape[0], -1))
            propagated *= s1[:, :, None]  # in place: the (N, n_l, n_l) product is ours, and big
            propagated *= s1[:, None, :]
        if part == "gauss_newton":
            C[l] = propagated
            continue
        diag = fwd.d2act[l] * act_grads[l]  # sigma'' * dl/da: (N, n_l)
        n = diag.shape[1]
        if propagated is None:
            C[l] = diag[:, :, None] * xp.eye(n, dtype=diag.dtype, device=device_of(diag))
        else:  # onto the diagonal alone: every (n + 1)-th entry of each example's flattened n x n block
            flat = xp.reshape(propagated, (propagated.shape[0], n * n), copy=False)
            flat[:, ::n + 1] += diag
            C[l] = propagated
    return C


def _layer_jacobians(fwd):
    r"""``J[l][m] = dz_l/dz_m: (N, n_l, n_m)`` for all m < l, by :math:`J_{l \leftarrow l-1} = W_l^T \mathrm{diag}(\sigma'_{l-1})`."""
    L = len(fwd.params)
    J = [dict() for _ in range(L)]
    for l in range(1, L):
        step = _layer_step(fwd.params, fwd, l)  # (N, n_l, n_{l-1})
        J[l][l - 1] = step
        for m in range(l - 2, -1, -1):
            J[l][m] = step @ J[l - 1][m]
    return J


def hessian(net, theta, X, y, part="full", max_memory=None):
    """Exact ``(P, P)`` Hessian of the mean loss (``part="full"``, L2 included), or its Gauss-Newton part
    (L2 included) or residual part; inputs already validated by ``MLP``."""
    xp = namespace(theta, X)
    P = net.num_params
    check_hessian_fits(net, X.shape[0], theta.dtype.itemsize if hasattr(theta.dtype, "itemsize") else 8, xp,
                       max_memory)
    # Every block of the full and Gauss-Newton matrices is written; the residual has all-zero blocks.
    allocate = xp.zeros if part == "residual" else xp.empty
    H = allocate((P, P), dtype=theta.dtype, device=device_of(theta))
    flops = max(hessian_gemm_flops(net, X.shape[0], part), default=0)
    workers = (threads_for(flops) or 1) if device_of(H) == "cpu" else 1
    with blas_threads(flops, threads=1 if workers > 1 else None):
        _fill_lower_triangle(H, _lower_triangle_tasks(net, theta, X, y, part, workers), workers)
    symmetrize_from_lower(H)
    if net.l2 and part != "residual":
        _add_to_diagonal(H, net.l2)
    return H


def hessian_frobenius_squared(net, theta, X, y, part="full"):
    r""":math:`\lVert H \rVert_F^2 = \sum_{ij} H_{ij}^2 = \sum_i \lambda_i^2`, exactly, in the work space of one
    chunk: the same chunks as ``hessian``, squared and summed instead of stored. An entry of the strict lower
    triangle stands for two; the square on the diagonal of a diagonal block holds both triangles already.
    The L2 term adds :math:`2 \lambda\, \mathrm{tr} H_{data} + P \lambda^2`."""
    xp = namespace(theta, X)
    total, trace = 0.0, 0.0
    for task in _lower_triangle_tasks(net, theta, X, y, part):
        chunk = task()
        if chunk is None:
            continue
        block = combine_block(chunk.first, chunk.cross)  # (rows, cols) of H
        if chunk.square is None:
            total += 2.0 * float(xp.sum(block * block))
            continue
        lower, square = block[:, :chunk.square], block[:, chunk.square:]
        total += 2.0 * float(xp.sum(lower * lower)) + float(xp.sum(square * square))
        trace += float(xp.sum(xp.linalg.diagonal(square)))
    if net.l2 and part != "residual":
        total += 2.0 * net.l2 * trace + net.num_params * net.l2 ** 2
    return total


@dataclass
class _Chunk:
    """Rows ``row0 ...`` and columns ``col0 ...`` of the lower triangle of H, as ``first`` (i, i', o, o') and
    ``cross`` (o, i', i, o') pieces (see ``kernels.scatter_block``); ``square`` is None off the diagonal
    blocks, else the column (within the chunk) where the chunk's own diagonal square starts."""

    row0: int
    col0: int
    first: object
    cross: object
    square: object


def _fill_lower_triangle(H, tasks, workers):
    """Scatter into ``H`` the chunk each task computes; with ``workers > 1``, that many tasks at once on threads
    (the GEMMs, NumPy's elementwise work and the scatter kernel all release the GIL, and chunks cover disjoint
    entries of H), while this thread prepares the next block's factors."""
    def fill(task):
        chunk = task()
        if chunk is not None:
            scatter_block(H, chunk.first, chunk.cross, chunk.row0, chunk.col0)

    if workers == 1:
        for task in tasks:
            fill(task)
        return
    with ThreadPoolExecutor(workers) as pool:
        running = set()
        for task in tasks:
            if len(running) >= workers:  # at most `workers` chunks' temporaries alive at once
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            running.add(pool.submit(fill, task))
        for future in running:
            future.result()


def _lower_triangle_tasks(net, theta, X, y, part, workers=1):
    """Yield the lower triangle of the Hessian (or one of its parts) as tasks, block (l, m <= l) after block:
    each a callable that computes one chunk (a ``_Chunk``, or None where it is zero); see the module docstring for
    the formulas. With ``workers`` chunks alive at once, each gets that share of the work space."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    N, L = X.shape[0], net.num_layers
    params = net.unflatten(theta)
    fwd = forward_pass(params, X, net.activation, order=2)
    Z = fwd.outputs
    deltas, act_grads = backward_pass(fwd, net.loss_fn.grad(Z, y))
    C = _curvature_wrt_preactivations(fwd, act_grads, net.loss_fn.hessian(Z, y), part)
    J = _layer_jacobians(fwd)
    first_order = part != "gauss_newton"
    inputs = [augmented(a) for a in fwd.inputs]  # (N, n_{l-1} + 1)
    budget = _workspace_budget(net.num_params) // workers
    for l in range(L):
        for m in range(l + 1):
            M = C[l] if m == l or C[l] is None else C[l] @ J[l][m]  # (N, n_l, n_m) or None
            if M is None and not (first_order and m < l):
                continue
            second = None
            if first_order and m == l - 1:  # da_{l-1}/dz_{l-1} = diag(sigma'_{l-1}): keep the diagonal only
                second = (deltas[l], fwd.dact[l - 1], True)
            elif first_order and m < l:
                second = (deltas[l], fwd.dact[l - 1][:, :, None] * J[l - 1][m], False)  # da_{l-1}/dz_m
            yield from _block_tasks(net.layers[l], net.layers[m], inputs[l], inputs[m], M, second, N, budget)


def hessian_diagonal(net, theta, X, y, chunk_elements=1 << 23):
    r"""``(P,)`` exact diagonal of the Hessian without any ``P x P`` or ``N x n x n`` array.

    A diagonal entry lies in a diagonal block, where the first-order cross-layer term vanishes:
    :math:`H_{(i,o),(i,o)} = \frac1N \sum_n \tilde a_{l-1,n,i}^2\, [C_{l,n}]_{oo} + \lambda`, one GEMM per layer
    once the diagonals of :math:`C_l = G_l + S_l` are known. With :math:`A = R R^T` (``loss.hessian_factor``),

    .. math::
        \mathrm{diag}\, G_l = \sum_k \big(J_{L \leftarrow l}^T R\big)_{:,k}^{\odot 2}, \qquad
        \mathrm{diag}\, S_l = \sum_{k \ge l} \sum_j \Lambda_{k,j}\, \big(J_{k \leftarrow l}\big)_{j,:}^{\odot 2},
        \quad \Lambda_k = \sigma''_k \odot g_k,

    the first by backpropagating the K columns of R (K times a backward pass), the second from
    :math:`\Lambda_l` itself, :math:`\sigma'^2_l \odot (\Lambda_{l+1} (W_{l+1}^{\odot 2})^T)` for the next layer, and
    explicit per-example Jacobians only for layers two or more apart. Examples go in chunks of at most
    ``chunk_elements`` numbers per per-example array.
    """
    xp = namespace(theta, X)
    N, K = X.shape[0], net.sizes[-1]
    widest = max(net.sizes[1:])
    chains = net.num_layers >= 4  # hidden layers two apart exist: (rows, n, n) Jacobians are formed
    rows = max(1, chunk_elements // (widest * max(K, widest if chains else 1)))
    params = net.unflatten(theta)
    total = None
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)  # the array API allows no slice past the end
        part = _diagonal_sum(net, params, X[n0:n1, ...], y[n0:n1, ...], xp)
        total = part if total is None else total + part
    return total / N + net.l2


def _diagonal_sum(net, params, X, y, xp):
    """Sum over the examples of ``X`` of each per-example Hessian's diagonal, ``(P,)`` (see above)."""
    fwd, diag_C = preactivation_curvature_diagonals(net, params, X, y)
    pieces = []
    for a, c in zip(fwd.inputs, diag_C):
        a_sq = augmented(a) ** 2  # (N, n_{l-1} + 1)
        pieces.append(xp.reshape(a_sq.T @ c, (-1,)))  # (n_{l-1} + 1) x n_l, row-major like theta
    return xp.concat(pieces)


def preactivation_curvature_diagonals(net, params, X, y):
    r"""``(fwd, [diag C_l: (N, n_l), ...])``: per example the diagonal of :math:`C_l = \partial^2 \ell_n / \partial
    z_l^2` for every layer (see ``hessian_diagonal``), with the forward pass it came from."""
    xp = namespace(X)
    L = len(params)
    fwd = forward_pass(params, X, net.activation, order=2)
    Z = fwd.outputs
    _, act_grads = backward_pass(fwd, net.loss_fn.grad(Z, y))
    R = net.loss_fn.hessian_factor(Z, y)  # (N, K, K)
    columns, _ = backward_pass(fwd, xp.permute_dims(R, (2, 0, 1)))  # columns[l]: (K, N, n_l) = (J^T R)^T
    diag_C = [xp.sum(F * F, axis=0) for F in columns]  # Gauss-Newton part, (N, n_l)
    Lam = [fwd.d2act[k] * act_grads[k] for k in range(L - 1)]  # hidden layers, (N, n_k)
    for l in range(L - 1):
        diag_C[l] = diag_C[l] + Lam[l]
        if l + 1 < L - 1:
            W = params[l + 1][0]  # (n_l, n_{l+1}): J_{l+1<-l}[j, o] = W[o, j] sigma'_l[o]
            diag_C[l] = diag_C[l] + fwd.dact[l] ** 2 * (Lam[l + 1] @ (W * W).T)
        J = None
        for k in range(l + 2, L - 1):  # layers two or more apart: explicit per-example Jacobians
            J = _layer_step(params, fwd, l + 1) if J is None else J
            J = _layer_step(params, fwd, k) @ J  # (N, n_k, n_l)
            diag_C[l] = diag_C[l] + xp.sum(Lam[k][:, :, None] * J * J, axis=1)
    return fwd, diag_C


def _layer_step(params, fwd, k):
    """``J_{k <- k-1} = W_k^T diag(sigma'_{k-1})``: (N, n_k, n_{k-1}), per example."""
    return params[k][0].T[None, :, :] * fwd.dact[k - 1][:, None, :]


def _add_to_diagonal(H, value, chunk=1024):
    """``H += value * I`` in place, one ``(chunk, chunk)`` diagonal tile at a time (no P x P temporary)."""
    xp = namespace(H)
    P = H.shape[0]
    for r0 in range(0, P, chunk):
        r1 = min(P, r0 + chunk)
        H[r0:r1, r0:r1] = H[r0:r1, r0:r1] + value * xp.eye(r1 - r0, dtype=H.dtype, device=device_of(H))


def _block_tasks(layer_l, layer_m, a_l, a_m, M, second, N, budget):
    r"""Yield block (l, m) of the Hessian's lower triangle as one task per chunk of rows (see ``_chunk``).

    a_l: (N, I) with I = fan_in_l + 1;  a_m: (N, I');  M: (N, O, O') or None;
    second: None, or ``(delta_l: (N, O), D, diagonal)`` for the first-order cross-layer term with
    ``D = da_{l-1}/dz_m``: (N, I - 1, O'), or its diagonal (N, I - 1) when m = l - 1. The diagonal case needs
    one GEMM over i alone, a factor O' fewer flops than the general (i, o') one.
    """
    xp = namespace(a_l)
    I, O = a_l.shape[1], layer_l.fan_out
    Ip, Op = a_m.shape[1], layer_m.fan_out
    a_l = a_l / N  # the mean over examples, folded into the small (N, I) factor rather than copying M
    f = _BlockFactors(a_m)
    if M is not None:  # the second-order GEMM's left factor is built transposed, (i i', N) row-major
        f.B1 = xp.reshape(M, (N, O * Op))
        f.a_lT, f.a_mT = _rows_contiguous_transpose(a_l), _rows_contiguous_transpose(a_m)
    if second is not None:
        delta, f.D, f.diagonal = second
        f.delta = delta / N
        if not f.diagonal:
            f.C2 = xp.reshape(f.delta[:, :, None] * a_m[:, None, :], (N, O * Ip))  # (N, o i')
    for i0, i1 in _row_chunks(I, Ip, O, Op, N, budget):
        yield partial(_chunk, layer_l, layer_m, f, i0, i1, second is not None)


@dataclass
class _BlockFactors:
    """What every chunk of block (l, m) reads: ``a_m: (N, I')``; for the second-order piece ``B1: (N, O O')`` and
    the row-major transposes ``a_lT: (I, N)`` (already divided by N), ``a_mT: (I', N)``; for the first-order piece
    ``delta: (N, O)`` / N, ``D`` and whether it is ``diagonal``, and ``C2: (N, O I')`` in the general case."""

    a_m: object
    B1: object = None
    a_lT: object = None
    a_mT: object = None
    delta: object = None
    D: object = None
    diagonal: bool = False
    C2: object = None


def _chunk(layer_l, layer_m, f, i0, i1, first_order):
    """Rows ``i0:i1`` (of i) of block (l, m): the second-order piece ``(i, i', o, o')`` and the first-order cross
    piece ``(o, i', i, o')`` from the factors ``f`` that ``_block_tasks`` prepared; None where both are absent."""
    xp = namespace(f.a_m)
    I, O = layer_l.fan_in + 1, layer_l.fan_out
    Ip, Op = layer_m.fan_in + 1, layer_m.fan_out
    ic = i1 - i0
    # Only the lower triangle is needed: in a diagonal block, rows i0:i1 stop at column i' < i1.
    diagonal_block = layer_l is layer_m
    c1 = i1 if diagonal_block else Ip
    first = None
    if f.B1 is not None:
        C1T = xp.reshape(f.a_lT[i0:i1, None, :] * f.a_mT[None, :c1, :], (ic * c1, -1))  # (i i', N)
        first = xp.reshape(C1T @ f.B1, (ic, c1, O, Op))  # (i, i', o, o')
    cross = None
    j1 = min(i1, I - 1)  # the bias row (index I - 1) has no first-order term
    if first_order and i0 < j1:
        jc = j1 - i0
        delta, D, N = f.delta, f.D, f.a_m.shape[0]
        if f.diagonal:
            F = xp.reshape(delta[:, :, None] * D[:, None, i0:j1], (N, O * jc))  # (N, o i)
            E = xp.permute_dims(xp.reshape(F.T @ f.a_m, (O, jc, Ip)), (0, 2, 1))  # (o, i', i)
            on_diagonal = xp.eye(jc, Op, k=i0, dtype=E.dtype, device=device_of(E))  # [i0 + i == o']
            cross = E[:, :, :, None] * on_diagonal  # (o, i', i, o'), nonzero only at o' = i0 + i
        else:
            D_rows = xp.reshape(D[:, i0:j1, :], (N, jc * Op))  # (N, i o')
            cross = xp.reshape(f.C2.T @ D_rows, (O, Ip, jc, Op))  # (o, i', i, o')
    if first is None and cross is None:  # a residual chunk of bias rows alone is zero
        return None
    return _Chunk(layer_l.start + i0 * O, layer_m.start, first, cross, i0 * Op if diagonal_block else None)


def _rows_contiguous_transpose(a):
    """``a.T`` as a row-major ``(I, N)`` copy of ``a: (N, I)``. A GEMM whose left factor is row-major runs 5-30%
    faster than on the transposed view when the right factor is narrow (O O' = 100-1024 columns, OpenBLAS), and
    building that factor reads contiguous rows of N."""
    xp = namespace(a)
    return xp.reshape(xp.reshape(xp.permute_dims(a, (1, 0)), (-1,)), (a.shape[1], a.shape[0]))


def _row_chunks(I, Ip, O, Op, N, budget):
    """Row ranges ``(i0, i1)`` of block (l, m) whose temporaries (N x i i' and i i' x o o') fit ``budget``."""
    rows = max(1, min(I, budget // max(N * Ip, Ip * O * Op)))
    return [(i0, min(I, i0 + rows)) for i0 in range(0, I, rows)]


def hessian_flops(net, N, part="full"):
    """Floating-point operations of the GEMMs that ``hessian`` runs for ``N`` examples (2 per multiply-add).

    Per row chunk ``i0:i1`` of block (l, m): the second-order GEMM ``2 N (i1 - i0) c O O'`` with ``c = i1``
    columns in a diagonal block (lower triangle) and ``c = I'`` otherwise, and the cross term
    ``2 N O I' (i1 - i0)`` (adjacent layers, diagonal) or ``2 N O I' (i1 - i0) O'`` (general). Summed, about
    ``N P^2``; the per-example preparation (O(N n^3) per layer pair) is left out.
    """
    return sum(hessian_gemm_flops(net, N, part))


def hessian_gemm_flops(net, N, part="full"):
    """The flops of each GEMM counted by ``hessian_flops``, one entry per call (the thread policy needs the
    largest)."""
    L, budget, flops = net.num_layers, _workspace_budget(net.num_params), []
    for l in range(L):
        for m in range(l + 1):
            I, O = net.layers[l].fan_in + 1, net.layers[l].fan_out
            Ip, Op = net.layers[m].fan_in + 1, net.layers[m].fan_out
            has_first = not (part == "residual" and l == L - 1)
            has_cross = part != "gauss_newton" and m < l
            for i0, i1 in _row_chunks(I, Ip, O, Op, N, budget):
                c = i1 if l == m else Ip
                jc = max(0, min(i1, I - 1) - i0)
                flops += [2 * N * (i1 - i0) * c * O * Op] if has_first else []
                flops += [2 * N * O * Ip * jc * (1 if m == l - 1 else Op)] if has_cross and jc else []
    return flops


def hessian_from_hvps(net, theta, X, y, columns_per_call=64):
    """The Hessian assembled column block by column block from ``net.hvp`` (the R-operator):
    an independent second route to the same matrix, O(P / columns_per_call) HVP calls."""
    xp = namespace(theta)
    P = net.num_params
    H = xp.empty((P, P), dtype=theta.dtype, device=device_of(theta))
    for j0 in range(0, P, columns_per_call):
        k = min(columns_per_call, P - j0)
        E = xp.eye(P, k, k=-j0, dtype=theta.dtype, device=device_of(theta))  # columns j0..j0+k of I
        H[:, j0:j0 + k] = net.hvp(theta, X, y, E)
    return H
