"""Gaussian sums of a mean-shift step on a regular grid, for dense clouds of colours.

A step needs, for every query ``y``, ``S = sum_j w_j K(x_j - y)`` and ``M = sum_j w_j
K(x_j - y) (x_j - y)`` over the sources ``x_j``, with ``K(r) = exp(-|r|**2 / 2)`` in
bandwidths. The Gaussian is the convolution of three Gaussians, ``G_a * G_c * G_a`` with
``2 a**2 + c**2 = 1``, and each of them is sampled on a grid of side ``s``:

1. **spread**: every source adds ``w_j G_a(g - x_j)`` to the ``m**3`` grid nodes ``g``
   around it (``m`` per axis), together with ``w_j G_a(g - x_j) (x_j - g)``;
2. **convolve**: the grid is convolved with ``G_c`` along each axis in turn; the moments
   also take ``G_c(t) t`` of the weights, for the part ``g' - g`` of ``x_j - y = (x_j -
   g') + (g' - g) + (g - y)``;
3. **gather**: every query sums ``G_a(g - y)`` times the convolved grid over the nodes
   around it, and the moments also take ``(g - y)`` times the convolved weights.

Every offset in the moments is a few bandwidths at most, so the mean ``M / S`` keeps its
precision wherever the cloud lies. The work per point is fixed (``2 * 4 * m**3``
multiply-adds) however many sources lie within reach, where the direct sums of
:mod:`skseg.meanshift._kernels` grow with the local density; on top comes the
convolution, which covers only the rows of the grid's box that the points' nodes reach,
and of each row the stretch between them (:func:`_convolve`).
:func:`skseg.meanshift._backend.takes_grid` chooses between them with :func:`grid_cost`.

The approximation is that of the sampling: the node Gaussians are cut off about ``m /
2`` nodes from the point, and the grid aliases frequencies above ``pi / s``. Two grids
are used (:class:`GridSpec`), measured on the first step of the 151,940 colours of
``stereo_motorcycle`` against float64 sums over every pair:

- :data:`FINE`, for the exact mode: half of the points land within ``1.3e-6``
  bandwidths of the exact mean, 99.9 % within ``6e-6``; over all the steps that took
  the grid, no point landed more than ``1.4e-4`` bandwidths from where the direct
  kernels (within ``1e-6``) put it. Nine nodes a side instead of ten leave 99.9 % of
  3,000 points checked within ``2.3e-5`` (against ``4.4e-6``) and moved 7 pixels of the
  photo to another mode.
- :data:`COARSE`, for ``algorithm="grid"``: on 3,000 points, median ``2.5e-5``
  bandwidths and at most ``4.8e-4``, for half of the work per point.
  Coarser grids change that mode's segments: with 7 nodes at side 0.55 (error up to
  ``1e-4`` of a pair's weight in one dimension), the adjusted Rand index of ``chelsea``'s
  segments against the exact mode's falls from 0.99 to 0.93.
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from ._kernels import _next_item, bounding_box, in_threads


class GridSpec(NamedTuple):
    """How a grid samples the Gaussian."""

    #: grid side in bandwidths
    side: float
    #: standard deviation, in bandwidths, of the Gaussian that spreads and gathers
    spread: float
    #: grid nodes per axis that one point spreads to or gathers from
    nodes: int
    #: a step takes the grid only where it is estimated this many times as fast as the
    #: direct kernels (:func:`skseg.meanshift._backend.takes_grid`)
    min_speedup: float = 1.0
    #: the convolution's Gaussian is cut off at this many standard deviations
    conv_cutoff: float = 5.5


#: the exact mode's grid. Each pair's weight is off by at most about ``1.3e-5`` of a
#: coincident pair's along each axis (in one dimension over all offsets). A step takes
#: it only where it is estimated 1.5 times as fast: its error, that of its sampling, is
#: a few times the direct kernels' bound.
FINE = GridSpec(side=0.5, spread=0.45, nodes=10, min_speedup=1.5)
#: the grid mode's (``algorithm="grid"``): each pair's weight is off by at most about
#: ``5e-5`` of a coincident pair's along each axis, for half of the work per point
COARSE = GridSpec(side=0.55, spread=0.5, nodes=8)
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
#: kernels. Medians over the steps of three photos on 2 AMD EPYC cores with AVX2: 0.16 to
#: 0.18 ns per operation on the fine grid, 0.20 to 0.22 on the coarse one, 0.27 to 0.28
#: per pair in the exact mode and 0.21 to 0.24 in the grid mode (looser pruning). The
#: exact mode's choice thus leans about a fifth toward the direct kernels, the grid
#: mode's about as much toward the grid.
SECONDS_PER_GRID_OP = 0.22e-9
SECONDS_PER_PAIR = 0.29e-9


def _conv_kernels(spec):
    """The convolution's Gaussian ``G_c`` and ``G_c(t) t`` on the nodes (float64)."""
    sigma = math.sqrt(1.0 - 2.0 * spec.spread**2)
    half = math.ceil(spec.conv_cutoff * sigma / spec.side)
    t = np.arange(-half, half + 1) * spec.side
    gauss = np.exp(-(t**2) / (2.0 * sigma**2))
    return gauss, gauss * t


def grid_shape(lo, hi, spec):
    """Origin (bandwidths) and node counts of the grid that covers the box ``lo..hi``
    with room for every point's nodes and the convolution around them."""
    pad = spec.nodes // 2 + 1
    origin = np.floor(np.asarray(lo, dtype=np.float64) / spec.side) * spec.side
    origin -= pad * spec.side
    shape = np.ceil((np.asarray(hi, dtype=np.float64) - origin) / spec.side).astype(np.int64)
    return origin, shape + pad


def grid_cost(n_queries, n_sources, lo, hi, spec):
    """Multiply-adds of one grid step: the points' nodes and the convolution's taps.

    ``None`` when the grid would exceed ``MAX_NODES`` nodes.
    """
    _, shape = grid_shape(lo, hi, spec)
    nodes = float(np.prod(shape.astype(np.float64)))
    if nodes > MAX_NODES:
        return None
    taps = len(_conv_kernels(spec)[0])
    return 4.0 * spec.nodes**3 * (n_queries + n_sources) + 15.0 * taps * nodes


@njit(inline="always")
def _first_node(p, origin, side, nodes):
    """Index of the first of the ``nodes`` nodes around ``p`` along one axis."""
    return int(math.floor((p - origin) / side - (nodes - 2) / 2))


@njit(inline="always")
def _node_weights(p, origin, side, inv_two_var, weights, offsets):
    """First node (index) of ``p``'s nodes along one axis (as many as ``weights``
    holds), with the Gaussian weight ``G_a(g - p)`` and the offset ``g - p`` of each."""
    nodes = len(weights)
    first = _first_node(p, origin, side, nodes)
    # three exponentials rather than one a node: from each node to the next the weight
    # changes by a ratio that itself changes by a fixed factor
    d = origin + first * side - p
    weight = math.exp(-d * d * inv_two_var)
    ratio = math.exp(-(2.0 * d + side) * side * inv_two_var)
    factor = math.exp(-2.0 * side * side * inv_two_var)
    for k in range(nodes):
        offsets[k] = origin + (first + k) * side - p
        weights[k] = weight
        weight *= ratio
        ratio *= factor
    return first


@njit(inline="always")
def _spread(counter, points, weights, origin, grids, n_chunks, side, spread, nodes):
    """Chunk ``c`` of the points adds its weights and moments to ``grids[c]``.

    A grid holds the four channels of a node side by side (weight, then the moments
    along the three axes), so that a point's ``nodes`` nodes along the last axis are
    ``4 * nodes`` consecutive floats, updated in one vectorised loop.
    """
    inv_two_var = 1.0 / (2.0 * spread**2)
    n = points.shape[0]
    per = -(-n // n_chunks)
    a = np.empty((3, nodes))
    off = np.empty((3, nodes))
    # the rows of a point's nodes along the last axis: for every node of the first
    # axis, the weight and the moments along the first and last axes (``row_x``), and
    # the weight in the lane of the moment along the second axis (``row_y``); the
    # second axis scales both
    row_x = np.zeros((nodes, 4 * nodes), dtype=np.float32)
    row_y = np.zeros((nodes, 4 * nodes), dtype=np.float32)
    while True:
        c = _next_item(counter)
        if c >= n_chunks:
            return
        grid = grids[c]
        for p in range(c * per, min(n, (c + 1) * per)):
            i0 = _node_weights(points[p, 0], origin[0], side, inv_two_var, a[0], off[0])
            j0 = _node_weights(points[p, 1], origin[1], side, inv_two_var, a[1], off[1])
            k0 = _node_weights(points[p, 2], origin[2], side, inv_two_var, a[2], off[2])
            w = weights[p]
            for i in range(nodes):
                wa = w * a[0, i]
                for k in range(nodes):
                    wac = wa * a[2, k]
                    row_x[i, 4 * k] = wac
                    row_x[i, 4 * k + 1] = -wac * off[0, i]
                    row_x[i, 4 * k + 3] = -wac * off[2, k]
                    row_y[i, 4 * k + 2] = wac
            for i in range(nodes):
                px = row_x[i]
                py = row_y[i]
                for j in range(nodes):
                    f = np.float32(a[1, j])
                    fy = np.float32(-a[1, j] * off[1, j])
                    row = grid[i0 + i, j0 + j, 4 * k0 : 4 * (k0 + nodes)]
                    for t in range(4 * nodes):
                        row[t] += f * px[t] + fy * py[t]


@njit(inline="always")
def _gather(counter, queries, origin, grid, out, n_chunks, side, spread, nodes):
    """Chunk ``c`` of the queries: each query's mean offset ``M / S`` from the grid.

    The rows of a query's nodes along the last axis are summed with the weights of the
    first two axes in vectorised loops (float32 over the second axis, float64 over the
    first); the last axis's weights and offsets enter at the end.
    """
    inv_two_var = 1.0 / (2.0 * spread**2)
    n = queries.shape[0]
    per = -(-n // n_chunks)
    a = np.empty((3, nodes))
    off = np.empty((3, nodes))
    row_sum = np.empty(4 * nodes, dtype=np.float32)
    row_sum_y = np.empty(4 * nodes, dtype=np.float32)
    total = np.empty(4 * nodes)
    total_x = np.empty(4 * nodes)
    total_y = np.empty(4 * nodes)
    while True:
        c = _next_item(counter)
        if c >= n_chunks:
            return
        for p in range(c * per, min(n, (c + 1) * per)):
            i0 = _node_weights(queries[p, 0], origin[0], side, inv_two_var, a[0], off[0])
            j0 = _node_weights(queries[p, 1], origin[1], side, inv_two_var, a[1], off[1])
            k0 = _node_weights(queries[p, 2], origin[2], side, inv_two_var, a[2], off[2])
            total[:] = 0.0
            total_x[:] = 0.0
            total_y[:] = 0.0
            for i in range(nodes):
                row_sum[:] = 0.0
                row_sum_y[:] = 0.0
                for j in range(nodes):
                    f = np.float32(a[0, i] * a[1, j])
                    fy = np.float32(a[0, i] * a[1, j] * off[1, j])
                    row = grid[i0 + i, j0 + j, 4 * k0 : 4 * (k0 + nodes)]
                    for t in range(4 * nodes):
                        row_sum[t] += f * row[t]
                        row_sum_y[t] += fy * row[t]
                for t in range(4 * nodes):
                    total[t] += row_sum[t]
                    total_x[t] += off[0, i] * row_sum[t]
                    total_y[t] += row_sum_y[t]
            s = 0.0
            m0 = 0.0
            m1 = 0.0
            m2 = 0.0
            for k in range(nodes):
                weight = total[4 * k]
                s += a[2, k] * weight
                m0 += a[2, k] * (total[4 * k + 1] + total_x[4 * k])
                m1 += a[2, k] * (total[4 * k + 2] + total_y[4 * k])
                m2 += a[2, k] * (total[4 * k + 3] + off[2, k] * weight)
            out[p, 0] = m0 / s
            out[p, 1] = m1 / s
            out[p, 2] = m2 / s


@njit(nogil=True, cache=True, fastmath={"contract"})
def _convolve_axis(counter, src, dst, gauss, moment, axis, spans, in_spans):
    """One axis of the convolution, rows ``i`` of the first axis handed out one at a
    time: every channel takes ``G_c``, and the moment along ``axis`` also takes
    ``G_c(t) t`` of the weights (``moment``).

    Row ``(i, j)`` of the last axis is computed on its nodes ``spans[0, i, j] <= k <
    spans[1, i, j]`` only (none where the span is empty), from the nodes of ``src``'s rows
    within ``in_spans``: the caller knows ``src`` to hold zeros outside them, or no node
    that this pass needs. Stretches of a row (four channels side by side) are added at
    once.
    """
    n0, n1, _ = src.shape
    half = (len(gauss) - 1) // 2
    lane = 1 + axis
    acc = np.empty(src.shape[2], dtype=np.float32)
    while True:
        i = _next_item(counter)
        if i >= n0:
            return
        for j in range(n1):
            lo, hi = spans[0, i, j], spans[1, i, j]
            if lo >= hi:
                continue
            acc[4 * lo : 4 * hi] = 0.0
            if axis == 2:
                row = src[i, j]
                for tau in range(-half, half + 1):
                    c, e = gauss[tau + half], moment[tau + half]
                    k0 = max(lo, in_spans[0, i, j] - tau)
                    k1 = min(hi, in_spans[1, i, j] - tau)
                    for t in range(4 * k0, 4 * k1):
                        acc[t] += c * row[t + 4 * tau]
                    for k in range(k0, k1):
                        acc[4 * k + lane] += e * row[4 * (k + tau)]
            else:
                first = max(-half, -(i if axis == 0 else j))
                last = min(half, (n0 - 1 - i) if axis == 0 else (n1 - 1 - j))
                for tau in range(first, last + 1):
                    ii, jj = (i + tau, j) if axis == 0 else (i, j + tau)
                    k0 = max(lo, in_spans[0, ii, jj])
                    k1 = min(hi, in_spans[1, ii, jj])
                    c, e = gauss[tau + half], moment[tau + half]
                    row = src[ii, jj]
                    for t in range(4 * k0, 4 * k1):
                        acc[t] += c * row[t]
                    for k in range(k0, k1):
                        acc[4 * k + lane] += e * row[4 * k]
            out = dst[i, j]
            for t in range(4 * lo, 4 * hi):
                out[t] = acc[t]


@njit(cache=True)
def _stencil_corners(points, origin, side, nodes, spans):
    """For every row ``(i, j)`` of the grid, the span of first nodes ``k`` along the last
    axis of the points whose stencil starts at that row (``spans`` is updated)."""
    for p in range(points.shape[0]):
        i = _first_node(points[p, 0], origin[0], side, nodes)
        j = _first_node(points[p, 1], origin[1], side, nodes)
        k = _first_node(points[p, 2], origin[2], side, nodes)
        spans[0, i, j] = min(spans[0, i, j], k)
        spans[1, i, j] = max(spans[1, i, j], k + nodes)


@njit(cache=True)
def _zero_spans(grid, spans):
    """Zeros on the nodes of every row's span."""
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            grid[i, j, 4 * spans[0, i, j] : 4 * spans[1, i, j]] = 0.0


@njit(cache=True)
def _add_spans(dst, src, spans):
    """``dst += src`` on the nodes of every row's span."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            a, b = dst[i, j], src[i, j]
            for t in range(4 * spans[0, i, j], 4 * spans[1, i, j]):
                a[t] += b[t]


#: start of an empty span (its end is 0)
_EMPTY = 2**40


def _widen(spans, axis, before, after):
    """The union of the spans of rows ``i - before .. i + after`` along ``axis`` (0 or 1
    for the first two axes of the grid), for every row."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (before, after)
    size = before + after + 1
    window = np.lib.stride_tricks.sliding_window_view
    lo = window(np.pad(spans[0], pad, constant_values=_EMPTY), size, axis=axis)
    hi = window(np.pad(spans[1], pad, constant_values=0), size, axis=axis)
    return np.stack([lo.min(axis=-1), hi.max(axis=-1)])


def _clipped(spans, n2):
    """Spans within the ``n2`` nodes of a row, as the kernels take them (empty ones with
    start >= end)."""
    return np.ascontiguousarray(np.clip(spans, 0, n2))


def _row_spans(points, origin, shape, spec):
    """The nodes ``spans[0, i, j] <= k < spans[1, i, j]`` of every row ``(i, j)`` that
    the points' stencils reach."""
    corners = np.empty((2, shape[0], shape[1]), dtype=np.int64)
    corners[0] = _EMPTY
    corners[1] = 0
    _stencil_corners(points, origin, spec.side, spec.nodes, corners)
    return _widen(_widen(corners, 0, spec.nodes - 1, 0), 1, spec.nodes - 1, 0)


# every grid has kernels of its own, in which the loops over its nodes have a known
# length (a third faster than with the length an argument)
_FINE_NODES, _COARSE_NODES = FINE.nodes, COARSE.nodes


@njit(nogil=True, cache=True, fastmath={"contract"})
def _spread_fine(counter, points, weights, origin, grids, n_chunks, side, spread):
    _spread(counter, points, weights, origin, grids, n_chunks, side, spread, _FINE_NODES)


@njit(nogil=True, cache=True, fastmath={"contract"})
def _spread_coarse(counter, points, weights, origin, grids, n_chunks, side, spread):
    _spread(counter, points, weights, origin, grids, n_chunks, side, spread, _COARSE_NODES)


@njit(nogil=True, cache=True, fastmath={"contract"})
def _gather_fine(counter, queries, origin, grid, out, n_chunks, side, spread):
    _gather(counter, queries, origin, grid, out, n_chunks, side, spread, _FINE_NODES)


@njit(nogil=True, cache=True, fastmath={"contract"})
def _gather_coarse(counter, queries, origin, grid, out, n_chunks, side, spread):
    _gather(counter, queries, origin, grid, out, n_chunks, side, spread, _COARSE_NODES)


_KERNELS = {FINE: (_spread_fine, _gather_fine), COARSE: (_spread_coarse, _gather_coarse)}


def _convolve(grid, scratch, spec, source_spans, query_spans):
    """The spread grid convolved, in ``scratch``: weights ``G_c * W`` and moments ``G_c *
    D_d + (G_c t)_d * W`` (``(G_c t)_d`` along axis ``d``, ``G_c`` along the others).

    The axes are taken in turn; as every pass leaves the weights convolved along the
    axes done so far, the moment along axis ``d`` takes ``(G_c t)`` of weights that
    already hold ``G_c`` along the axes before ``d``, and ``G_c`` along those after.

    Only the nodes the queries gather from (``query_spans``) are computed, with the
    nodes the passes before need for them, and the spread grid is read only where the
    sources reached (``source_spans``): on a photo's colours, a third to half of the
    grid's box.
    """
    gauss, moment = (kernel.astype(np.float32) for kernel in _conv_kernels(spec))
    half = (len(gauss) - 1) // 2
    n2 = grid.shape[2] // 4
    # what each pass must compute, from the last back: the queries' nodes, those within
    # reach of them along the last axis, then along the second
    last = query_spans
    reached = query_spans[0] < query_spans[1]
    middle = np.where(reached, query_spans + np.array([-half, half])[:, None, None], query_spans)
    first = _widen(middle, 1, half, half)
    # where each pass's input may be nonzero: the sources' nodes, then those within
    # reach of them along the first axis
    after_first = _widen(source_spans, 0, half, half)
    passes = [
        (grid, scratch, first, source_spans),
        (scratch, grid, middle, after_first),
        (grid, scratch, last, middle),
    ]
    for axis, (src, dst, spans, in_spans) in enumerate(passes):
        spans, in_spans = _clipped(spans, n2), _clipped(in_spans, n2)
        in_threads(_convolve_axis, len(grid), src, dst, gauss, moment, axis, spans, in_spans)
    return scratch


def _uninitialised(shape):
    """A float32 array of ``shape``; only the nodes a step reaches are ever written or read."""
    return np.empty(shape, dtype=np.float32)


def grid_means(queries, sources, weights, spec=FINE):
    """Gaussian-weighted means of ``sources`` seen from every query, on the grid.

    Parameters
    ----------
    queries : ndarray of shape (n, 3)
        Positions in bandwidths, float64.
    sources : ndarray of shape (m, 3)
        Positions in bandwidths, float64.
    weights : ndarray of shape (m,)
        Positive weight of every source.
    spec : GridSpec, default=FINE
        How finely the grid samples the Gaussian.

    Returns
    -------
    ndarray of shape (n, 3)
        The weighted mean of the sources minus the query, for every query, in bandwidths.
    """
    lo, hi = bounding_box(queries)
    if sources is not queries:
        source_lo, source_hi = bounding_box(sources)
        lo, hi = np.minimum(lo, source_lo), np.maximum(hi, source_hi)
    origin, shape = grid_shape(lo, hi, spec)
    source_spans = _row_spans(sources, origin, shape, spec)
    # a blurring step passes the same array twice: its spans once
    query_spans = source_spans if queries is sources else _row_spans(queries, origin, shape, spec)
    # only the nodes the sources reach are zeroed, here rather than by the spreading
    # threads, which would fault in fresh pages concurrently (a fifth of the spreading's
    # time on 2 cores)
    grids = _uninitialised((SPREAD_CHUNKS, shape[0], shape[1], 4 * shape[2]))
    for chunk in grids:
        _zero_spans(chunk, source_spans)
    spread, gather = _KERNELS[spec]
    sampling = (spec.side, spec.spread)
    in_threads(spread, SPREAD_CHUNKS, sources, weights, origin, grids, SPREAD_CHUNKS, *sampling)
    grid = grids[0]
    for chunk in grids[1:]:
        _add_spans(grid, chunk, source_spans)
    # the other chunks' grids serve as the convolution's second buffer
    scratch = grids[1] if SPREAD_CHUNKS > 1 else _uninitialised(grid.shape)
    convolved = _convolve(grid, scratch, spec, source_spans, query_spans)
    out = np.empty((len(queries), 3))
    in_threads(gather, GATHER_CHUNKS, queries, origin, convolved, out, GATHER_CHUNKS, *sampling)
    return out
