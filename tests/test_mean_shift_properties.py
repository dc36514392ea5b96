"""Hypothesis properties of mean-shift that hold for any input."""

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba import njit

from skseg import MeanShiftSegmenter
from skseg.meanshift import _backend as backend
from skseg.meanshift import _kernels as kernels

from .reference import blurring_mean_shift_reference, standard_mean_shift_reference

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def point_sets(draw, max_points=40):
    n = draw(st.integers(1, max_points))
    d = draw(st.integers(1, 3))
    coords = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=64)
    return draw(arrays(np.float64, (n, d), elements=coords))


def fit(X, sample_weight=None, **params):
    params = {"max_iter": 8, "device": "cpu", "dtype": "float64", **params}
    return MeanShiftSegmenter(**params).fit(X, sample_weight=sample_weight)


@SETTINGS
@given(
    point_sets(), st.randoms(use_true_random=False), st.sampled_from(["blurring", "grid"])
)
def test_permutation_equivariance(X, rnd, algorithm):
    perm = np.array(rnd.sample(range(len(X)), len(X)))
    ms = fit(X, algorithm=algorithm)
    permuted = fit(X[perm], algorithm=algorithm)
    np.testing.assert_allclose(permuted.shifted_points_, ms.shifted_points_[perm])


@SETTINGS
@given(point_sets(), st.floats(-100, 100), st.sampled_from(["blurring", "standard"]))
def test_translation_equivariance(X, offset, algorithm):
    ms = fit(X, algorithm=algorithm)
    moved = fit(X + offset, algorithm=algorithm)
    np.testing.assert_allclose(moved.shifted_points_, ms.shifted_points_ + offset, atol=1e-6)


@SETTINGS
@given(point_sets(max_points=25), st.data(), st.sampled_from(["blurring", "standard"]))
def test_sample_weights_against_the_weighted_reference(X, data, algorithm):
    weights = data.draw(
        arrays(np.float64, len(X), elements=st.floats(1e-3, 1e3, allow_subnormal=False))
    )
    reference = {
        "blurring": blurring_mean_shift_reference,
        "standard": standard_mean_shift_reference,
    }[algorithm](X, n_steps=8, sample_weight=weights)
    ms = MeanShiftSegmenter(max_iter=8, device="cpu", dtype="float64", algorithm=algorithm)
    ms.fit(X, sample_weight=weights)
    np.testing.assert_allclose(ms.shifted_points_, reference, rtol=0, atol=1e-8)


@SETTINGS
@given(
    point_sets(),
    st.data(),
    st.sampled_from(["blurring", "standard", "grid"]),
    st.sampled_from(["float32", "float64"]),
)
def test_integer_weights_repeat_and_zero_weights_remove_samples(X, data, algorithm, dtype):
    weights = data.draw(arrays(np.int64, len(X), elements=st.integers(0, 4)))
    assume(weights.any())
    params = {"algorithm": algorithm, "dtype": dtype}
    weighted = fit(X, sample_weight=weights, **params)
    repeated = fit(np.repeat(X, weights, axis=0), **params)
    # the same centres, bit for bit, but where they are subnormal: there the weights'
    # scaling by a power of two rounds (a difference of 5e-324 was found)
    np.testing.assert_allclose(
        weighted.cluster_centers_, repeated.cluster_centers_, rtol=0, atol=np.finfo(float).tiny
    )
    np.testing.assert_array_equal(weighted.predict(X), repeated.predict(X))
    np.testing.assert_array_equal(weighted.labels_, weighted.predict(X))
    kept = weights > 0
    np.testing.assert_array_equal(
        weighted.shifted_points_[kept], repeated.shifted_points_[np.cumsum(weights)[kept] - 1]
    )
    centres = weighted.cluster_centers_.astype(weighted.shifted_points_.dtype)
    np.testing.assert_array_equal(
        weighted.shifted_points_[~kept], centres[weighted.labels_[~kept]]
    )


@SETTINGS
@given(
    point_sets(),
    st.data(),
    st.sampled_from([1e-300, 1e-30, 1e-3, 1e30, 1e307]),
    st.sampled_from(["blurring", "grid"]),
)
def test_multiplying_all_weights_changes_nothing(X, data, factor, algorithm):
    weights = data.draw(arrays(np.float64, len(X), elements=st.floats(0.5, 8.0)))
    ms = fit(X, sample_weight=weights, algorithm=algorithm)
    scaled = fit(X, sample_weight=weights * factor, algorithm=algorithm)
    np.testing.assert_allclose(scaled.shifted_points_, ms.shifted_points_, atol=1e-9)
    # the same segments (their order may swap where two centres tie in a coordinate)
    np.testing.assert_allclose(
        scaled.cluster_centers_[scaled.labels_], ms.cluster_centers_[ms.labels_], atol=1e-9
    )


@SETTINGS
@given(point_sets(), st.floats(0.1, 10.0))
def test_scaling_data_and_bandwidth_scales_the_result(X, factor):
    ms = fit(X, bandwidth=2.5)
    scaled = fit(X * factor, bandwidth=2.5 * factor)
    np.testing.assert_allclose(
        scaled.shifted_points_, ms.shifted_points_ * factor, atol=1e-6 * factor
    )


@SETTINGS
@given(
    point_sets(),
    st.sampled_from(["blurring", "standard", "grid"]),
    st.sampled_from(["float32", "float64"]),
)
def test_results_stay_inside_the_bounding_box(X, algorithm, dtype):
    shifted = fit(X, algorithm=algorithm, dtype=dtype).shifted_points_
    slack = 1e-4 if dtype == "float32" else 1e-9
    assert (shifted >= X.min(axis=0) - slack).all()
    assert (shifted <= X.max(axis=0) + slack).all()


@SETTINGS
@given(point_sets(max_points=20), st.integers(1, 4), st.sampled_from(["float32", "float64"]))
def test_identical_inputs_stay_identical(X, copies, dtype):
    doubled = np.concatenate([X] * (copies + 1))
    shifted = fit(doubled, dtype=dtype).shifted_points_.reshape(copies + 1, len(X), -1)
    for copy in shifted[1:]:
        np.testing.assert_array_equal(copy, shifted[0])


@SETTINGS
@given(point_sets(), st.floats(0.2, 20.0))
def test_segments_at_most_samples_and_predict_matches_labels(X, bandwidth):
    ms = fit(X, bandwidth=bandwidth, dtype="float32")
    assert 1 <= len(ms.cluster_centers_) <= len(X)
    assert ms.labels_.shape == (len(X),)
    np.testing.assert_array_equal(ms.predict(X), ms.labels_)
    assert set(ms.labels_) == set(range(len(ms.cluster_centers_)))


@SETTINGS
@given(
    # exponents of the pair loops: log-weights (up to ln(n)) minus squared distances
    arrays(np.float32, st.integers(1, 300), elements=st.floats(-87, 13, width=32)),
)
def test_fused_exponential_against_numpy(x):
    out = np.empty_like(x)
    kernels.exp_kernel(x, out)
    expected = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(out, expected, rtol=5e-7, atol=0)


@SETTINGS
@given(
    # the dot form's base-2 exponents, from the lowest it keeps (2**-125 is normal)
    arrays(np.float32, st.integers(1, 300), elements=st.floats(-125, 19, width=32)),
)
def test_dot_form_power_of_two_against_numpy(x):
    out = np.empty_like(x)
    kernels.exp_kernel(x, out, dot=True)
    expected = np.exp2(x.astype(np.float64))
    np.testing.assert_allclose(out, expected, rtol=5e-7, atol=0)


@SETTINGS
@given(
    point_sets(max_points=60),
    st.integers(1, 5),
    st.sampled_from([torch.float32, torch.float64]),
    st.booleans(),
    st.sampled_from([4.0, 40.0]),
)
def test_fused_kernel_against_brute_force(X, extra_dims, dtype, duplicate, shrink):
    # any dimension up to five, ties and duplicated points, one-point inputs; shrunk by
    # 40, every float32 point is within 2 scaled units of its leaf's centre (dot form)
    rng = np.random.default_rng(len(X))
    Y = np.hstack([X, rng.normal(size=(len(X), extra_dims))])[:, :5] / shrink
    if duplicate:
        Y = np.concatenate([Y, Y[: len(Y) // 2 + 1]])
    w = rng.integers(1, 4, size=len(Y)).astype(np.float64)
    K = np.exp(-((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)) * w
    expected = K @ Y / K.sum(1, keepdims=True)
    tolerance = backend.prune_tolerance(dtype)
    got = backend.weighted_means(
        torch.as_tensor(Y, dtype=dtype),
        torch.as_tensor(Y, dtype=dtype),
        torch.as_tensor(w, dtype=dtype),
        tolerance,
        512,
        same=True,
    ).numpy()
    rounding = 1e-4 if dtype == torch.float32 else 1e-12
    assert np.linalg.norm(got - expected, axis=1).max() <= tolerance + rounding


@njit
def _exp_above_all(x):
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = kernels._exp_above(x[i])
    return out


@SETTINGS
@given(arrays(np.float64, st.integers(1, 300), elements=st.floats(-708, 0)))
def test_bound_exponential_is_a_tight_upper_bound(x):
    # the stopping rule's bounds need exp from above; vectorised and scalar code agree
    got = _exp_above_all(x)
    expected = np.exp(x)
    assert (got >= expected).all()
    np.testing.assert_allclose(got, expected, rtol=3e-8, atol=0)
    np.testing.assert_array_equal(_exp_above_all(x[::-1].copy()), got[::-1])


def test_fused_kernel_is_deterministic(coffee_lab_small):
    # the same inputs give bit-identical means, whatever memory was allocated in between
    # (fast-math vectorisation can make the rounding depend on alignment)
    import math

    unique, counts = np.unique(coffee_lab_small, axis=0, return_counts=True)
    points = torch.as_tensor((unique - unique.mean(0)) / (2.5 * math.sqrt(2)), dtype=torch.float32)
    weights = torch.as_tensor(counts, dtype=torch.float32)
    tolerance = backend.prune_tolerance(torch.float32)
    first = backend.weighted_means(points, points, weights, tolerance, 512, same=True)
    for size in range(1, 40, 7):
        np.empty(1000 * size + 13)  # shift the allocator's state
        again = backend.weighted_means(points, points, weights, tolerance, 512, same=True)
        np.testing.assert_array_equal(again.numpy(), first.numpy())


@SETTINGS
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 60), st.integers(1, 5)),
        # few values, so that rows repeat; cells far apart, signed zeros, extremes
        elements=st.sampled_from([0.0, -0.0, 1.0, -3.0, 2.0**40, -(2.0**40), 1e300, 5e-324]),
    )
)
def test_row_groups_partition_rows_like_numpy(keys):
    first, group = kernels.row_groups(keys)
    expected = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    # the same partition, groups numbered in order of their first rows
    same = group[:, None] == group[None, :]
    np.testing.assert_array_equal(same, expected[:, None] == expected[None, :])
    firsts = [np.flatnonzero(group == g)[0] for g in range(len(first))]
    np.testing.assert_array_equal(first, firsts)
    np.testing.assert_array_equal(np.sort(first), first)


@SETTINGS
@given(
    arrays(
        st.sampled_from([np.float32, np.float64]),
        st.tuples(st.integers(0, 60), st.integers(1, 5)),
        elements=st.floats(-(2.0**100), 2.0**100, width=32),
    )
)
def test_bounding_box_matches_numpy(points):
    lo, hi = kernels.bounding_box(points)
    if len(points):
        np.testing.assert_array_equal(lo, points.min(axis=0))
        np.testing.assert_array_equal(hi, points.max(axis=0))
    else:  # the identities of min and max
        assert (lo == np.inf).all() and (hi == -np.inf).all()
    assert lo.dtype == hi.dtype == np.float64


@SETTINGS
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 60), st.integers(1, 4)),
        # few values, so that rows repeat; signed zeros, extremes and a subnormal
        elements=st.sampled_from([0.0, -0.0, 1.0, -2.5, 1e300, -1e300, 5e-324]),
    )
)
def test_unique_rows_matches_numpy(X):
    ours = backend.unique_rows(X)
    theirs = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b.reshape(a.shape))


@SETTINGS
@given(st.integers(1, 500), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_unique_rows_matches_numpy_on_distinct_first_columns(n, d, seed):
    # continuous values (a photo's colours): the first column alone orders the rows
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X = X[rng.integers(0, n, size=2 * n)]  # every distinct row repeated at random
    ours = backend.unique_rows(X)
    theirs = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b.reshape(a.shape))


@SETTINGS
@given(
    arrays(
        np.float64, st.tuples(st.integers(1, 300), st.integers(1, 3)), elements=st.integers(-3, 3)
    ),
    st.integers(1, 40),
)
def test_kd_leaves_split_at_the_median_of_the_widest_coordinate(X, leaf_size):
    # few distinct values: many ties at every median
    order, starts = backend.kd_leaves(X, leaf_size)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(X)))
    assert starts[0] == 0 and starts[-1] == len(X) and np.diff(starts).max() <= leaf_size
    if len(X) > leaf_size:  # the root's split: halves on either side of the median
        dim = np.argmax(X.max(axis=0) - X.min(axis=0))
        half = len(X) // 2
        assert X[order[:half], dim].max() <= X[order[half:], dim].min()
