"""Extreme and hostile inputs to MeanShiftSegmenter: a correct answer or an error that
names the cause.

Mean-shift must stay finite at any bandwidth the working precision can represent and
agree with itself under scaling and translation of the data.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skseg import MeanShiftSegmenter

# three well-separated blobs of 20 distinct points each, spread 0.1 within a blob
_RNG = np.random.default_rng(0)
BLOBS = np.concatenate([c + 0.1 * _RNG.normal(size=(20, 2)) for c in ([0, 0], [10, 0], [0, 10])])


@pytest.mark.parametrize(
    "bandwidth, dtype, n_segments",
    [
        (1e-3, "float32", 60),  # every point alone: no NaN from all-underflowing weights
        (1e-9, "float32", 60),
        (1e-12, "float64", 60),
        (1e-100, "float64", 60),
        (1.0, "float32", 3),
        (3e38, "float32", 1),  # larger than bandwidth * sqrt(2) can hold in float32
        (1e300, "float64", 1),
    ],
)
def test_any_representable_bandwidth_gives_finite_points(bandwidth, dtype, n_segments):
    ms = MeanShiftSegmenter(bandwidth=bandwidth, dtype=dtype, max_iter=5).fit(BLOBS)
    assert np.isfinite(ms.shifted_points_).all()
    assert len(ms.cluster_centers_) == n_segments


@pytest.mark.parametrize("bandwidth, dtype", [(1e-40, "float32"), (1e-300, "float64")])
def test_a_bandwidth_below_what_the_dtype_holds_is_named(bandwidth, dtype):
    message = f"bandwidth={bandwidth:g} is too small for {dtype}"
    with pytest.raises(ValueError, match=message) as error:
        MeanShiftSegmenter(bandwidth=bandwidth, dtype=dtype).fit(BLOBS)
    # float64 is only suggested where it is not already the dtype
    assert ("dtype='float64'" in str(error.value)) == (dtype == "float32")


@settings(max_examples=10, deadline=None)
@given(
    st.sampled_from([1e-30, 1e-6, 1e6, 1e30, 1e100]),
    st.sampled_from([0.0, 1e4, -1e7, 1e10]),
)
def test_scaling_and_offsetting_the_data_keeps_the_segments(scale, offset):
    # float64: the offsets are far beyond what float32 resolves at this spread
    reference = MeanShiftSegmenter(bandwidth=1.0, dtype="float64").fit(BLOBS)
    moved = MeanShiftSegmenter(bandwidth=scale, dtype="float64").fit(BLOBS * scale + offset * scale)
    np.testing.assert_array_equal(moved.labels_, reference.labels_)


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.int8]),
        st.tuples(st.integers(1, 30), st.integers(1, 5)),
        elements=st.integers(0, 100),
    ),
    st.floats(1e-6, 1e6),
    st.sampled_from(["float32", "float64"]),
)
def test_any_finite_numeric_input_gives_finite_segments(X, bandwidth, dtype):
    ms = MeanShiftSegmenter(bandwidth=bandwidth, dtype=dtype, max_iter=5).fit(X)
    assert np.isfinite(ms.shifted_points_).all()
    assert 1 <= len(ms.cluster_centers_) <= len(np.unique(X, axis=0))
    np.testing.assert_array_equal(ms.predict(X), ms.labels_)


@settings(max_examples=25, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.integers(1, 3)),
        elements=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -1e300])
        ),
    )
)
def test_extreme_values_give_finite_segments_or_a_named_error(X):
    try:
        ms = MeanShiftSegmenter(dtype="float64", max_iter=3).fit(X)
    except ValueError as error:
        assert any(word in str(error) for word in ("NaN", "infinity", "too small", "too large"))
    else:
        assert np.isfinite(ms.shifted_points_).all()


@pytest.mark.parametrize(
    "sample_weight, message",
    [
        (-np.ones(60), "Negative values in data passed to `sample_weight`"),
        (np.full(60, np.nan), "Input sample_weight contains NaN"),
        (np.full(60, np.inf), "Input sample_weight contains infinity"),
        (np.ones(59), r"sample_weight.shape == \(59,\), expected \(60,\)"),
        (np.zeros(60), "Sample weights must contain at least one non-zero number"),
        (np.ones((60, 2)), "Sample weights must be 1D"),
    ],
)
def test_bad_sample_weights_are_named(sample_weight, message):
    with pytest.raises(ValueError, match=message):
        MeanShiftSegmenter(bandwidth=1.0).fit(BLOBS, sample_weight=sample_weight)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_of_any_range_the_dtype_holds_give_the_segments(dtype):
    # one blob weighs 1e-8 per point, another 1e8: the heavy blob's pull on the light one,
    # 1e16 * exp(-10**2 / 2), is negligible, so the three segments stay
    weights = np.repeat([1e-8, 1e8, 1.0], 20)
    ms = MeanShiftSegmenter(bandwidth=1.0, dtype=dtype).fit(BLOBS, sample_weight=weights)
    assert np.isfinite(ms.shifted_points_).all()
    np.testing.assert_array_equal(np.bincount(ms.labels_), [20, 20, 20])


def test_weights_beyond_what_float32_holds_are_named():
    weights = np.repeat([1e-60, 1e60, 1.0], 20)
    ms = MeanShiftSegmenter(bandwidth=1.0, dtype="float64")
    ms.fit(BLOBS, sample_weight=weights)  # a ratio of 1e120 fits float64
    assert np.isfinite(ms.shifted_points_).all()
    with pytest.raises(ValueError, match="sample_weight spans .* more than float32 can hold"):
        MeanShiftSegmenter(bandwidth=1.0).fit(BLOBS, sample_weight=weights)
