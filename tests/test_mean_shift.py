import subprocess
import sys

import joblib
import numba
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from skseg import MeanShiftSegmenter
from skseg.meanshift import _backend as backend
from skseg.meanshift import _kernels as kernels
from skseg.meanshift import compile_kernels

from .reference import (
    blurring_mean_shift_reference,
    dense_weighted_means,
    standard_mean_shift_reference,
)


@pytest.fixture(scope="module")
def coffee_reference(coffee_lab_small):
    return blurring_mean_shift_reference(coffee_lab_small)


def test_blurring_float32_matches_reference(coffee_lab_small, coffee_reference):
    ms = MeanShiftSegmenter(device="cpu").fit(coffee_lab_small)
    assert ms.shifted_points_.dtype == np.float32
    assert ms.n_iter_ == 20
    np.testing.assert_allclose(ms.shifted_points_, coffee_reference, rtol=0, atol=1e-3)


def test_blurring_float64_matches_reference(coffee_lab_small, coffee_reference):
    ms = MeanShiftSegmenter(device="cpu", dtype="float64").fit(coffee_lab_small)
    np.testing.assert_allclose(ms.shifted_points_, coffee_reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bandwidth", [1.0, 6.0])
def test_blurring_matches_reference_other_bandwidths(coffee_lab_small, bandwidth):
    X = coffee_lab_small[::4]
    expected = blurring_mean_shift_reference(X, bandwidth=bandwidth, n_steps=10)
    ms = MeanShiftSegmenter(bandwidth, max_iter=10, device="cpu").fit(X)
    np.testing.assert_allclose(ms.shifted_points_, expected, rtol=0, atol=1e-3)


def test_standard_matches_reference(coffee_lab_small):
    X = coffee_lab_small[::3]
    expected = standard_mean_shift_reference(X, bandwidth=2.5, n_steps=20)
    ms = MeanShiftSegmenter(algorithm="standard", device="cpu", dtype="float64").fit(X)
    np.testing.assert_allclose(ms.shifted_points_, expected, rtol=0, atol=1e-9)
    ms32 = MeanShiftSegmenter(algorithm="standard", device="cpu").fit(X)
    np.testing.assert_allclose(ms32.shifted_points_, expected, rtol=0, atol=1e-3)


def _clusters_far_apart_of_very_different_sizes(dim=2):
    # a 2,000-point cluster 4.5 scaled units from a 40-point one: the big cluster's weight
    # at that distance (2000 * exp(-20)) still moves the small one's points measurably,
    # while far-apart clusters elsewhere must be pruned
    rng = np.random.default_rng(0)
    big = rng.normal(scale=0.3, size=(2000, dim))
    small = rng.normal(scale=0.3, size=(40, dim)) + np.r_[4.5, np.zeros(dim - 1)]
    others = [c + rng.normal(scale=0.5, size=(150, dim)) for c in rng.uniform(20, 60, (8, dim))]
    return np.concatenate([big, small, *others])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", [2, 5])
def test_pruned_leaf_lists_stay_within_the_tolerance(dtype, dim, monkeypatch):
    monkeypatch.setattr(backend, "LEAF_SIZE", 64)  # enough leaves to prune
    Y = _clusters_far_apart_of_very_different_sizes(dim)
    w = np.random.default_rng(1).integers(1, 4, size=len(Y)).astype(np.float64)
    expected = dense_weighted_means(Y, w)
    tolerance = backend.prune_tolerance(dtype)
    tree = backend._Tree(torch.as_tensor(Y, dtype=dtype), torch.as_tensor(w, dtype=dtype))
    ptr, leaves, _, _ = backend.leaf_lists(tree, tree, tolerance)
    assert len(leaves) < 0.5 * len(tree) ** 2, "the test data must exercise pruning"
    got = backend.weighted_means(
        torch.as_tensor(Y, dtype=dtype),
        torch.as_tensor(Y, dtype=dtype),
        torch.as_tensor(w, dtype=dtype),
        tolerance,
        512,
        same=True,
    ).numpy()
    moved = np.linalg.norm(got - expected, axis=1)
    rounding = 1e-4 if dtype == torch.float32 else 1e-12
    assert moved.max() <= tolerance + rounding
    # the small cluster really is pulled by the big one (by 7e-4 scaled units, far above
    # the float64 tolerance): a pruning rule that dropped it would fail above
    alone = dense_weighted_means(Y[2000:2040], w[2000:2040])
    assert np.abs(alone - expected[2000:2040]).max() > 5e-4


def test_torch_kernel_matches_the_fused_kernel(coffee_lab_small, monkeypatch):
    # the torch kernel is what runs on CUDA: check it on the CPU, in small column blocks
    X = coffee_lab_small[::2]
    fused = MeanShiftSegmenter(max_iter=5, device="cpu", dtype="float64").fit(X)
    monkeypatch.setattr(backend.kernels, "MAX_FEATURES", 0)
    monkeypatch.setattr(backend, "MAX_COLUMNS", 64)
    blocked = MeanShiftSegmenter(max_iter=5, batch_size=8, device="cpu", dtype="float64")
    blocked.fit(X)
    np.testing.assert_allclose(blocked.shifted_points_, fused.shifted_points_, atol=1e-9)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_torch_kernel_with_sample_weights_matches_reference(coffee_lab_small, device, monkeypatch):
    # the path CUDA takes, with weights spanning 1e-3 to 1e3
    X = coffee_lab_small[::8]
    weights = 10.0 ** np.random.default_rng(0).uniform(-3, 3, size=len(X))
    expected = blurring_mean_shift_reference(X, n_steps=5, sample_weight=weights)
    monkeypatch.setattr(backend.kernels, "MAX_FEATURES", 0)
    ms = MeanShiftSegmenter(max_iter=5, device=device, dtype="float64")
    ms.fit(X, sample_weight=weights)
    np.testing.assert_allclose(ms.shifted_points_, expected, rtol=0, atol=1e-9)


def test_standard_pruning_against_dense_queries(monkeypatch):
    monkeypatch.setattr(backend, "LEAF_SIZE", 64)  # enough leaves to prune
    Y = _clusters_far_apart_of_very_different_sizes()
    w = np.ones(len(Y))
    queries = Y[::7] + 0.2
    expected = dense_weighted_means(Y, w, queries)
    tolerance = backend.prune_tolerance(torch.float64)
    got = backend.weighted_means(
        torch.as_tensor(queries), torch.as_tensor(Y), torch.as_tensor(w), tolerance, 512
    ).numpy()
    assert np.linalg.norm(got - expected, axis=1).max() <= tolerance + 1e-12


def test_leaf_pruning_memory_grows_with_the_block_not_the_points(monkeypatch):
    # the query-leaf x source-leaf arrays are quadratic in the points if built at once
    # (32 GiB at 6 million pixels); they must be built one block of queries at a time
    X = np.random.default_rng(0).normal(scale=20, size=(12000, 3))
    shapes = []
    list_block = backend.kernels.leaf_list_block

    def recording_list_block(*boxes):
        out = list_block(*boxes)
        shapes.append(out[0].shape)
        return out

    monkeypatch.setattr(backend.kernels, "leaf_list_block", recording_list_block)
    monkeypatch.setattr(backend, "LEAF_SIZE", 64)  # more leaves than one block of lists
    MeanShiftSegmenter(max_iter=1, device="cpu").fit(X)
    n_leaves = len(backend.kd_leaves(X, 64)[1]) - 1
    assert n_leaves > backend.LIST_BLOCK
    assert shapes and all(rows <= backend.LIST_BLOCK for rows, _ in shapes)
    assert max(columns for _, columns in shapes) == n_leaves


def test_kd_leaves_is_a_partition():
    points = np.random.default_rng(1).normal(size=(1000, 3))
    order, starts = backend.kd_leaves(points, leaf_size=50)
    assert sorted(order) == list(range(1000))
    assert starts[0] == 0 and starts[-1] == 1000
    assert np.diff(starts).max() <= 50


def test_merge_coincident_keeps_weighted_means():
    points = torch.tensor([[0.0, 0.0], [1e-7, 0.0], [5.0, 5.0]], dtype=torch.float64)
    weights = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    inverse = torch.tensor([0, 1, 2, 2])
    merged, w, inv = backend.merge_coincident(points, weights, inverse, 1e-4)
    assert len(merged) == 2
    np.testing.assert_allclose(w.sum(), 6.0)
    assert inv[0] == inv[1] != inv[2] == inv[3]
    np.testing.assert_allclose(merged[inv[0]].numpy(), [0.75e-7, 0.0])


def test_aggregate_sources_sums_each_cell_at_its_mean():
    rng = np.random.default_rng(0)
    cell = 0.5
    # 40 crowded cells of 5 points each, and 10 points alone in theirs
    centres = rng.integers(-50, 50, size=(50, 3)) * 4 * cell
    members = np.repeat(centres, [5] * 40 + [1] * 10, axis=0)
    points = members + rng.uniform(-0.4 * cell, 0.4 * cell, size=members.shape)
    weights = rng.uniform(0.5, 3.0, size=len(points))
    points_t, weights_t = torch.as_tensor(points), torch.as_tensor(weights)
    sources, source_weights = backend.aggregate_sources(points_t, weights_t, cell)
    # numpy reference: the weighted mean and total weight of every cell
    cell_of = np.unique(np.round(points / cell), axis=0, return_inverse=True)[1].ravel()
    totals = np.bincount(cell_of, weights=weights)
    means = np.stack([np.bincount(cell_of, weights=weights * points[:, k]) for k in range(3)], 1)
    means /= totals[:, None]
    order = np.lexsort(means.T)
    got = sources.numpy()
    got_order = np.lexsort(got.T)
    np.testing.assert_allclose(got[got_order], means[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(source_weights.numpy()[got_order], totals[order], rtol=1e-12)
    # too little to gain: the sources are the points themselves
    same = backend.aggregate_sources(points_t, weights_t, cell, max_fraction=0.2)
    assert same[0] is points_t and same[1] is weights_t


@pytest.mark.parametrize("distance", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_aggregated_sources_change_the_gaussian_sums_in_the_second_order(distance):
    # points crowded within one cell, seen from a query at a distance of their mean: the
    # aggregate keeps the sums within |delta|**2 * (2 r**2 + 1) of the exact ones
    rng = np.random.default_rng(1)
    cell = backend.source_cell(torch.float32, "blurring")
    points = rng.uniform(-cell / 2, cell / 2, size=(64, 3))
    weights = rng.uniform(0.5, 2.0, size=64)
    mean = weights @ points / weights.sum()
    query = mean + distance * np.array([0.6, 0.0, 0.8])

    def sums(sources, source_weights):
        kernel = source_weights * np.exp(-((query - sources) ** 2).sum(1))
        return kernel.sum(), kernel @ sources

    exact_weight, exact_moment = sums(points, weights)
    aggregate_weight, aggregate_moment = sums(mean[None], np.array([weights.sum()]))
    delta2 = ((points - mean) ** 2).sum(1).max()
    bound = delta2 * (2 * distance**2 + 1)
    assert abs(aggregate_weight / exact_weight - 1) <= bound
    # the mean it pulls towards moves by a second-order amount too
    shift = np.linalg.norm(aggregate_moment / aggregate_weight - exact_moment / exact_weight)
    assert shift <= 2 * delta2 * (distance + 1)


def test_blurring_sums_crowded_sources_as_one_and_keeps_its_answer(monkeypatch):
    # tight blobs crowd within a source cell after a few steps; the float32 result with
    # the aggregated sources stays on the float64 reference loop's answer
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(c, 1.5, size=(150, 3)) for c in (0.0, 6.0, 14.0)])
    calls = []
    aggregate = backend.aggregate_sources

    def spy(points, weights, cell, **kwargs):
        sources, source_weights = aggregate(points, weights, cell, **kwargs)
        calls.append((len(points), len(sources)))
        return sources, source_weights

    monkeypatch.setattr(backend, "aggregate_sources", spy)
    ms = MeanShiftSegmenter(device="cpu").fit(X)
    assert any(n_sources < n_points for n_points, n_sources in calls)
    expected = blurring_mean_shift_reference(X)
    np.testing.assert_allclose(ms.shifted_points_, expected, rtol=0, atol=1e-3)


def test_tol_stops_early_and_max_iter_zero_keeps_points(coffee_lab_small):
    X = coffee_lab_small[::8]
    early = MeanShiftSegmenter(tol=0.5, device="cpu").fit(X)
    assert 1 <= early.n_iter_ < 20
    still = MeanShiftSegmenter(max_iter=0, device="cpu", dtype="float64").fit(X)
    assert still.n_iter_ == 0
    np.testing.assert_allclose(still.shifted_points_, X, atol=1e-12)


def test_segments_follow_the_cluster_radius_rule():
    X = np.array([[0.0], [0.1], [3.0], [3.1], [40.0]])
    # after shifting with a tiny bandwidth nothing moves; groups are decided by the radius
    apart = MeanShiftSegmenter(bandwidth=0.05, cluster_radius=10.0).fit(X)
    assert len(apart.cluster_centers_) == 3  # 0.5-wide gaps joined, 2.9 and 36.9 not
    joined = MeanShiftSegmenter(bandwidth=0.05, cluster_radius=100.0).fit(X)
    assert len(joined.cluster_centers_) == 2


def test_segment_centres_are_means_over_the_samples():
    # three samples at 0 and one at 0.4 form one segment: its centre is the mean over the
    # four samples (0.1), not over the two distinct positions (0.2)
    X = np.array([[0.0], [0.0], [0.4], [0.0], [30.0]])
    ms = MeanShiftSegmenter(bandwidth=1.0, max_iter=0, dtype="float64").fit(X)
    np.testing.assert_allclose(ms.cluster_centers_, [[0.1], [30.0]], atol=1e-12)
    np.testing.assert_array_equal(ms.labels_, [0, 0, 0, 0, 1])


def test_predict_transform_and_fit_transform_agree(coffee_lab_small):
    X = coffee_lab_small
    ms = MeanShiftSegmenter(device="cpu").fit(X)
    np.testing.assert_array_equal(ms.predict(X), ms.labels_)
    distances = ((X[:, None, :] - ms.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ms.labels_, distances.argmin(1))
    posterized = ms.transform(X)
    np.testing.assert_array_equal(posterized, ms.cluster_centers_[ms.labels_])
    np.testing.assert_array_equal(MeanShiftSegmenter(device="cpu").fit_transform(X), posterized)
    assert np.bincount(ms.labels_).min() > 0  # no empty segment


def test_many_segments_are_labelled_by_their_nearest_centre():
    # a bandwidth far below the spacing leaves every sample its own segment: more
    # centres than _nearest compares by brute force, so the k-d tree labels them
    rng = np.random.default_rng(0)
    X = np.round(rng.random((1500, 3)) * 100, 1) + 1e6  # far from the origin too
    X = np.unique(X, axis=0)
    ms = MeanShiftSegmenter(bandwidth=1e-3, device="cpu", verbose=0).fit(X)
    assert len(ms.cluster_centers_) == len(X)
    Y = X + rng.normal(0, 0.2, X.shape)
    for samples, labels in ((X, ms.labels_), (Y, ms.predict(Y))):
        distances = ((samples[:, None, :] - ms.cluster_centers_[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(labels, distances.argmin(1))


def test_transform_keeps_the_feature_names(coffee_lab_small):
    # transform replaces each sample by its centre, feature for feature, so the names carry
    ms = MeanShiftSegmenter(max_iter=3, device="cpu").fit(coffee_lab_small[:50])
    np.testing.assert_array_equal(ms.get_feature_names_out(), ["x0", "x1", "x2"])
    np.testing.assert_array_equal(ms.get_feature_names_out(["L", "a", "b"]), ["L", "a", "b"])
    with pytest.raises(ValueError, match="input_features"):
        ms.get_feature_names_out(["L", "a"])
    assert ms.set_output(transform="default") is ms


def test_verbose_shows_progress_and_quiet_is_silent(coffee_lab_small, capsys):
    MeanShiftSegmenter(max_iter=3, verbose=True, device="cpu").fit(coffee_lab_small[:50])
    assert "mean-shift" in capsys.readouterr().err
    MeanShiftSegmenter(max_iter=3, device="cpu").fit(coffee_lab_small[:50])
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_n_jobs_sets_the_threads_of_fit_and_not_its_result(coffee_lab_small, monkeypatch):
    seen = []
    weighted_means = backend.weighted_means

    def recording(*args, **kwargs):
        seen.append((numba.get_num_threads(), torch.get_num_threads()))
        return weighted_means(*args, **kwargs)

    monkeypatch.setattr(backend, "weighted_means", recording)
    before = numba.get_num_threads(), torch.get_num_threads()
    every = min(joblib.cpu_count(), numba.config.NUMBA_NUM_THREADS)
    fits = {}
    for n_jobs in (1, -1, None):
        seen.clear()
        fits[n_jobs] = MeanShiftSegmenter(max_iter=5, n_jobs=n_jobs, device="cpu").fit(
            coffee_lab_small
        )
        # torch's own operations run on one thread beside the CPU kernels
        expected = {1: (1, 1), -1: (every, 1), None: (before[0], 1)}[n_jobs]
        assert set(seen) == {expected}
        assert (numba.get_num_threads(), torch.get_num_threads()) == before
    for n_jobs in (-1, None):
        np.testing.assert_array_equal(fits[n_jobs].shifted_points_, fits[1].shifted_points_)
        np.testing.assert_array_equal(fits[n_jobs].labels_, fits[1].labels_)
    with pytest.raises(ValueError, match="n_jobs=0"):
        MeanShiftSegmenter(n_jobs=0).fit(coffee_lab_small)
    assert (numba.get_num_threads(), torch.get_num_threads()) == before
    # more features than the CPU kernels take: torch's matrix products get the threads
    seen.clear()
    wide = np.hstack([coffee_lab_small[::4], coffee_lab_small[::4]])
    MeanShiftSegmenter(max_iter=2, n_jobs=-1, device="cpu").fit(wide)
    assert set(seen) == {(every, every)}
    assert (numba.get_num_threads(), torch.get_num_threads()) == before


def test_fit_restores_torch_threads_after_an_error(monkeypatch):
    if torch.get_num_threads() == 1:
        pytest.skip("torch runs on one thread here")
    before = torch.get_num_threads()

    def failing(*args, **kwargs):
        assert torch.get_num_threads() == 1
        raise KeyboardInterrupt

    monkeypatch.setattr(backend, "weighted_means", failing)
    with pytest.raises(KeyboardInterrupt):
        MeanShiftSegmenter(device="cpu").fit(np.arange(6.0).reshape(3, 2))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "X, message",
    [
        ([[0.0, np.nan]], "NaN"),
        ([[0.0, np.inf]], "infinity"),
        (np.empty((0, 3)), "0 sample"),
        ([1.0, 2.0, 3.0], "Expected 2D array"),
        (np.zeros((2, 2, 3)), "looks like an image.*rgb_to_features"),
        ([["a", "b"]], "string"),
        (np.array([[1 + 1j, 0]]), "Complex"),
    ],
)
def test_bad_input_names_the_problem(X, message):
    with pytest.raises(ValueError, match=message):
        MeanShiftSegmenter().fit(X)


@pytest.mark.parametrize("bandwidth", [0.0, -1.0])
def test_non_positive_bandwidth_is_rejected(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        MeanShiftSegmenter(bandwidth=bandwidth).fit([[0.0], [1.0]])


def test_predict_checks_the_number_of_features():
    ms = MeanShiftSegmenter().fit([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="features"):
        ms.predict([[0.0, 0.0, 0.0]])
    for method in (ms.predict, ms.transform):
        with pytest.raises(ValueError, match="looks like an image"):
            method(np.zeros((4, 4, 2)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_cuda_without_gpu_says_so(device):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        MeanShiftSegmenter(device=device).fit([[0.0], [1.0]])


def test_device_takes_torch_devices_and_names_unknown_ones():
    X = [[0.0], [0.1], [5.0]]
    ms = MeanShiftSegmenter(device=torch.device("cpu")).fit(X)
    assert ms.device_ == torch.device("cpu")
    np.testing.assert_array_equal(ms.labels_, MeanShiftSegmenter(device="cpu").fit(X).labels_)
    assert clone(ms).device == torch.device("cpu")
    with pytest.raises(ValueError, match="device='tpu' is not a device torch knows"):
        MeanShiftSegmenter(device="tpu").fit(X)
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        MeanShiftSegmenter(device=0).fit(X)


@pytest.mark.cuda
def test_cuda_matches_reference(coffee_lab_small, coffee_reference):
    ms = MeanShiftSegmenter(device="cuda:0").fit(coffee_lab_small)
    assert ms.device_.type == "cuda"
    np.testing.assert_allclose(ms.shifted_points_, coffee_reference, rtol=0, atol=1e-3)
    ms64 = MeanShiftSegmenter(device="cuda", dtype="float64").fit(coffee_lab_small)
    np.testing.assert_allclose(ms64.shifted_points_, coffee_reference, rtol=0, atol=1e-9)


def test_pipeline_and_grid_search_over_bandwidth(coffee_lab_small):
    X = coffee_lab_small[::4]
    pipe = make_pipeline(FunctionTransformer(), MeanShiftSegmenter(device="cpu"))
    labels = pipe.fit_predict(X)
    assert labels.shape == (len(X),)
    search = GridSearchCV(
        MeanShiftSegmenter(max_iter=10, device="cpu", random_state=0),
        param_grid={"bandwidth": [0.5, 4.0, 200.0]},
        cv=2,
    )
    search.fit(X)
    # a huge bandwidth makes one segment, which scores the worst silhouette (-1)
    scores = dict(zip([0.5, 4.0, 200.0], search.cv_results_["mean_test_score"]))
    assert scores[200.0] == -1.0
    assert search.best_params_["bandwidth"] != 200.0


def test_clustering_separates_blobs_at_a_fitting_bandwidth():
    # the property sklearn's check_clustering tests, with a bandwidth suited to its data
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import StandardScaler

    X, y = make_blobs(n_samples=50, random_state=1)
    X = StandardScaler().fit_transform(X)
    ms = MeanShiftSegmenter(bandwidth=0.3, device="cpu").fit(X)
    assert ms.labels_.dtype.kind == "i"
    assert adjusted_rand_score(y, ms.labels_) > 0.4
    np.testing.assert_array_equal(ms.fit_predict(X), ms.labels_)


@pytest.mark.parametrize("n_features", [3, 5])
def test_grid_mode_agrees_with_exact_on_blobs(n_features):
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    X, _ = make_blobs(n_samples=3000, n_features=n_features, centers=6, cluster_std=2.0,
                      center_box=(-40, 40), random_state=0)
    exact = MeanShiftSegmenter(device="cpu").fit(X)
    grid = MeanShiftSegmenter(algorithm="grid", device="cpu").fit(X)
    assert len(np.unique(grid.shifted_points_, axis=0)) < len(X)
    assert adjusted_rand_score(exact.labels_, grid.labels_) >= 0.95


def test_grid_mode_bins_before_shifting():
    # two points in one cell of side bandwidth / 5 (0.5) start as one point: with
    # max_iter=0 both sit at their mean, which the exact mode never does
    X = np.array([[0.1, 0.1], [0.2, 0.2], [30.0, 30.0]])
    grid = MeanShiftSegmenter(algorithm="grid", max_iter=0, dtype="float64").fit(X)
    np.testing.assert_allclose(grid.shifted_points_[0], grid.shifted_points_[1])
    np.testing.assert_allclose(grid.shifted_points_[0], [0.15, 0.15], atol=1e-9)
    np.testing.assert_allclose(grid.shifted_points_[2], X[2], atol=1e-9)
    # cells of a fiftieth of the bandwidth (0.05) keep them apart
    fine = MeanShiftSegmenter(algorithm="grid", grid_cell=0.02, max_iter=0, dtype="float64")
    np.testing.assert_allclose(fine.fit(X).shifted_points_, X, atol=1e-9)


def test_grid_mode_merges_after_every_step():
    # a blob contracts under blurring steps: after each one, grid mode merges the points
    # that share a cell of half its side, while exact mode keeps distinct points apart
    X = np.random.default_rng(0).normal(0, 2.0, (400, 2))

    def distinct(**params):
        ms = MeanShiftSegmenter(dtype="float64", **params).fit(X)
        return len(np.unique(ms.shifted_points_, axis=0))

    assert distinct(algorithm="grid", grid_cell=0.1, max_iter=0) > 300
    assert distinct(algorithm="grid", grid_cell=0.1, max_iter=2) < 40
    assert distinct(max_iter=2) == 400


def test_grid_mode_with_tiny_cells_is_the_exact_mode():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1.5, (150, 3)), rng.normal(6, 1.5, (150, 3))])
    exact = MeanShiftSegmenter(bandwidth=1.0, dtype="float64").fit(X)
    grid = MeanShiftSegmenter(bandwidth=1.0, algorithm="grid", grid_cell=1e-9, dtype="float64")
    np.testing.assert_allclose(grid.fit(X).shifted_points_, exact.shifted_points_, atol=1e-9)
    np.testing.assert_array_equal(grid.labels_, exact.labels_)


def test_grid_cell_must_be_positive():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="grid_cell"):
        MeanShiftSegmenter(algorithm="grid", grid_cell=0).fit(np.zeros((3, 2)))


@numba.njit(nogil=True)
def _take_every_item(counter, taken, fail_at):
    while True:
        item = kernels._next_item(counter)
        if item >= len(taken):
            break
        if item == fail_at:
            raise ValueError("item failed")
        taken[item] += 1


@pytest.mark.parametrize("n_items", [0, 1, 7, 200_000])
def test_in_threads_hands_out_every_item_once(n_items):
    before = numba.get_num_threads()
    try:
        for n_threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(n_threads)
            taken = np.zeros(n_items, dtype=np.int64)
            kernels.in_threads(_take_every_item, n_items, taken, -1)
            np.testing.assert_array_equal(taken, 1)
            if n_items:
                with pytest.raises(ValueError, match="item failed"):
                    kernels.in_threads(_take_every_item, n_items, taken, n_items - 1)
    finally:
        numba.set_num_threads(before)


def test_compile_kernels_compiles_what_fits_use():
    # a fresh process: after compile_kernels, fits of every kind load or compile nothing
    code = """
import numba, numpy as np
from skseg import MeanShiftSegmenter, image
from skseg.meanshift import _kernels, compile_kernels
def compiled():
    return {name: set(f.signatures) for module in (_kernels, image)
            for name, f in vars(module).items()
            if isinstance(f, numba.core.dispatcher.Dispatcher)}
compile_kernels(("float32", "float64"))
before = compiled()
rng = np.random.RandomState(0)
for d in (3, 5):
    X = rng.rand(600, d) * 20
    for dtype in ("float32", "float64"):
        for algorithm in ("blurring", "standard", "grid"):
            MeanShiftSegmenter(algorithm=algorithm, dtype=dtype, device="cpu").fit(X).predict(X)
image.merge_small_regions(rng.randint(0, 3, size=(30, 20)).astype(np.uint8), 5)
after = compiled()
assert after == before, {k: after[k] - before[k] for k in after if after[k] != before[k]}
assert any(before.values())
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    with pytest.raises(ValueError, match="float16"):
        compile_kernels(("float16",))
