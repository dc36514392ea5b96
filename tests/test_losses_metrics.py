import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import jaccard_score

from skseg.metrics import iou_per_class, iou_scorer, mean_iou
from skseg.segnet import CrossEntropy2D


def _scores_and_target(seed, size, target_size, ignore=True):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 4, *size, generator=g)
    target = torch.randint(0, 4, (2, *target_size), generator=g)
    if ignore:
        target[0, 0, :3] = 255
    return scores, target


def test_same_size_matches_torch_cross_entropy():
    scores, target = _scores_and_target(0, (8, 8), (8, 8))
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])
    for reduction in ["mean", "sum", "none"]:
        loss = CrossEntropy2D(reduction=reduction, weight=weight)(scores, target)
        expected = F.cross_entropy(
            scores, target, weight=weight, ignore_index=255, reduction=reduction
        )
        torch.testing.assert_close(loss, expected)


def test_smaller_scores_are_upsampled_bilinearly_to_the_target():
    scores, target = _scores_and_target(1, (4, 4), (8, 8))
    loss = CrossEntropy2D()(scores, target)
    up = F.interpolate(scores, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(loss, F.cross_entropy(up, target, ignore_index=255))


def test_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected scores of shape"):
        CrossEntropy2D()(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4, dtype=torch.long))


def test_iou_matches_sklearn_jaccard():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=(3, 16, 16))
    y_pred = np.where(rng.random((3, 16, 16)) < 0.7, y_true, rng.integers(0, 6, size=(3, 16, 16)))
    labels, iou = iou_per_class(y_true, y_pred)
    expected = jaccard_score(y_true.ravel(), y_pred.ravel(), labels=labels, average=None)
    np.testing.assert_allclose(iou, expected)
    assert mean_iou(y_true, y_pred) == pytest.approx(expected.mean())


def test_iou_leaves_out_ignored_pixels_and_unlisted_classes():
    y_true = np.array([[0, 0, 255, 1]])
    y_pred = np.array([[0, 1, 0, 1]])
    labels, iou = iou_per_class(y_true, y_pred)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_allclose(iou, [0.5, 0.5])
    _, iou0 = iou_per_class(y_true, y_pred, labels=[1])
    np.testing.assert_allclose(iou0, [0.5])


def test_iou_scorer_in_a_grid_search_signature():
    from sklearn.base import BaseEstimator

    class Fixed(BaseEstimator):
        def predict(self, X):
            return np.asarray(X)

    y = np.array([[[0, 1], [1, 1]]])
    assert iou_scorer(Fixed(), y, y) == 1.0


label_maps = arrays(np.int64, (2, 5, 5), elements=st.integers(0, 4))


@settings(max_examples=50, deadline=None)
@given(label_maps, label_maps)
def test_mean_iou_properties(a, b):
    score = mean_iou(a, b)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(mean_iou(b, a))
    assert mean_iou(a, a) == 1.0
    ignored = a.copy()
    ignored[0] = 255
    assert mean_iou(ignored, b) == pytest.approx(mean_iou(a[1:], b[1:]))


@pytest.mark.parametrize(
    "y_true, message",
    [
        (np.array([[0.5, 1.0]]), "fractional values"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([[1j, 1.0]]), "integer class labels, got dtype complex"),
    ],
)
def test_iou_rejects_label_maps_that_are_not_labels(y_true, message):
    with pytest.raises(ValueError, match=message):
        mean_iou(y_true, np.array([[1, 1]]))


def test_iou_accepts_whole_number_floats_and_warns_when_nothing_is_scored():
    assert mean_iou(np.array([[0.0, 1.0]]), np.array([[0, 1]])) == 1.0
    with pytest.warns(UndefinedMetricWarning, match="no pixel to score"):
        assert mean_iou(np.full((2, 3), 255), np.zeros((2, 3), dtype=int)) == 1.0


def test_mean_over_a_batch_without_labelled_pixels_is_zero():
    scores = torch.randn(2, 3, 4, 4, requires_grad=True)
    for weight in (None, torch.tensor([1.0, 2.0, 0.5])):
        loss = CrossEntropy2D(weight=weight)(scores, torch.full((2, 4, 4), 255))
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, scores)
        assert torch.equal(grad, torch.zeros_like(grad))
