r"""Numba kernels, each beside the array-API twin that the tests compare it against.

A kernel earns its place only where ``benchmarks/`` shows it beating the plain array expression on the CPU;
everything else in minisgd is NumPy/CuPy expressions. The dispatchers here use the kernel for NumPy
inputs and the twin for every other backend (CuPy, array_api_strict).

``scatter_block``: the last step of the exact Hessian. A GEMM over examples returns a block of the
Hessian with its axes in contraction order, ``first[i, i', o, o']`` (second-order term) and
``cross[o, i', i, o']`` (first-order cross-layer term); the Hessian wants
``H[(i, o), (i', o')] = first[i, i', o, o'] + cross[o, i', i, o']`` and, off the diagonal, the same
block transposed at ``H[(i', o'), (i, o)]``. The twin does this as permute, add, copy and transposed copy
(four passes over the block, the last one strided); the kernel does it in one pass, tile by tile.
"""
import numpy as np

from .backend import namespace


def scatter_block_reference(H, first, cross, row0, col0, mirror):
    """Array-API twin of ``scatter_block``.

    H: (P, P), written in place; first: (ic, I', O, O') or None; cross: (O, I', jc, O') or None, jc <= ic;
    rows ``row0 : row0 + ic*O`` and columns ``col0 : col0 + I'*O'`` of ``H`` receive the block, and the
    transposed block goes to ``H[cols, rows]`` when ``mirror``.
    """
    xp = namespace(H)
    block = None if first is None else xp.permute_dims(first, (0, 2, 1, 3))  # (i, o, i', o')
    if cross is not None:
        moved = xp.permute_dims(cross, (2, 0, 1, 3))  # (o, i', i, o') -> (i, o, i', o')
        jc = moved.shape[0]
        block = moved if block is None else xp.concat([block[:jc, ...] + moved, block[jc:, ...]], axis=0)
    ic, O, Ip, Op = block.shape
    block = xp.reshape(block, (ic * O, Ip * Op))
    H[row0:row0 + ic * O, col0:col0 + Ip * Op] = block
    if mirror:
        H[col0:col0 + Ip * Op, row0:row0 + ic * O] = block.T


_numba_kernel = None


def _compile_numba_kernel():
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(H, first, cross, use_first, jc, row0, col0, mirror):
        if use_first:
            ic, Ip, O, Op = first.shape
        else:
            ic, Ip, O, Op = jc, cross.shape[1], cross.shape[0], cross.shape[3]
        for i in numba.prange(ic):
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
                if mirror:  # the transposed tile: O' rows of O contiguous entries, read back from cache
                    for op in range(Op):
                        for o in range(O):
                            H[c + op, r + o] = H[r + o, c + op]

    return kernel


def scatter_block_numba(H, first, cross, row0, col0, mirror):
    """Numba version of ``scatter_block_reference`` for NumPy arrays (C-contiguous ``first`` and ``cross``)."""
    global _numba_kernel
    if _numba_kernel is None:
        _numba_kernel = _compile_numba_kernel()
    dummy = np.zeros((1, 1, 1, 1), dtype=H.dtype)
    jc = 0 if cross is None else cross.shape[2]
    _numba_kernel(H, dummy if first is None else np.ascontiguousarray(first),
                  dummy if cross is None else np.ascontiguousarray(cross),
                  first is not None, jc, row0, col0, mirror)


def scatter_block(H, first, cross, row0, col0, mirror):
    """Scatter one Hessian block (see the module docstring): the Numba kernel on NumPy, the twin elsewhere."""
    if type(H) is np.ndarray and H.dtype in (np.float32, np.float64):
        scatter_block_numba(H, first, cross, row0, col0, mirror)
    else:
        scatter_block_reference(H, first, cross, row0, col0, mirror)
