"""Gaussian sums of a mean-shift step on a regular grid, for dense clouds of colours.

A step needs, for every query ``y``, ``S = sum_j w_j K(x_j - y)`` and ``M = sum_j w_j
K(x_j - y) (x_j - y)`` over the sources ``x_j``, with ``K(r) = exp(-|r|**2 / 2)`` in
bandwidths. The Gaussian is the convolution of three Gaussians, ``G_a * G_c * G_a`` with
``2 a**2 + c**2 = 1``, and each of them is sampled on a grid of side ``s``:

1. **spread**: every source adds ``w_j G_a(g - x_j)`` to the ``M**3`` grid nodes ``g``
   around it (``M`` per axis), together with ``w_j G_a(g - x_j) (x_j - g)``;
2. **convolve**: the grid is convolved with ``G_c`` along each axis in turn
   (:func:`scipy.ndimage.correlate1d`); the moments also take ``G_c(t) t`` of the weights,
   for the part ``g' - g`` of ``x_j - y = (x_j - g') + (g' - g) + (g - y)``;
3. **gather**: every query sums ``G_a(g - y)`` times the convolved grid over the nodes
   around it, and the moments also take ``(g - y)`` times the convolved weights.

Every offset in the moments is a few bandwidths at most, so the mean ``M / S`` keeps its
precision wherever the cloud lies. The work per point is fixed (``2 * 4 * M**3``
multiply-adds) however many sources lie within reach, where the direct sums of
:mod:`skseg.meanshift._kernels` grow with the local density; on top comes the
convolution of the cloud's bounding box. :func:`grid_cost` and
:func:`skseg.meanshift._backend.weighted_means` choose between them.

The approximation is that of the sampling: the node Gaussians are cut off at ``M / 2``
nodes from the point and the grid aliases frequencies above ``pi / s``. With the
constants below the relative error of each pair's weight stays below about ``1e-6`` of a
coincident pair's (:func:`skseg.meanshift._backend.prune_tolerance`'s scale); in a step
on the distinct colours of ``stereo_motorcycle`` the largest move it caused was
``1.4e-5`` bandwidths and 99.9 % of the points moved by less than ``5e-6``.
"""

import math

import numpy as np
from numba import njit
from scipy import ndimage

from ._kernels import _next_item, in_threads

#: grid side in bandwidths
SIDE = 0.5
#: standard deviation, in bandwidths, of the Gaussian that spreads and gathers
SPREAD = 0.45
#: grid nodes per axis that one point spreads to or gathers from
NODES = 10
#: the convolution's Gaussian is cut off at this many standard deviations
CONV_CUTOFF = 5.5
#: features the grid handles
N_FEATURES = 3
#: most grid nodes (about 80 x 160 x 160, the CIELAB gamut at bandwidth 2.5): larger
#: boxes take the direct sums. Each spread chunk holds a grid of 16 bytes a node.
MAX_NODES = 2**22
#: the sources are spread in this many chunks, each onto a grid of its own, whatever the
#: number of threads: the sums, and so the result, do not depend on it
SPREAD_CHUNKS = 2
#: queries are gathered in this many chunks, handed out to the threads one at a time
GATHER_CHUNKS = 64
#: seconds per multiply-add of :func:`grid_cost` and per listed pair of the direct
#: kernels, measured in the steps of ``stereo_motorcycle`` (152,000 colours) on 2 cores
SECONDS_PER_GRID_OP = 0.34e-9
SECONDS_PER_PAIR = 0.22e-9


def _conv_kernels():
    """The convolution's Gaussian ``G_c`` and ``G_c(t) t`` on the nodes (float64)."""
    sigma = math.sqrt(1.0 - 2.0 * SPREAD**2)
    half = math.ceil(CONV_CUTOFF * sigma / SIDE)
    t = np.arange(-half, half + 1) * SIDE
    gauss = np.exp(-(t**2) / (2.0 * sigma**2))
    return gauss, gauss * t


def grid_shape(lo, hi):
    """Origin (bandwidths) and node counts of the grid that covers the box ``lo..hi``
    with room for every point's nodes and the convolution around them."""
    pad = NODES // 2 + 1
    origin = np.floor(np.asarray(lo, dtype=np.float64) / SIDE) * SIDE - pad * SIDE
    shape = np.ceil((np.asarray(hi, dtype=np.float64) - origin) / SIDE).astype(np.int64) + pad
    return origin, shape


def grid_cost(n_queries, n_sources, lo, hi):
    """Multiply-adds of one grid step: the points' nodes and the convolution's taps.

    ``None`` when the grid would exceed ``MAX_NODES`` nodes.
    """
    _, shape = grid_shape(lo, hi)
    nodes = float(np.prod(shape.astype(np.float64)))
    if nodes > MAX_NODES:
        return None
    taps = len(_conv_kernels()[0])
    return 4.0 * NODES**3 * (n_queries + n_sources) + 15.0 * taps * nodes


@njit(inline="always")
def _node_weights(p, origin, inv_two_var, weights, offsets):
    """First node (index) of ``p``'s ``NODES`` along one axis, with the Gaussian weight
    ``G_a(g - p)`` and the offset ``g - p`` of each."""
    first = int(math.floor((p - origin) / SIDE)) - NODES // 2 + 1
    for k in range(NODES):
        d = origin + (first + k) * SIDE - p
        offsets[k] = d
        weights[k] = math.exp(-d * d * inv_two_var)
    return first


@njit(nogil=True, cache=True, fastmath={"contract"})
def _spread(counter, points, weights, origin, grids, n_chunks):
    """Chunk ``c`` of the points adds its weights and moments to ``grids[c]``."""
    inv_two_var = 1.0 / (2.0 * SPREAD**2)
    n = points.shape[0]
    per = -(-n // n_chunks)
    a = np.empty((3, NODES))
    off = np.empty((3, NODES))
    az = np.empty(NODES, dtype=np.float32)
    dz = np.empty(NODES, dtype=np.float32)
    while True:
        c = _next_item(counter)
        if c >= n_chunks:
            return
        grid = grids[c]
        for p in range(c * per, min(n, (c + 1) * per)):
            i0 = _node_weights(points[p, 0], origin[0], inv_two_var, a[0], off[0])
            j0 = _node_weights(points[p, 1], origin[1], inv_two_var, a[1], off[1])
            k0 = _node_weights(points[p, 2], origin[2], inv_two_var, a[2], off[2])
            w = weights[p]
            for k in range(NODES):
                az[k] = a[2, k]
                dz[k] = -off[2, k]
            for i in range(NODES):
                wa = w * a[0, i]
                dx = -off[0, i]
                for j in range(NODES):
                    wab = np.float32(wa * a[1, j])
                    dx32 = np.float32(dx)
                    dy = np.float32(-off[1, j])
                    r0 = grid[0, i0 + i, j0 + j]
                    r1 = grid[1, i0 + i, j0 + j]
                    r2 = grid[2, i0 + i, j0 + j]
                    r3 = grid[3, i0 + i, j0 + j]
                    for k in range(NODES):
                        v = wab * az[k]
                        r0[k0 + k] += v
                        r1[k0 + k] += v * dx32
                        r2[k0 + k] += v * dy
                        r3[k0 + k] += v * dz[k]


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _gather(counter, queries, origin, grid, out, n_chunks):
    """Chunk ``c`` of the queries: each query's mean offset ``M / S`` from the grid."""
    inv_two_var = 1.0 / (2.0 * SPREAD**2)
    n = queries.shape[0]
    per = -(-n // n_chunks)
    a = np.empty((3, NODES))
    off = np.empty((3, NODES))
    az = np.empty(NODES, dtype=np.float32)
    dz = np.empty(NODES, dtype=np.float32)
    while True:
        c = _next_item(counter)
        if c >= n_chunks:
            return
        for p in range(c * per, min(n, (c + 1) * per)):
            i0 = _node_weights(queries[p, 0], origin[0], inv_two_var, a[0], off[0])
            j0 = _node_weights(queries[p, 1], origin[1], inv_two_var, a[1], off[1])
            k0 = _node_weights(queries[p, 2], origin[2], inv_two_var, a[2], off[2])
            for k in range(NODES):
                az[k] = a[2, k]
                dz[k] = off[2, k]
            s = 0.0
            m0 = 0.0
            m1 = 0.0
            m2 = 0.0
            for i in range(NODES):
                for j in range(NODES):
                    r0 = grid[0, i0 + i, j0 + j]
                    r1 = grid[1, i0 + i, j0 + j]
                    r2 = grid[2, i0 + i, j0 + j]
                    r3 = grid[3, i0 + i, j0 + j]
                    t0 = np.float32(0.0)
                    t1 = np.float32(0.0)
                    t2 = np.float32(0.0)
                    t3 = np.float32(0.0)
                    t4 = np.float32(0.0)
                    for k in range(NODES):
                        ck = az[k]
                        v = r0[k0 + k]
                        t0 += ck * v
                        t1 += ck * r1[k0 + k]
                        t2 += ck * r2[k0 + k]
                        t3 += ck * r3[k0 + k]
                        t4 += ck * dz[k] * v
                    aij = a[0, i] * a[1, j]
                    s += aij * t0
                    m0 += aij * (t1 + off[0, i] * t0)
                    m1 += aij * (t2 + off[1, j] * t0)
                    m2 += aij * (t3 + t4)
            out[p, 0] = m0 / s
            out[p, 1] = m1 / s
            out[p, 2] = m2 / s


def _convolve(grid):
    """The spread grid convolved: weights ``G_c * W`` and moments ``G_c * D_d + (G_c t)_d
    * W`` (``(G_c t)_d`` along axis ``d``, ``G_c`` along the others)."""
    gauss, moment = _conv_kernels()

    def along(values, weights, axis):
        return ndimage.correlate1d(values, weights, axis=axis, mode="constant")

    out = np.empty_like(grid)
    weight = grid[0]
    # per axis d: the moment along d first (D_d with G_c plus W with G_c t), then G_c
    # along the other two axes; the weights take G_c along all three
    along0 = along(weight, gauss, 0)
    out[0] = along(along(along0, gauss, 1), gauss, 2)
    for d in range(3):
        part = along(grid[1 + d], gauss, d) + along(weight, moment, d)
        for axis in range(3):
            if axis != d:
                part = along(part, gauss, axis)
        out[1 + d] = part
    return out


def grid_means(queries, sources, weights):
    """Gaussian-weighted means of ``sources`` seen from every query, on the grid.

    Parameters
    ----------
    queries : ndarray of shape (n, 3)
        Positions in bandwidths, float64.
    sources : ndarray of shape (m, 3)
        Positions in bandwidths, float64.
    weights : ndarray of shape (m,)
        Positive weight of every source.

    Returns
    -------
    ndarray of shape (n, 3)
        The weighted mean of the sources minus the query, for every query, in bandwidths.
    """
    lo = np.minimum(queries.min(axis=0), sources.min(axis=0))
    hi = np.maximum(queries.max(axis=0), sources.max(axis=0))
    origin, shape = grid_shape(lo, hi)
    grids = np.zeros((SPREAD_CHUNKS, 4, *shape), dtype=np.float32)
    in_threads(_spread, SPREAD_CHUNKS, sources, weights, origin, grids, SPREAD_CHUNKS)
    grid = grids[0]
    for chunk in grids[1:]:
        grid += chunk
    del grids, chunk
    convolved = _convolve(grid)
    del grid
    out = np.empty((len(queries), 3))
    in_threads(_gather, GATHER_CHUNKS, queries, origin, convolved, out, GATHER_CHUNKS)
    return out
