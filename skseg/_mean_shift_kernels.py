"""Fused CPU kernels for one Gaussian mean-shift step (numba).

For every query ``q`` they accumulate, over the source leaves listed for the query's leaf,

    sum_j w_j exp(-|s_j - q|^2)  and  sum_j w_j exp(-|s_j - q|^2) (s_j - q)

in one pass over the sources: the distance, the exponential and the two sums stay in
registers, so no block of pair weights is ever written to memory (the blocked matrix
products of :func:`skseg._mean_shift_backend.weighted_means_torch` write and re-read every
pair weight, which makes them memory-bound on CPUs). Differences ``s_j - q`` are formed
directly, which is accurate at any bandwidth, and the result is ``q`` plus the weighted
mean difference. The sources a query leaf meets are first copied into one contiguous
buffer, so that every query streams them in a single vectorised loop.

The float32 exponential is a vectorisable polynomial (relative error below ``3e-7`` on
``[-87, 0]``); float64 uses the C library's ``exp``. Kernels exist for up to 3 and up to
5 features (colour, colour and position); fewer features are padded with zeros.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

#: most features a fused kernel handles; more fall back to the torch kernel
MAX_FEATURES = 5

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693145751953125)
_LN2_LO = _F(1.428606765330187e-06)
_MIN_EXPONENT = _F(-87.0)
_HALF, _ONE = _F(0.5), _F(1.0)
_C2, _C3, _C4, _C5, _C6 = (_F(1 / 2), _F(1 / 6), _F(1 / 24), _F(1 / 120), _F(1 / 720))


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32 (``2**n`` from its exponent field)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always", fastmath=True)
def _exp_float32(x):
    # exp(x) = 2**n * exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, degree-6 Taylor for exp(r)
    x = max(x, _MIN_EXPONENT)
    n = math.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
    return p * _int32_bits_as_float32((np.int32(n) + np.int32(127)) << np.int32(23))


def _exp(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.exp(x)


@overload(_exp, inline="always", jit_options={"fastmath": True})
def _exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _exp_float32(x)
    return lambda x: math.exp(x)


@njit(fastmath=True, cache=True)
def exp_kernel(x, out):
    """``out[i] = exp(x[i])`` with the kernels' exponential (for tests)."""
    for i in range(len(x)):
        out[i] = _exp(x[i])


@njit(inline="always")
def _gather(sources, log_w, s_starts, ptr, leaves, leaf):
    """The sources of ``leaf``'s list, copied into one contiguous feature-major buffer."""
    width = sources.shape[0]
    m = 0
    for p in range(ptr[leaf], ptr[leaf + 1]):
        m += s_starts[leaves[p] + 1] - s_starts[leaves[p]]
    buf = np.empty((width + 1, m), dtype=sources.dtype)
    at = 0
    for p in range(ptr[leaf], ptr[leaf + 1]):
        lo, hi = s_starts[leaves[p]], s_starts[leaves[p] + 1]
        for k in range(width):
            buf[k, at : at + hi - lo] = sources[k, lo:hi]
        buf[width, at : at + hi - lo] = log_w[lo:hi]
        at += hi - lo
    return buf


@njit(parallel=True, fastmath=True, cache=True)
def _means_3(queries, q_starts, sources, log_w, s_starts, ptr, leaves, out):
    for leaf in prange(len(q_starts) - 1):
        buf = _gather(sources, log_w, s_starts, ptr, leaves, leaf)
        m = buf.shape[1]
        for i in range(q_starts[leaf], q_starts[leaf + 1]):
            q0, q1, q2 = queries[0, i], queries[1, i], queries[2, i]
            sw = s0 = s1 = s2 = q0 - q0
            for j in range(m):
                a, b, c = buf[0, j] - q0, buf[1, j] - q1, buf[2, j] - q2
                w = _exp(buf[3, j] - (a * a + b * b + c * c))
                sw += w
                s0 += w * a
                s1 += w * b
                s2 += w * c
            out[0, i], out[1, i], out[2, i] = q0 + s0 / sw, q1 + s1 / sw, q2 + s2 / sw


@njit(parallel=True, fastmath=True, cache=True)
def _means_5(queries, q_starts, sources, log_w, s_starts, ptr, leaves, out):
    for leaf in prange(len(q_starts) - 1):
        buf = _gather(sources, log_w, s_starts, ptr, leaves, leaf)
        m = buf.shape[1]
        for i in range(q_starts[leaf], q_starts[leaf + 1]):
            q0, q1, q2 = queries[0, i], queries[1, i], queries[2, i]
            q3, q4 = queries[3, i], queries[4, i]
            sw = s0 = s1 = s2 = s3 = s4 = q0 - q0
            for j in range(m):
                a, b, c = buf[0, j] - q0, buf[1, j] - q1, buf[2, j] - q2
                e, f = buf[3, j] - q3, buf[4, j] - q4
                w = _exp(buf[5, j] - (a * a + b * b + c * c + e * e + f * f))
                sw += w
                s0 += w * a
                s1 += w * b
                s2 += w * c
                s3 += w * e
                s4 += w * f
            out[0, i], out[1, i], out[2, i] = q0 + s0 / sw, q1 + s1 / sw, q2 + s2 / sw
            out[3, i], out[4, i] = q3 + s3 / sw, q4 + s4 / sw


def leaf_list_means(queries, q_starts, sources, log_w, s_starts, ptr, leaves):
    """Gaussian-weighted means seen from every query, over its leaf's listed source leaves.

    Parameters
    ----------
    queries : ndarray of shape (n, d), float32 or float64
        Scaled query positions, sorted so that query leaf ``i`` is
        ``queries[q_starts[i]:q_starts[i + 1]]``.
    q_starts : ndarray of shape (n_query_leaves + 1,)
    sources : ndarray of shape (m, d), same dtype
        Scaled source positions, sorted by source leaf.
    log_w : ndarray of shape (m,)
        Logarithm of each source's weight.
    s_starts : ndarray of shape (n_source_leaves + 1,)
    ptr, leaves : ndarray
        Compressed lists: query leaf ``i`` meets the source leaves
        ``leaves[ptr[i]:ptr[i + 1]]``.

    Returns
    -------
    ndarray of shape (n, d)
        ``q + sum_j w_j k_j (s_j - q) / sum_j w_j k_j`` with ``k_j = exp(-|s_j - q|^2)``.
    """
    n, d = queries.shape
    if d > MAX_FEATURES:
        raise ValueError(f"the fused kernels take at most {MAX_FEATURES} features, got {d}")
    width = 3 if d <= 3 else 5
    kernel = _means_3 if width == 3 else _means_5

    def padded(points):
        # feature-major layout: every coordinate is one contiguous row the kernel streams
        out = np.zeros((width, len(points)), dtype=points.dtype)
        out[:d] = points.T
        return out

    out = np.empty((width, n), dtype=queries.dtype)
    as_index = np.int64
    kernel(
        padded(queries),
        q_starts.astype(as_index),
        padded(sources),
        log_w.astype(queries.dtype),
        s_starts.astype(as_index),
        ptr.astype(as_index),
        leaves.astype(as_index),
        out,
    )
    return out[:d].T
