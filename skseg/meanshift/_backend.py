"""Numerical engine of Gaussian mean-shift: k-d leaves, error-bounded pruning, kernels.

The public estimator lives in :mod:`skseg.meanshift`. Everything here works in *scaled*
coordinates ``y = (x - c) / (bandwidth * sqrt(2))``, so that the Gaussian weight of a pair
is simply ``exp(-||y_i - y_j||**2)``.

One step of mean-shift moves every query to the Gaussian-weighted mean of the sources.
Four reductions of work make that fast. The first three keep every step within a stated
tolerance of the exact one, the fourth within the error of its sampling:

1. **Multiplicities.** Exactly equal inputs are one point with weight ``k``, and points
   whose positions agree to within :func:`merge_tolerance` (they have collapsed together)
   are merged into one weighted point. A blurring step moves coincident points
   identically, so they never separate again. As sources, points that crowd within a
   cell of :func:`source_cell` are summed as one at their weighted mean
   (:func:`aggregate_sources`), while each stays a query of its own.
2. **Error-bounded pruning.** Points are ordered along a k-d tree (leaves of
   ``LEAF_SIZE`` points). For every query leaf, :func:`leaf_lists` lists the source
   leaves it may need, nearest first, leaving out leaves whose weight, bounded with the
   leaves' boxes, moves no query by more than half of :func:`prune_tolerance` (``1e-6``
   bandwidths per step in float32, ``1e-11`` in float64). The fused kernels then stop
   meeting a query's list as soon as a per-query bound on the rest, taken with the exact
   weight of the sources met so far, fits in the tolerance: points in dense regions meet
   few leaves.
3. **Fused kernels.** On the CPU, :mod:`skseg.meanshift._kernels` evaluates each
   listed leaf pair in registers (distance, exponential and sums in one pass; in float32,
   sources centred on a compact query leaf make the exponent a dot product). Elsewhere
   (CUDA, or more than five features) :func:`weighted_means_torch` forms one
   ``rows x columns`` block of exponents at a time by a matrix product and reduces it by
   a second one; the ``n x n`` weight matrix is never built.
4. **A grid for dense colours.** A float32 step on three features whose leaf lists
   would hold so many pairs (:func:`listed_pairs` counts them on a sample) that a grid
   Gauss transform is estimated to be much faster (:func:`takes_grid`) is done on a
   grid instead (:mod:`skseg.meanshift._grid_transform`), without trees or lists: fixed
   work per point, and an error that of the grid's sampling rather than a per-query
   bound.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..image import merge_small_regions
from . import _grid_transform as grid_transform
from . import _kernels as kernels

#: most source columns in one block of the torch kernel; bounds its memory at
#: ``batch_size * MAX_COLUMNS`` floats
MAX_COLUMNS = 8192
#: smallest exponent kept by the torch kernel; exp(-87) is still a normal float32
MIN_EXPONENT = -87.0
LEAF_SIZE = 256
#: query leaves whose lists are built together; bounds the pruning's memory at
#: ``LIST_BLOCK x n_leaves`` floats
LIST_BLOCK = 64
#: the choice of the grid (:func:`takes_grid`) estimates the pairs the pruning would list
#: from every ``PAIR_SAMPLE``-th point, in leaves of ``LEAF_SIZE // PAIR_SAMPLE``, and
#: the lists of every ``PAIR_SAMPLE``-th of those leaves
PAIR_SAMPLE = 8


def prune_tolerance(dtype):
    """Largest move, in scaled units, that pruning may cause a point in one step.

    ``1e-6`` bandwidths in float32, about the rounding error of a float32 step, and
    ``1e-11`` bandwidths in float64. One bandwidth is ``1 / sqrt(2)`` scaled units.
    Blurring mean-shift amplifies errors near saddle points between modes over its
    steps, so the float32 tolerance is set by measurement on whole photos: with ``1e-4``
    bandwidths, 53 of the 262,144 pixels of scikit-image's ``immunohistochemistry``
    ended more than 0.05 Lab units (up to 0.71) from the float64 result, with ``1e-5``
    8, with ``1e-6`` none (largest difference 0.014, against 0.007 without any
    pruning), for 16 to 21 % more time than ``1e-4`` on the benchmark photos.
    """
    relative = 1e-6 if dtype == torch.float32 else 1e-11
    return relative / math.sqrt(2.0)


def kd_leaves(points, leaf_size=LEAF_SIZE):
    """Order ``points`` along a k-d tree.

    Every node splits at the median of its widest coordinate, until nodes hold at most
    ``leaf_size`` points (:func:`skseg.meanshift._kernels.kd_order`).

    Returns
    -------
    order : ndarray of shape (n,)
        Permutation that makes every leaf a contiguous run.
    starts : ndarray of shape (n_leaves + 1,)
        Leaf ``i`` holds ``order[starts[i]:starts[i + 1]]``.
    """
    return kernels.kd_order(np.ascontiguousarray(points), int(leaf_size))


def _leaf_boxes(sorted_points, starts):
    lo = np.minimum.reduceat(sorted_points, starts[:-1], axis=0)
    hi = np.maximum.reduceat(sorted_points, starts[:-1], axis=0)
    return lo.astype(np.float64), hi.astype(np.float64)


class _Tree:
    """Points sorted along their k-d tree, with per-leaf bounding boxes and weights."""

    def __init__(self, points, weights, leaf_size=None):
        points_np = points.detach().cpu().numpy()
        order, self.starts = kd_leaves(points_np, LEAF_SIZE if leaf_size is None else leaf_size)
        self.lo, self.hi = _leaf_boxes(points_np[order], self.starts)
        weights_np = weights.detach().cpu().numpy()[order].astype(np.float64)
        self.weight = np.add.reduceat(weights_np, self.starts[:-1])
        self.min_weight = np.minimum.reduceat(weights_np, self.starts[:-1])
        self.order = torch.as_tensor(order, device=points.device)
        self.points = points[self.order]
        # numpy's log: torch's gives the same element a last-bit different value
        # depending on how its threads split the array
        self.log_weights = torch.as_tensor(
            np.log(weights_np).astype(points_np.dtype), device=points.device
        )

    def __len__(self):
        return len(self.starts) - 1


def leaf_lists(queries, sources, tolerance, *, own_weight=True, rows=None):
    """Source leaves every query leaf may need, nearest first.

    For a query ``q`` and a source leaf ``S`` of total weight ``W_S``, the weight ``S``
    adds is at most ``W_S exp(-gap(q, S)**2)``, and it pulls the mean ``m`` of the other
    sources by at most that times ``far(q, S) + |q - m|``, divided by their total weight
    (``gap`` and ``far`` are the nearest and farthest distances to ``S``'s box).

    Here the bound is taken over whole query leaves ``Q`` (box to box), with ``|q - m|``
    at most the farthest any source lies from ``Q`` and the total weight at least
    ``sum_S W_S exp(-far(Q, S)**2)`` (and a query's own weight when queries are
    sources). Leaves whose bounds add up to at most half of ``tolerance`` are left out;
    the leaf of the largest bound always stays. The others are listed nearest first.

    The fused kernels then meet each query's list in order and stop for that query once
    the bound of the rest, now per query and with the exact weight and mean of the
    sources met so far, adds up to at most ``tolerance``: points in dense regions meet
    few leaves. A kernel that meets whole lists stays within half the tolerance.

    Parameters
    ----------
    queries, sources : _Tree
    tolerance : float
        Largest move in scaled units; see :func:`prune_tolerance`.
    own_weight : bool, default=True
        Queries are sources too (the blurring algorithm): each query's total weight is at
        least its own.
    rows : ndarray of int or None, default=None
        The query leaves to list for; all of them by default.

    Returns
    -------
    ptr : ndarray of shape (n_rows + 1,)
    leaves : ndarray
        Query leaf ``rows[i]`` may meet the source leaves ``leaves[ptr[i]:ptr[i + 1]]``,
        nearest first.
    left_a, left_b : ndarray of shape (n_rows,)
        Bounds of the weight ``sum W_S exp(-gap(Q, S)**2)`` and of the weighted distance
        ``sum W_S exp(-gap(Q, S)**2) far(Q, S)`` of the leaves left out of each list.
    """
    counts, chunks, lefts_a, lefts_b = [], [], [], []
    floor = queries.min_weight if own_weight else np.zeros(len(queries))
    rows = np.arange(len(queries)) if rows is None else rows
    for first in range(0, len(rows), LIST_BLOCK):
        block = rows[first : first + LIST_BLOCK]
        lists, n_kept, left_a, left_b = kernels.leaf_list_block(
            queries.lo[block], queries.hi[block], floor[block],
            sources.lo, sources.hi, sources.weight, 0.5 * tolerance,
        )
        counts.append(n_kept)
        chunks.append(lists[np.arange(lists.shape[1])[None, :] < n_kept[:, None]])
        lefts_a.append(left_a)
        lefts_b.append(left_b)
    ptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return ptr, np.concatenate(chunks), np.concatenate(lefts_a), np.concatenate(lefts_b)


def weighted_means(
    queries, sources, weights, tolerance, batch_size, *, same=False, grid=grid_transform.FINE
):
    """Gaussian-weighted mean of ``sources`` seen from every row of ``queries``.

    Parameters
    ----------
    queries : Tensor of shape (n, d)
        Scaled query positions.
    sources : Tensor of shape (m, d)
        Scaled source positions.
    weights : Tensor of shape (m,)
        Multiplicity of each source (positive).
    tolerance : float
        Largest move, in scaled units, that pruning may cause (see
        :func:`prune_tolerance`).
    batch_size : int
        Query rows per block of the torch kernel.
    same : bool
        ``queries`` and ``sources`` are the same points (blurring step): one tree serves both.
    grid : GridSpec, default=FINE
        The grid transform a dense step may take (:func:`takes_grid`).

    Returns
    -------
    Tensor of shape (n, d)
        ``sum_j w_j exp(-|q_i - s_j|^2) s_j / sum_j w_j exp(-|q_i - s_j|^2)``, up to the
        pruning's tolerance.
    """
    if takes_grid(queries, sources, weights, tolerance, same=same, grid=grid):
        root2 = math.sqrt(2.0)  # the grid works in bandwidths and float64
        q = queries.numpy().astype(np.float64) * root2
        s = q if same else sources.numpy().astype(np.float64) * root2
        offsets = grid_transform.grid_means(q, s, weights.numpy().astype(np.float64), grid)
        return torch.from_numpy(((q + offsets) / root2).astype(np.float32))
    src = _Tree(sources, weights)
    if same:
        qry = src
    else:
        qry = _Tree(queries, torch.ones(len(queries), dtype=queries.dtype, device=queries.device))
    ptr, leaves, left_a, left_b = leaf_lists(qry, src, tolerance, own_weight=same)
    if uses_fused_kernels(queries.device, queries.shape[1]):
        source_points = src.points.numpy()
        out = torch.from_numpy(
            kernels.leaf_list_means(
                source_points if same else qry.points.numpy(),
                qry.starts,
                source_points,
                src.log_weights.numpy(),
                src.starts,
                (src.lo, src.hi, src.weight),
                ptr,
                leaves,
                (left_a, left_b),
                tolerance,
            )
        )
    else:
        out = weighted_means_torch(qry, src, ptr, leaves, batch_size)
    result = torch.empty_like(out)
    result[qry.order] = out
    return result


def takes_grid(queries, sources, weights, tolerance, *, same, grid=grid_transform.FINE):
    """Whether the grid ``grid`` (:mod:`skseg.meanshift._grid_transform`) does a step's sums.

    On the CPU, in float32, for three features, when its estimated time is a
    ``grid.min_speedup``-th of that of the direct kernels on the pairs of leaves that
    :func:`leaf_lists` would list (:func:`listed_pairs`) or less: the dense first steps
    of a photo's colours, before their points collapse. Arguments as in
    :func:`weighted_means`.
    """
    if not (
        queries.device.type == "cpu"
        and queries.dtype == torch.float32
        and queries.shape[1] == grid_transform.N_FEATURES
    ):
        return False
    root2 = math.sqrt(2.0)
    lo, hi = queries.min(dim=0).values, queries.max(dim=0).values
    if sources is not queries:  # a blurring step passes one tensor twice: its box once
        lo = torch.minimum(lo, sources.min(dim=0).values)
        hi = torch.maximum(hi, sources.max(dim=0).values)
    lo, hi = lo.numpy() * root2, hi.numpy() * root2
    grid_ops = grid_transform.grid_cost(len(queries), len(sources), lo, hi, grid)
    if grid_ops is None:
        return False
    budget = grid_ops * grid_transform.SECONDS_PER_GRID_OP * grid.min_speedup
    if len(queries) * len(sources) * grid_transform.SECONDS_PER_PAIR <= budget:
        return False  # not even with every pair listed
    pairs = listed_pairs(queries, sources, weights, tolerance, same=same)
    return budget < pairs * grid_transform.SECONDS_PER_PAIR


def listed_pairs(queries, sources, weights, tolerance, *, same):
    """About how many pairs of points :func:`leaf_lists` would list for a step.

    Estimated from every ``PAIR_SAMPLE``-th point, each standing for ``PAIR_SAMPLE``
    (leaves of ``LEAF_SIZE // PAIR_SAMPLE`` of them span about as much as full ones),
    and the lists of every ``PAIR_SAMPLE``-th of their query leaves: about a tenth of
    the time of the full trees and lists, within about 10 % of their count on photos.
    Arguments as in :func:`weighted_means`.
    """
    every = PAIR_SAMPLE

    def sampled_tree(points, point_weights):
        tree = _Tree(points[::every], point_weights[::every] * every, LEAF_SIZE // every)
        tree.min_weight /= every  # a query's own weight, not that of the points it stands for
        return tree

    src = sampled_tree(sources, weights)
    qry = src if same else sampled_tree(queries, torch.ones_like(queries[:, 0]))
    rows = np.arange(0, len(qry), every)
    ptr, leaves, _, _ = leaf_lists(qry, src, tolerance, own_weight=same, rows=rows)
    query_sizes = np.diff(qry.starts)
    listed = np.repeat(query_sizes[rows], np.diff(ptr))
    pairs = float(np.dot(listed.astype(np.float64), np.diff(src.starts)[leaves]))
    return pairs * every**2 * query_sizes.sum() / query_sizes[rows].sum()


def weighted_means_torch(qry, src, ptr, leaves, batch_size):
    """The listed leaf pairs by blocked matrix products (any device, any dimension).

    A block of query leaves meets the union of their listed source leaves. The exponent
    ``-|q - s|^2 + log w_s`` of a ``rows x columns`` block comes from one product of
    augmented coordinates centred on the block, is exponentiated in place and reduced by
    a second product.
    """
    q_points, q_starts = qry.points, qry.starts
    n, d = q_points.shape
    dtype, device = q_points.dtype, q_points.device
    out = torch.empty_like(q_points)
    leaves_per_block = max(1, batch_size // LEAF_SIZE)
    ones = torch.ones(1, 1, dtype=dtype, device=device)
    leaf_of_row = np.repeat(np.arange(len(src)), np.diff(src.starts))
    for first in range(0, len(qry), leaves_per_block):
        last = min(first + leaves_per_block, len(qry))
        rows = slice(int(q_starts[first]), int(q_starts[last]))
        q = q_points[rows]
        centre = q.mean(dim=0, keepdim=True)
        qc = q - centre
        lhs = torch.cat([2.0 * qc, ones.expand(len(qc), 1), -(qc * qc).sum(1, keepdim=True)], dim=1)
        kept_leaves = np.zeros(len(src), dtype=bool)
        kept_leaves[leaves[ptr[first] : ptr[last]]] = True
        columns = torch.as_tensor(np.flatnonzero(kept_leaves[leaf_of_row]), device=device)
        acc = torch.zeros(len(q), d + 1, dtype=dtype, device=device)
        for c0 in range(0, len(columns), MAX_COLUMNS):
            cols = columns[c0 : c0 + MAX_COLUMNS]
            sc = src.points[cols] - centre
            logw = src.log_weights[cols]
            rhs = torch.cat(
                [sc, (logw - (sc * sc).sum(1))[:, None], ones.expand(len(sc), 1)], dim=1
            )
            block = lhs @ rhs.T  # -|q - s|^2 + log w, one (rows x columns) block
            block.clamp_(min=MIN_EXPONENT).exp_()
            acc += block @ torch.cat([sc, ones.expand(len(sc), 1)], dim=1)
        out[rows] = centre + acc[:, :d] / acc[:, d:]
    return out


def _cell_means(points, weights, tol, *, max_cells=None):
    """Weighted means and summed weights of the points of every cell of a ``tol`` grid.

    Returns ``(means, weights, group)``: the cells in the order of their first members,
    as tensors, and the cell of every point (ndarray). Returns ``None``, before any sums,
    when the points fill more than ``max_cells`` cells (by default, when no two of them
    share one).
    """
    if tol <= 0 or len(points) < 2:
        return None
    # cell indices, computed in float64 so that huge scaled coordinates (tiny bandwidths)
    # cannot overflow
    # C order whatever the tensor's strides: one compiled version of each kernel
    points_np = np.ascontiguousarray(points.detach().cpu().numpy())
    keys = np.round(points_np.astype(np.float64) / tol)
    first, group_np = kernels.row_groups(keys)
    if len(first) > (len(points) - 1 if max_cells is None else max_cells):
        return None
    # the sums run in one numba loop, one point after the other: torch's parallel
    # index_add_ adds in a varying order, and blurring mean-shift amplifies such
    # last-bit differences into different results from run to run
    new_p, new_w = kernels.group_means(points_np, weights.cpu().numpy(), group_np, len(first))
    device = points.device
    return torch.as_tensor(new_p, device=device), torch.as_tensor(new_w, device=device), group_np


def merge_coincident(points, weights, inverse, tol):
    """Merge points that agree to within ``tol`` (same cell of a ``tol`` grid).

    Returns the merged points (weighted means of their members, in the order of their
    first members), their summed weights and the updated map from original samples to
    merged points.
    """
    cells = _cell_means(points, weights, tol)
    if cells is None:
        return points, weights, inverse
    new_p, new_w, group = cells
    return new_p, new_w, torch.as_tensor(group, device=points.device)[inverse]


def aggregate_sources(points, weights, cell, *, max_fraction=0.75):
    """The sources of a blurring step, with the points of every ``cell`` summed as one.

    A cell's points become one source of their summed weight at their weighted mean.
    The weight and the first moment are kept exactly, so a query at distance ``r`` sees
    its Gaussian sum change only in the second order of the points' offsets ``delta``
    from their mean: by a fraction of about ``|delta|**2 * (2 * r**2 + 1)``.

    Returns ``(points, weights)`` unchanged when that leaves more than ``max_fraction``
    of them: two k-d trees (queries and sources) then cost more than they save.
    """
    cells = _cell_means(points, weights, cell, max_cells=max_fraction * len(points))
    if cells is None:
        return points, weights
    return cells[0], cells[1]


def unique_rows(X):
    """``np.unique(X, axis=0, return_inverse=True, return_counts=True)``, faster.

    The distinct rows in lexicographic order, the index of every row among them and how
    often each occurs. Rows are grouped in one pass by hashing
    (:func:`skseg.meanshift._kernels.row_groups`, three times as fast as sorting a
    megapixel's rows); only the distinct rows are sorted, by their first column alone
    where its values are all different (a photo's colours: a third of the time of a
    lexicographic sort).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    first, group = kernels.row_groups(X)
    distinct = X[first]
    order = np.argsort(distinct[:, 0], kind="stable")
    leading = distinct[order, 0]
    if len(order) > 1 and (leading[1:] == leading[:-1]).any():
        order = np.lexsort(distinct.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[group]
    return distinct[order], group, np.bincount(group, minlength=len(order))


def distinct_weights(inverse, sample_weight, n_distinct, dtype):
    """Total ``sample_weight`` of each distinct row, held in the working ``dtype``.

    Weights of at least 1 are kept as they are, so that integer weights give what
    repeated rows give. Otherwise they are rescaled so that the smallest total is 1
    (mean-shift does not change when all weights are multiplied by one number). The sum
    must stay below the square root of the dtype's largest value, so that weighted sums
    of coordinates cannot overflow.
    """
    limit = math.sqrt(torch.finfo(dtype).max)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        totals = np.bincount(inverse, weights=sample_weight, minlength=n_distinct)
        if not (totals.min() >= 1 and totals.sum() <= limit):
            scaled = sample_weight / sample_weight.max()
            totals = np.bincount(inverse, weights=scaled, minlength=n_distinct)
            totals = totals / totals.min()
    if not totals.sum() <= limit:  # inf and NaN too
        name, or_float64 = _name_and_remedy(dtype)
        raise ValueError(
            f"sample_weight spans {sample_weight.max():g} / {sample_weight.min():g}, more "
            f"than {name} can hold in a sum over {len(sample_weight)} samples; narrow "
            f"the range of the weights{or_float64}"
        )
    return totals


def _name_and_remedy(dtype):
    """The working dtype's name, and the advice to use float64 unless it already is."""
    name = str(dtype).split(".")[-1]
    return name, ("" if name == "float64" else " or use dtype='float64'")


def merge_tolerance(dtype, *, blurring=True):
    """Side, in scaled units, of the cells whose points are merged after every step.

    In float32, ``1e-3`` bandwidths for blurring mean-shift and ``1.4e-4`` for the
    standard algorithm; ``1e-11`` bandwidths in float64. Points that close have
    collapsed into the same mode; merging them early is what makes the later steps
    cheap. Blurring mean-shift contracts every cluster onto one point within a few
    steps, so its float32 cell is set by measurement like :func:`prune_tolerance`: with
    ``1e-3`` bandwidths, as many pixels end within 0.05 of float64 as with ``1.4e-4``
    on eight scikit-image photos (all of them, but one pixel of ``colorwheel`` with
    either cell) and on ``coffee`` at three sizes (3-D and 5-D features), in 12 to 14 %
    less time at 240,000 pixels; with ``3e-3``, 1 to 8 pixels of three of them end in
    another mode. The standard algorithm approaches its modes only linearly, so its
    points keep the finer cell.
    """
    if dtype != torch.float32:
        relative = 1e-11
    elif blurring:
        relative = 1e-3
    else:
        relative = 1e-4 * math.sqrt(2.0)  # 1e-4 scaled units
    return relative / math.sqrt(2.0)


def source_cell(dtype, algorithm):
    """Side, in scaled units, of the cells whose sources are summed as one in a step.

    ``1e-2`` bandwidths in float32 blurring mean-shift, and none otherwise (float64, the
    standard algorithm, whose sources do not move, and the grid mode, whose merge cells
    are larger). Blurring mean-shift crowds each cluster's points together for a few
    steps before they come within a merge cell of each other (:func:`merge_tolerance`);
    in those steps, summing the sources of a cell at their mean (:func:`aggregate_sources`)
    leaves a third to two thirds of them. The error is second order in the cell: at most
    about ``1e-3`` of the weight of a source 2 scaled units away, as much as the first
    order change that merging at :func:`merge_tolerance` makes. On the benchmark photos
    as many pixels end within 0.05 Lab units of float64 as without it; with ``3e-2``
    bandwidths, 17 pixels of ``immunohistochemistry`` end in another mode.
    """
    if dtype != torch.float32 or algorithm != "blurring":
        return 0.0
    return 1e-2 / math.sqrt(2.0)


def uses_fused_kernels(device, n_features):
    """Whether the CPU kernels of :mod:`skseg.meanshift._kernels` do a step's sums."""
    return device.type == "cpu" and n_features <= kernels.MAX_FEATURES


def run_mean_shift(
    X,
    *,
    bandwidth,
    max_iter,
    tol,
    algorithm,
    batch_size,
    device,
    dtype,
    grid_cell,
    sample_weight=None,
    progress=None,
):
    """Run blurring, grid-binned blurring or standard Gaussian mean-shift on ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite float64 data.
    sample_weight : ndarray of shape (n_samples,) or None
        Positive finite weight of every sample; ``None`` weighs them all 1. A sample of
        weight ``k`` acts as ``k`` copies of it.
    bandwidth, max_iter, tol, algorithm, batch_size, grid_cell :
        As in :class:`~skseg.MeanShiftSegmenter`.
    device : torch.device
    dtype : torch.dtype
    progress : callable or None
        Called after every step with ``(step, n_points)``.

    Returns
    -------
    positions : ndarray of shape (n_points, n_features)
        Positions after the last step of the points the samples became (duplicates and
        points that collapsed together are one), in the dtype of the computation.
    inverse : ndarray of shape (n_samples,)
        Sample ``i`` ended at ``positions[inverse[i]]``.
    n_iter : int
        Steps run.
    distinct : ndarray of shape (n_distinct, n_features)
        The distinct rows of ``X``, sorted.
    distinct_inverse : ndarray of shape (n_samples,)
        Sample ``i`` is ``distinct[distinct_inverse[i]]``.
    """
    scale = bandwidth * math.sqrt(2.0)
    # exact duplicates are one weighted point: they would move identically anyway. The
    # unique rows come sorted, so nothing below depends on the order of the samples.
    unique, unique_inverse, counts = unique_rows(X)
    # centred on the middle of the data's box (halves first: no overflow near the
    # largest floats); what cannot be represented is caught below
    low, high = kernels.bounding_box(unique)
    origin = low / 2 + high / 2
    inverse = torch.as_tensor(unique_inverse, device=device)
    with np.errstate(over="ignore", invalid="ignore"):
        points = torch.as_tensor((unique - origin) / scale, dtype=dtype, device=device)
    # squared distances must stay finite in the working dtype
    limit = math.sqrt(torch.finfo(dtype).max) / (4 * math.sqrt(X.shape[1]))
    if not torch.isfinite(points).all() or points.abs().max() > limit:
        with np.errstate(over="ignore"):
            span = float(np.max(high - low))
        name, or_float64 = _name_and_remedy(dtype)
        raise ValueError(
            f"bandwidth={bandwidth:g} is too small for {name}: the data span {span:g} in one "
            f"feature, {span / bandwidth:g} bandwidths, more than it can hold; use a larger "
            f"bandwidth{or_float64}"
        )
    if sample_weight is not None:
        counts = distinct_weights(unique_inverse, sample_weight, len(unique), dtype)
    weights = torch.as_tensor(counts, dtype=dtype, device=device)
    standard = algorithm == "standard"
    grid = grid_transform.FINE
    tolerance = prune_tolerance(dtype)
    merge_tol = merge_tolerance(dtype, blurring=not standard)
    aggregate_cell = source_cell(dtype, algorithm)
    if algorithm == "grid":
        # approximate, after MeanShift++ (Jang and Jiang, CVPR 2021): the points of one
        # grid cell (in bandwidths) start as one weighted point, points that share a
        # cell of half that side after a step are merged, pruning may move a point by a
        # twentieth of the cell per step, and dense steps take a coarser grid transform
        cell = grid_cell / math.sqrt(2.0)
        points, weights, inverse = merge_coincident(points, weights, inverse, cell)
        merge_tol = max(merge_tol, cell / 2)
        tolerance = max(tolerance, cell / 20)
        grid = grid_transform.COARSE
    if standard:
        sources, source_weights = points, weights
    n_iter = 0
    for step in range(max_iter):
        if standard:
            new = weighted_means(points, sources, source_weights, tolerance, batch_size)
        else:
            sources, source_weights = aggregate_sources(points, weights, aggregate_cell)
            if sources is points:
                new = weighted_means(
                    points, points, weights, tolerance, batch_size, same=True, grid=grid
                )
            else:
                new = weighted_means(
                    points, sources, source_weights, tolerance, batch_size, grid=grid
                )
        if tol > 0:
            settled = torch.linalg.vector_norm(new - points, dim=1).max().item() * scale <= tol
        else:  # an exact fixed point, checked without computing the moves
            settled = torch.equal(new, points)
        points = new
        n_iter = step + 1
        points, weights, inverse = merge_coincident(points, weights, inverse, merge_tol)
        if progress is not None:
            progress(step, len(points))
        if settled:
            break
    if not torch.isfinite(points).all():  # pragma: no cover - guarded by the checks above
        raise FloatingPointError("mean-shift produced non-finite points")
    positions = points.cpu().numpy()
    # back to data units in float64: bandwidth * sqrt(2) may not fit the working dtype
    positions = (positions.astype(np.float64) * scale + origin).astype(positions.dtype)
    return positions, inverse.cpu().numpy(), n_iter, unique, unique_inverse


def compile_kernels(dtypes=("float32",)):
    """Compile the CPU kernels of :class:`~skseg.MeanShiftSegmenter` now.

    Those of :func:`skseg.image.merge_small_regions`, which cleans up its label maps, too.

    numba compiles the kernels on their first use in an environment and caches the
    machine code, keyed by the CPU, in the package's ``__pycache__`` folders (in the
    user's cache folder, ``~/.cache/numba`` on Linux, when those cannot be written; in
    ``NUMBA_CACHE_DIR`` when that is set). The first fit in an environment therefore
    spends about 30 seconds compiling on 2 cores (7 more for float64); later fits, in any
    process, load the cache in under a second. Call this once where that wait should not
    fall on a user: when building a container image or an environment, or before timing
    a fit. ``make install`` does.

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}, default=("float32",)
        Working precisions to compile for (the estimator's ``dtype``); each has its own
        machine code.

    Returns
    -------
    float
        Seconds spent, compiling or loading the cache.

    Examples
    --------
    >>> from skseg.meanshift import compile_kernels
    >>> seconds = compile_kernels()
    """
    unknown = [dtype for dtype in dtypes if dtype not in ("float32", "float64")]
    if unknown:  # before any compiling
        raise ValueError(f"dtypes must hold 'float32' or 'float64', got {unknown[0]!r}")
    start = time.perf_counter()
    # two points that collapse into one (so that merging runs too) and one far away
    X = np.array([[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0], [40.0, 40.0, 40.0]])
    for dtype in dtypes:
        run_mean_shift(
            X,
            bandwidth=1.0,
            max_iter=2,
            tol=0.0,
            algorithm="blurring",
            batch_size=512,
            device=torch.device("cpu"),
            dtype=getattr(torch, dtype),
            grid_cell=0.2,
        )
    if "float32" in dtypes:  # the grid that dense float32 steps take (3 features)
        for grid in (grid_transform.FINE, grid_transform.COARSE):
            grid_transform.grid_means(X[:2], X[:2], np.ones(2), grid)
    merge_small_regions(np.array([[0, 1, 0]]), 2)
    return time.perf_counter() - start
