"""Batched torch backend for Gaussian mean-shift.

The public estimator lives in :mod:`skseg.mean_shift`; this module holds the numerical
engine. Everything here works in *scaled* coordinates ``y = (x - c) / (bandwidth * sqrt(2))``
so that the Gaussian weight of a pair is simply ``exp(-||y_i - y_j||**2)``.

Three exact reductions of work make it fast without changing the answer beyond float
resolution (see :class:`~skseg.MeanShiftSegmenter` for the write-up):

1. **Multiplicities.** Exactly equal inputs are one point with weight ``k``, and points
   whose positions agree to within ``merge_tol`` (they have collapsed together) are merged
   into one weighted point. A blurring step moves coincident points identically, so they
   never separate again.
2. **Pruning.** Points are ordered along a k-d tree (leaves of ``LEAF_SIZE`` points); a
   block of queries only meets the source leaves whose bounding boxes come closer than
   ``sqrt(cutoff)``. Every skipped pair
   has weight ``< exp(-cutoff)``, and ``cutoff`` is chosen so that all skipped weight
   together moves no point by more than ``1e-7`` times the data diameter.
3. **Blocking.** The ``n x n`` weight matrix is never built: one ``batch_size x chunk``
   block at a time is formed by a single matrix product (squared distance expanded with the
   log-multiplicity folded in), exponentiated in place and reduced by a second product.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: relative resolution the pruning guarantees: the weight left out moves a point by at most
#: this fraction of the data diameter (well below float32 resolution of the coordinates).
PRUNE_RELATIVE_ERROR = 1e-7
#: most source columns in one block; bounds memory at ``batch_size * MAX_COLUMNS`` floats
MAX_COLUMNS = 65536
#: smallest exponent kept; exp(-87) is still a normal float32, so exponentials stay on
#: the fast vectorised path and the clipped weights are below any resolution we report
MIN_EXPONENT = -87.0
LEAF_SIZE = 128


def prune_cutoff(total_weight, *, standard=False):
    """Exponent cutoff ``T``: pairs with ``||y_i - y_j||**2 >= T`` are skipped.

    The weight of all skipped pairs of one point is at most ``total_weight * exp(-T)``;
    relative to the point's own weight (at least 1 in the blurring algorithm, where each
    point is its own source), this moves the weighted mean by at most
    ``PRUNE_RELATIVE_ERROR`` times the data diameter. The standard algorithm's queries are
    not sources, so their kept weight is only guaranteed to be at least ``1e-3``; the cutoff
    is raised accordingly.
    """
    cutoff = math.log(max(total_weight, 1.0)) - math.log(PRUNE_RELATIVE_ERROR)
    if standard:
        cutoff += math.log(1e3)
    return cutoff


def kd_leaves(points, leaf_size=LEAF_SIZE):
    """Order ``points`` along a k-d tree.

    Returns
    -------
    order : ndarray of shape (n,)
        Permutation that makes every leaf a contiguous run.
    starts : ndarray of shape (n_leaves + 1,)
        Leaf ``i`` holds ``order[starts[i]:starts[i + 1]]``.
    """
    n = len(points)
    order = np.arange(n)
    stack = [(0, n)]
    bounds = []
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= leaf_size:
            bounds.append(lo)
            continue
        idx = order[lo:hi]
        pts = points[idx]
        dim = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        mid = (hi - lo) // 2
        order[lo:hi] = idx[np.argpartition(pts[:, dim], mid)]
        stack.append((lo + mid, hi))
        stack.append((lo, lo + mid))
    starts = np.array(sorted(bounds) + [n])
    return order, starts


def _leaf_boxes(sorted_points, starts):
    lo = np.minimum.reduceat(sorted_points, starts[:-1], axis=0)
    hi = np.maximum.reduceat(sorted_points, starts[:-1], axis=0)
    return lo, hi


def _box_gaps(q_lo, q_hi, s_lo, s_hi):
    """Squared smallest distance between every query box and every source box.

    Called for one block of query leaves at a time, so that the ``n_query x n_source``
    array stays ``batch_size / LEAF_SIZE`` rows high whatever the number of points.
    """
    total = np.zeros((len(q_lo), len(s_lo)))
    for k in range(q_lo.shape[1]):  # one feature at a time keeps memory at n_q x n_s
        gap = np.maximum(s_lo[None, :, k] - q_hi[:, None, k], q_lo[:, None, k] - s_hi[None, :, k])
        total += np.maximum(gap, 0.0) ** 2
    return total


class _Sources:
    """Source points sorted along their k-d tree, with per-leaf bounding boxes."""

    def __init__(self, points, weights, leaf_size):
        points_np = points.detach().cpu().numpy()
        order, self.starts = kd_leaves(points_np, leaf_size)
        self.lo, self.hi = _leaf_boxes(points_np[order], self.starts)
        self.leaf_of_row = np.repeat(np.arange(len(self.starts) - 1), np.diff(self.starts))
        self.order = torch.as_tensor(order, device=points.device)
        self.points = points[self.order]
        self.log_weights = torch.log(weights[self.order])


def weighted_means(queries, sources, weights, cutoff, batch_size, *, same=False):
    """Gaussian-weighted mean of ``sources`` seen from every row of ``queries``.

    Parameters
    ----------
    queries : Tensor of shape (n, d)
        Scaled query positions.
    sources : Tensor of shape (m, d)
        Scaled source positions.
    weights : Tensor of shape (m,)
        Multiplicity of each source (positive).
    cutoff : float
        Pairs with squared scaled distance ``>= cutoff`` are skipped (see
        :func:`prune_cutoff`).
    batch_size : int
        Query rows per block.
    same : bool
        ``queries`` and ``sources`` are the same points (blurring step): one tree serves both.

    Returns
    -------
    Tensor of shape (n, d)
        ``sum_j w_j exp(-|q_i - s_j|^2) s_j / sum_j w_j exp(-|q_i - s_j|^2)``.
    """
    src = _Sources(sources, weights, LEAF_SIZE)
    if same:
        q_order_t = src.order
        q_points = src.points
        q_starts, q_lo, q_hi = src.starts, src.lo, src.hi
    else:
        q_np = queries.detach().cpu().numpy()
        q_order, q_starts = kd_leaves(q_np, LEAF_SIZE)
        q_lo, q_hi = _leaf_boxes(q_np[q_order], q_starts)
        q_order_t = torch.as_tensor(q_order, device=queries.device)
        q_points = queries[q_order_t]

    n, d = q_points.shape
    dtype, device = q_points.dtype, q_points.device
    out = torch.empty_like(q_points)
    leaves_per_block = max(1, batch_size // LEAF_SIZE)
    n_leaves = len(q_starts) - 1
    ones = torch.ones(1, 1, dtype=dtype, device=device)
    for first in range(0, n_leaves, leaves_per_block):
        last = min(first + leaves_per_block, n_leaves)
        rows = slice(int(q_starts[first]), int(q_starts[last]))
        q = q_points[rows]
        centre = q.mean(dim=0, keepdim=True)
        qc = q - centre
        lhs = torch.cat([2.0 * qc, ones.expand(len(qc), 1), -(qc * qc).sum(1, keepdim=True)], dim=1)
        # the block's leaves against every source leaf: memory linear in the points
        gaps = _box_gaps(q_lo[first:last], q_hi[first:last], src.lo, src.hi)
        kept_leaves = (gaps < cutoff).any(axis=0)
        if kept_leaves.all():
            columns = None
            n_cols = len(src.points)
        else:
            columns = torch.as_tensor(np.flatnonzero(kept_leaves[src.leaf_of_row]), device=device)
            n_cols = len(columns)
        acc = torch.zeros(len(q), d + 1, dtype=dtype, device=device)
        for c0 in range(0, n_cols, MAX_COLUMNS):
            c1 = min(c0 + MAX_COLUMNS, n_cols)
            if columns is None:
                s, logw = src.points[c0:c1], src.log_weights[c0:c1]
            else:
                s, logw = src.points[columns[c0:c1]], src.log_weights[columns[c0:c1]]
            sc = s - centre
            rhs = torch.cat(
                [sc, (logw - (sc * sc).sum(1))[:, None], ones.expand(len(sc), 1)], dim=1
            )
            block = lhs @ rhs.T  # -|q - s|^2 + log w, one (rows x columns) block
            block.clamp_(min=MIN_EXPONENT).exp_()
            acc += block @ torch.cat([sc, ones.expand(len(sc), 1)], dim=1)
        out[rows] = centre + acc[:, :d] / acc[:, d:]
    result = torch.empty_like(out)
    result[q_order_t] = out
    return result


def merge_coincident(points, weights, inverse, tol):
    """Merge points that agree to within ``tol`` (same cell of a ``tol`` grid).

    Returns the merged points (weighted means of their members), their summed weights and
    the updated map from original samples to merged points.
    """
    if tol <= 0 or len(points) < 2:
        return points, weights, inverse
    keys = torch.round(points / tol).to(torch.int64)
    keys -= keys.min(dim=0).values
    spans = (keys.max(dim=0).values + 1).tolist()
    if math.prod(spans) < 2**62:
        # one integer per cell: a 1-d unique is much faster than a row-wise one
        strides = torch.tensor(
            [math.prod(spans[k + 1 :]) for k in range(len(spans))], device=keys.device
        )
        _, group = torch.unique((keys * strides).sum(dim=1), return_inverse=True)
    else:
        _, group = torch.unique(keys, dim=0, return_inverse=True)
    n_groups = int(group.max()) + 1
    if n_groups == len(points):
        return points, weights, inverse
    new_w = torch.zeros(n_groups, dtype=weights.dtype, device=weights.device)
    new_w.index_add_(0, group, weights)
    new_p = torch.zeros(n_groups, points.shape[1], dtype=points.dtype, device=points.device)
    new_p.index_add_(0, group, points * weights[:, None])
    return new_p / new_w[:, None], new_w, group[inverse]


def merge_tolerance(dtype):
    """Distance (scaled units) under which collapsed points are merged.

    A few hundred float ulps of a coordinate of order one: far below the accuracy any
    comparison with a float64 reference can resolve for the working precision.
    """
    return 1e-4 if dtype == torch.float32 else 1e-11


def run_mean_shift(
    X, *, bandwidth, max_iter, tol, algorithm, batch_size, device, dtype, progress=None
):
    """Run blurring or standard Gaussian mean-shift on ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite float64 data.
    bandwidth, max_iter, tol, algorithm, batch_size :
        As in :class:`~skseg.MeanShiftSegmenter`.
    device : torch.device
    dtype : torch.dtype
    progress : callable or None
        Called after every step with ``(step, n_points)``.

    Returns
    -------
    shifted : ndarray of shape (n_samples, n_features)
        Positions after the last step, in the dtype of the computation.
    n_iter : int
        Steps run.
    """
    scale = bandwidth * math.sqrt(2.0)
    # exact duplicates are one weighted point: they would move identically anyway. The
    # unique rows come sorted, so nothing below depends on the order of the samples.
    unique, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    origin = counts @ unique / len(X)
    inverse = torch.as_tensor(inverse.reshape(-1), device=device)
    points = torch.as_tensor((unique - origin) / scale, dtype=dtype, device=device)
    weights = torch.as_tensor(counts, dtype=dtype, device=device)
    standard = algorithm == "standard"
    cutoff = prune_cutoff(len(X), standard=standard)
    merge_tol = merge_tolerance(dtype)
    if standard:
        sources, source_weights = points, weights
    n_iter = 0
    for step in range(max_iter):
        if standard:
            new = weighted_means(points, sources, source_weights, cutoff, batch_size)
        else:
            new = weighted_means(points, points, weights, cutoff, batch_size, same=True)
        shift = torch.linalg.vector_norm(new - points, dim=1).max().item() * scale
        points = new
        n_iter = step + 1
        points, weights, inverse = merge_coincident(points, weights, inverse, merge_tol)
        if progress is not None:
            progress(step, len(points))
        if shift <= tol:
            break
    shifted = points[inverse].cpu().numpy()
    shifted = shifted * np.asarray(scale, dtype=shifted.dtype) + origin.astype(shifted.dtype)
    return shifted, n_iter
