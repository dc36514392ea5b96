"""Extreme and hostile inputs: a correct answer or an error that names the cause.

Mean-shift must stay finite at any bandwidth the working precision can represent and
agree with itself under scaling and translation of the data; SegNet training must stop,
not return a diverged model.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skseg import MeanShiftSegmenter, SegNetSegmenter

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
    with pytest.raises(ValueError, match=f"bandwidth={bandwidth:g} is too small for {dtype}"):
        MeanShiftSegmenter(bandwidth=bandwidth, dtype=dtype).fit(BLOBS)


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


@pytest.mark.parametrize("lr", [float("inf"), 1e30])
def test_diverging_training_stops_with_an_error_and_no_model(lr):
    rng = np.random.default_rng(0)
    X = rng.random((8, 16, 16))
    y = (X > 0.5).astype(int)
    seg = SegNetSegmenter(width=4, depth=1, lr=lr, max_epochs=2, verbose=0, random_state=0)
    with pytest.raises(FloatingPointError, match="training diverged.*lower lr"):
        seg.fit(X, y)
