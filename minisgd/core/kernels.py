r"""Numba kernels, each beside the array-API twin that the tests compare it against.

A kernel earns its place only where ``benchmarks/bench_kernels.py`` shows it beating the plain array
expression on the CPU; everything else in minisgd is NumPy/CuPy expressions. The dispatchers use the kernel
for NumPy inputs and the twin for every other backend (CuPy, array_api_strict).

``bias_activation``: the forward pass adds the bias to the GEMM output and applies the activation and its
derivative: several elementwise passes in NumPy, one in the kernel (ReLU only; see ``FUSED_ACTIVATIONS``).

The exact Hessian ends in two memory-bound steps, and these are the kernels:

``scatter_block``: a GEMM over examples returns a block of the Hessian with its axes in contraction order,
``first[i, i', o, o']`` (second-order term) and ``cross[o, i', i, o']`` (first-order cross-layer term); the
Hessian wants ``H[(i, o), (i', o')] = first[i, i', o, o'] + cross[o, i', i, o']``. The twin permutes, adds
and copies (three passes over the block); the kernel writes each ``(O, O')`` tile once.

``symmetrize_from_lower``: the blocks fill the lower triangle; the upper one is its transpose. The twin
copies one slab of columns at a time; the kernel transposes cache-sized tiles in parallel.
"""
import numpy as np

from ..backend import namespace

TILE = 64  # symmetrize tile: two 64 x 64 float64 tiles (64 KiB) stay in L2


def combine_block(first, cross):
    """``(ic*O, I'*O')``: the Hessian entries ``first[i, i', o, o'] + cross[o, i', i, o']`` at rows (i, o) and
    columns (i', o'); ``first``: (ic, I', O, O') or None; ``cross``: (O, I', jc, O') or None, jc <= ic."""
    xp = namespace(first if first is not None else cross)
    block = None if first is None else xp.permute_dims(first, (0, 2, 1, 3))  # (i, o, i', o')
    if cross is not None:
        moved = xp.permute_dims(cross, (2, 0, 1, 3))  # (o, i', i, o') -> (i, o, i', o')
        jc = moved.shape[0]
        block = moved if block is None else xp.concat([block[:jc, ...] + moved, block[jc:, ...]], axis=0)
    ic, O, Ip, Op = block.shape
    return xp.reshape(block, (ic * O, Ip * Op))


def scatter_block_reference(H, first, cross, row0, col0):
    """Array-API twin of ``scatter_block``: ``H[row0 : row0 + ic*O, col0 : col0 + I'*O'] = combine_block(...)``."""
    block = combine_block(first, cross)
    H[row0:row0 + block.shape[0], col0:col0 + block.shape[1]] = block


def symmetrize_from_lower_reference(H, slab=256):
    """Array-API twin of ``symmetrize_from_lower``: ``H[i, j] = H[j, i]`` for ``j > i``, in place,
    one slab of ``slab`` rows at a time (O(slab P) work space)."""
    xp = namespace(H)
    P = H.shape[0]
    for r0 in range(0, P, slab):
        r1 = min(P, r0 + slab)
        tile = H[r0:r1, r0:r1]
        H[r0:r1, r0:r1] = xp.tril(tile) + xp.tril(tile, k=-1).T
        if r1 < P:
            H[r0:r1, r1:] = H[r1:, r0:r1].T


# tanh is not here: NumPy's tanh is vectorized (SIMD), Numba's calls libm once per element, and the fused tanh
# kernel measured 14x slower than the four NumPy passes (benchmarks/bench_kernels.py).
FUSED_ACTIVATIONS = ("relu",)


def bias_activation_reference(z, b, activation):
    """Array-API twin of ``bias_activation``: ``(z + b, f(z + b), f'(z + b))`` for z: (N, n), b: (n,)."""
    z = z + b
    f, df = activation.derivatives(z, 1)
    return z, f, df


_kernels = {}


def _compiled():
    if _kernels:
        return _kernels
    import numba

    @numba.njit(cache=True, nogil=True)
    def scatter(H, first, cross, use_first, jc, row0, col0):
        if use_first:
            ic, Ip, O, Op = first.shape
        else:
            ic, Ip, O, Op = jc, cross.shape[1], cross.shape[0], cross.shape[3]
        for i in range(ic):
            r = row0 + i * O
            for ip in range(Ip):
                c = col0 + ip * Op
                # One (O, O') tile at a time, branch-free inner loops so they vectorize.
                if use_first:
                    for o in range(O):
                        for op in range(Op):
                            H[r + o, c + op] = first[i, ip, o, op]
                    if i < jc:
                        for o in range(O):
                            for op in range(Op):
                                H[r + o, c + op] += cross[o, ip, i, op]
                else:
                    for o in range(O):
                        for op in range(Op):
                            H[r + o, c + op] = cross[o, ip, i, op]

    @numba.njit(cache=True, nogil=True)
    def symmetrize(H, tile):
        P = H.shape[0]
        n_tiles = (P + tile - 1) // tile
        for bi in range(n_tiles):  # tile row bi of the upper triangle, from tile column bi below
            r0 = bi * tile
            r1 = min(P, r0 + tile)
            for c0 in range(r0, P, tile):
                c1 = min(P, c0 + tile)
                for i in range(r0, r1):
                    for j in range(max(c0, i + 1), c1):
                        H[i, j] = H[j, i]

    @numba.njit(cache=True, nogil=True)
    def bias_relu(z, b, f, df):
        N, n = z.shape
        for i in range(N):
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v
                positive = v > 0.0
                f[i, j] = v if positive else 0.0
                df[i, j] = 1.0 if positive else 0.0

    _kernels.update(scatter=scatter, symmetrize=symmetrize, relu=bias_relu)
    return _kernels


def scatter_block_numba(H, first, cross, row0, col0):
    """Numba version of ``scatter_block_reference`` for NumPy arrays."""
    dummy = np.zeros((1, 1, 1, 1), dtype=H.dtype)
    jc = 0 if cross is None else cross.shape[2]
    _compiled()["scatter"](H, dummy if first is None else np.ascontiguousarray(first),
                           dummy if cross is None else np.ascontiguousarray(cross),
                           first is not None, jc, row0, col0)


def symmetrize_from_lower_numba(H):
    """Numba version of ``symmetrize_from_lower_reference`` for NumPy arrays."""
    _compiled()["symmetrize"](H, TILE)


def _use_numba(H):
    return type(H) is np.ndarray and H.dtype in (np.float32, np.float64) and H.flags.c_contiguous


def scatter_block(H, first, cross, row0, col0):
    """Write one Hessian block (see the module docstring): the Numba kernel on NumPy, the twin elsewhere."""
    (scatter_block_numba if _use_numba(H) else scatter_block_reference)(H, first, cross, row0, col0)


def symmetrize_from_lower(H):
    """``H[i, j] = H[j, i]`` for ``j > i``, in place: the Numba kernel on NumPy, the twin elsewhere."""
    (symmetrize_from_lower_numba if _use_numba(H) else symmetrize_from_lower_reference)(H)


def bias_activation_numba(z, b, activation):
    """Numba version of ``bias_activation_reference`` for C-contiguous NumPy ``z`` (overwritten with z + b)."""
    f, df = np.empty_like(z), np.empty_like(z)
    _compiled()[activation.name](z, b.astype(z.dtype, copy=False), f, df)
    return z, f, df


def bias_activation(z, b, activation):
    """``(z + b, f(z + b), f'(z + b))``: the fused kernel for ``FUSED_ACTIVATIONS`` on NumPy floats, the twin's
    formulas elsewhere; ``z``, a fresh GEMM output, is overwritten with ``z + b`` either way."""
    if activation.name in FUSED_ACTIVATIONS and _use_numba(z) and z.ndim == 2:
        return bias_activation_numba(z, b, activation)
    z += b  # in place, as the kernel does: one allocation and one pass fewer than the twin's z + b
    f, df = activation.derivatives(z, 1)
    return z, f, df
