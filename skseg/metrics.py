"""Intersection over union for label maps, and a scorer for model selection."""

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import make_scorer

from ._validation import check_integer_labels

__all__ = ["confusion_matrix_iou", "iou_per_class", "mean_iou", "iou_scorer"]


def _flat_pair(y_true, y_pred, ignore_index):
    y_true = check_integer_labels(y_true, "y_true")
    y_pred = check_integer_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}"
        )
    y_true, y_pred = y_true.ravel(), y_pred.ravel()
    if ignore_index is not None:
        keep = y_true != ignore_index
        y_true, y_pred = y_true[keep], y_pred[keep]
    return y_true, y_pred


def confusion_matrix_iou(confusion):
    """Per-class IoU from a confusion matrix (rows: truth, columns: prediction).

    Classes that occur in neither truth nor prediction get NaN.

    Parameters
    ----------
    confusion : array-like of shape (n_classes, n_classes)

    Returns
    -------
    iou : ndarray of shape (n_classes,)

    Examples
    --------
    >>> from skseg.metrics import confusion_matrix_iou
    >>> confusion_matrix_iou([[3, 1], [0, 0]])
    array([0.75, 0.  ])
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), np.nan)


def iou_per_class(y_true, y_pred, *, labels=None, ignore_index=255):
    """Intersection over union of every class, accumulated over the whole set.

    Parameters
    ----------
    y_true, y_pred : array-like of int, same shape
        True and predicted label maps of any shape, e.g. (n, H, W).

    labels : array-like or None, default=None
        Classes to report; ``None`` uses the sorted union of the classes in ``y_true`` and
        ``y_pred`` (after removing ignored pixels).

    ignore_index : int or None, default=255
        Pixels whose true label is ``ignore_index`` are left out.

    Returns
    -------
    labels : ndarray of shape (n_labels,)
    iou : ndarray of shape (n_labels,)
        NaN for a class absent from both truth and prediction.

    Examples
    --------
    >>> from skseg.metrics import iou_per_class
    >>> iou_per_class([[0, 0, 1, 1]], [[0, 1, 1, 1]])
    (array([0, 1]), array([0.5       , 0.66666667]))
    """
    y_true, y_pred = _flat_pair(y_true, y_pred, ignore_index)
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    n = len(labels)
    # index of every pixel's class in ``labels``; ``n`` collects the unlisted classes,
    # whose pixels still count against the listed ones
    t, p = _positions(labels, y_true), _positions(labels, y_pred)
    confusion = np.bincount(t * (n + 1) + p, minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
    return labels, confusion_matrix_iou(confusion)[:n]


def _positions(labels, values):
    n = len(labels)
    if n == 0:
        return np.zeros(len(values), dtype=np.int64)
    sorter = np.argsort(labels)
    pos = np.minimum(np.searchsorted(labels, values, sorter=sorter), n - 1)
    found = labels[sorter[pos]] == values
    return np.where(found, sorter[pos], n)


def mean_iou(y_true, y_pred, *, labels=None, ignore_index=255):
    """Mean intersection over union over the classes present in truth or prediction.

    Per-class IoU is accumulated over all pixels of the set (one confusion matrix), then
    averaged over the classes that occur in ``y_true`` or ``y_pred``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, same shape
        True and predicted label maps, e.g. (n, H, W).

    labels : array-like or None, default=None
        Restrict the average to these classes.

    ignore_index : int or None, default=255
        Pixels whose true label is ``ignore_index`` are left out.

    Returns
    -------
    score : float
        In ``[0, 1]``; 1 for identical maps, and 1 with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning` when no pixel is left to
        score (all ignored, or no pixel at all).

    Examples
    --------
    >>> from skseg.metrics import mean_iou
    >>> round(mean_iou([[0, 0, 1, 1]], [[0, 1, 1, 1]]), 4)
    0.5833
    """
    _, iou = iou_per_class(y_true, y_pred, labels=labels, ignore_index=ignore_index)
    iou = iou[~np.isnan(iou)]
    if not len(iou):
        warnings.warn(
            "mean_iou: no pixel to score (every true label is ignore_index, or the maps are "
            "empty); returning 1.0",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return 1.0
    return float(iou.mean())


#: scorer for ``GridSearchCV(..., scoring=iou_scorer)``: mean IoU of ``predict(X)``
iou_scorer = make_scorer(mean_iou)
