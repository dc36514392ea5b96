"""The grid Gauss transform that does the dense steps of float32 mean-shift on colours."""

import math

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skseg import MeanShiftSegmenter
from skseg.meanshift import _backend as backend
from skseg.meanshift import _grid_transform as grid_transform

from .reference import dense_weighted_means

#: largest move, in bandwidths, that each grid's sampling may cause (measured on dense
#: clouds and photos: about 1e-5 with the exact mode's grid, 1e-3 with the grid mode's)
GRID_ERROR = {grid_transform.FINE: 5e-5, grid_transform.COARSE: 2e-3}
GRIDS = pytest.mark.parametrize("grid", GRID_ERROR, ids=["fine", "coarse"])


def _dense_offsets(queries, sources, weights):
    """Weighted mean of the sources minus each query, every pair in float64, in
    bandwidths (the reference works in scaled units, bandwidths / sqrt(2))."""
    root2 = math.sqrt(2.0)
    means = dense_weighted_means(sources / root2, weights, queries / root2)
    return (means - queries / root2) * root2


def _dense_cloud(n=20_000, seed=0):
    """Colours crowded like a photo's, in bandwidths: a few wide blobs, a thin streak,
    repeated points and a small cluster 3 bandwidths from a big one."""
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(scale=s, size=(n // 4, 3)) + c for s, c in ((1.5, 0), (0.8, 4), (2.5, 2))]
    streak = np.outer(rng.uniform(-6, 6, n // 8), [1.0, 0.3, -0.2])
    small = rng.normal(scale=0.2, size=(30, 3)) + [-7.0, 0.0, 0.0]
    points = np.concatenate([*blobs, streak, small])
    return np.concatenate([points, points[:500]])


@GRIDS
def test_grid_means_match_the_dense_sums(grid):
    points = _dense_cloud(6000)
    weights = np.random.default_rng(1).integers(1, 6, size=len(points)).astype(np.float64)
    expected = _dense_offsets(points, points, weights)
    got = grid_transform.grid_means(points, points, weights, grid)
    assert np.abs(got - expected).max() <= GRID_ERROR[grid]
    # the small cluster is pulled by the big one by far more than that: dropping the
    # far sources would fail above
    alone = _dense_offsets(points[-530:-500], points[-530:-500], weights[-530:-500])
    assert np.abs(alone - expected[-530:-500]).max() > 100 * GRID_ERROR[grid]


@GRIDS
def test_grid_means_with_queries_apart_from_the_sources(grid):
    # the standard algorithm and aggregated sources: queries are not sources
    sources = _dense_cloud(3000)
    weights = np.random.default_rng(2).uniform(0.5, 30, size=len(sources))
    queries = sources[::5] + np.random.default_rng(3).normal(scale=0.3, size=(len(sources[::5]), 3))
    expected = _dense_offsets(queries, sources, weights)
    got = grid_transform.grid_means(queries, sources, weights, grid)
    assert np.abs(got - expected).max() <= GRID_ERROR[grid]


@settings(max_examples=25, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.just(3)),
        elements=st.floats(-8, 8, allow_nan=False, width=64),
    ),
    st.booleans(),
    st.sampled_from([1.0, 0.1, 1e-3]),
    st.sampled_from(list(GRID_ERROR)),
)
def test_grid_means_against_brute_force(points, duplicate, shrink, grid):
    # ties, duplicated points, one-point inputs, points far apart and crowded
    points = points * shrink
    if duplicate:
        points = np.concatenate([points, points[: len(points) // 2 + 1]])
    weights = np.random.default_rng(len(points)).integers(1, 4, size=len(points)) * 1.0
    expected = _dense_offsets(points, points, weights)
    got = grid_transform.grid_means(points, points, weights, grid)
    assert np.abs(got - expected).max() <= GRID_ERROR[grid]


@GRIDS
def test_grid_means_read_only_nodes_they_wrote(grid, monkeypatch):
    # the grids are left uninitialised outside the nodes the points reach: a NaN read
    # from there would spoil the means
    def nan_filled(shape):
        return np.full(shape, np.nan, dtype=np.float32)

    monkeypatch.setattr(grid_transform, "_uninitialised", nan_filled)
    sources = _dense_cloud(3000)
    queries = sources[::7] + np.random.default_rng(5).normal(scale=0.5, size=(len(sources[::7]), 3))
    weights = np.ones(len(sources))
    got = grid_transform.grid_means(queries, sources, weights, grid)
    assert np.abs(got - _dense_offsets(queries, sources, weights)).max() <= GRID_ERROR[grid]


@GRIDS
def test_grid_means_are_deterministic_whatever_the_threads(grid):
    points = _dense_cloud(4000)
    weights = np.ones(len(points))
    first = grid_transform.grid_means(points, points, weights, grid)
    threads = numba.get_num_threads()
    try:
        for n in (1, threads):
            numba.set_num_threads(n)
            np.empty(1000 * n + 13)  # shift the allocator's state
            again = grid_transform.grid_means(points, points, weights, grid)
            np.testing.assert_array_equal(again, first)
    finally:
        numba.set_num_threads(threads)


def _scaled(points):
    return torch.as_tensor(points / math.sqrt(2.0), dtype=torch.float32)


def _takes_grid(points, dtype=torch.float32):
    tensor = _scaled(points).to(dtype)
    weights = torch.ones(len(points), dtype=dtype)
    return backend.takes_grid(tensor, tensor, weights, backend.prune_tolerance(dtype), same=True)


@pytest.mark.parametrize("same", [True, False])
def test_listed_pairs_estimate_the_full_lists(same):
    # the grid is chosen on an estimate from a sample; against the pairs of the full lists
    points = _dense_cloud(40_000)
    sources = _scaled(points)
    queries = sources if same else _scaled(points[::3] + 0.1)
    counts = np.random.default_rng(6).integers(1, 4, len(points))
    weights = torch.as_tensor(counts, dtype=torch.float32)
    tolerance = backend.prune_tolerance(torch.float32)
    src = backend._Tree(sources, weights)
    qry = src if same else backend._Tree(queries, torch.ones(len(queries)))
    ptr, leaves, _, _ = backend.leaf_lists(qry, src, tolerance, own_weight=same)
    sizes = np.diff(qry.starts)[np.repeat(np.arange(len(qry)), np.diff(ptr))]
    full = float(np.dot(sizes, np.diff(src.starts)[leaves]))
    estimate = backend.listed_pairs(queries, sources, weights, tolerance, same=same)
    assert 0.8 * full <= estimate <= 1.25 * full


def test_the_grid_takes_dense_float32_colours_only():
    dense = _dense_cloud(40_000)
    assert _takes_grid(dense)
    assert not _takes_grid(dense, torch.float64)  # float64 keeps its 1e-11 tolerance
    assert not _takes_grid(dense[::40])  # few sources within reach: the direct sums
    spread_out = dense * 30  # a box too large for the grid
    assert not _takes_grid(spread_out)


def _record_grids(monkeypatch):
    """The grid of every later call of ``grid_means``, in a list that fills as they come."""
    grids = []
    grid_means = grid_transform.grid_means

    def recording(queries, sources, weights, grid):
        grids.append(grid)
        return grid_means(queries, sources, weights, grid)

    monkeypatch.setattr(grid_transform, "grid_means", recording)
    return grids


def test_grid_steps_agree_with_float64(monkeypatch):
    # a whole fit whose dense first steps take the grid, against the float64 mode (which
    # the other tests check against a plain per-point loop)
    X = _dense_cloud(40_000, seed=4) * 2.5 + [50.0, 0.0, 0.0]
    grids = _record_grids(monkeypatch)
    float32 = MeanShiftSegmenter(device="cpu").fit(X)
    assert grids, "the test must exercise the grid"
    float64 = MeanShiftSegmenter(device="cpu", dtype="float64").fit(X)
    diff = np.abs(float32.shifted_points_ - float64.shifted_points_).max(axis=1)
    assert (diff <= 5e-2).mean() >= 0.9999
    assert len(float32.cluster_centers_) == len(float64.cluster_centers_)


def test_standard_algorithm_on_the_grid_agrees_with_the_direct_sums(monkeypatch):
    # queries apart from the sources in every step; the direct kernels, which the other
    # tests check against float64, are the reference (float64 takes minutes here)
    X = _dense_cloud(20_000, seed=4) * 2.5 + [50.0, 0.0, 0.0]
    grids = _record_grids(monkeypatch)
    on_grid = MeanShiftSegmenter(device="cpu", algorithm="standard").fit(X)
    assert grids, "the test must exercise the grid"
    monkeypatch.setattr(backend, "takes_grid", lambda *args, **kwargs: False)
    direct = MeanShiftSegmenter(device="cpu", algorithm="standard").fit(X)
    diff = np.abs(on_grid.shifted_points_ - direct.shifted_points_).max(axis=1)
    assert (diff <= 5e-2).mean() >= 0.9999
    assert len(on_grid.cluster_centers_) == len(direct.cluster_centers_)


@pytest.mark.parametrize("n_features", [2, 5])
def test_other_feature_counts_take_the_direct_sums(n_features):
    assert not _takes_grid(np.random.default_rng(0).normal(size=(20_000, n_features)))


def test_grid_mode_takes_the_coarse_grid(monkeypatch):
    grids = _record_grids(monkeypatch)
    X = _dense_cloud(40_000, seed=4) * 2.5
    MeanShiftSegmenter(algorithm="grid", device="cpu").fit(X)
    assert grids and set(grids) == {grid_transform.COARSE}
    grids.clear()
    MeanShiftSegmenter(device="cpu").fit(X)
    assert grids and set(grids) == {grid_transform.FINE}
