"""Input checks shared by the estimators and the metrics."""

import numpy as np


def check_integer_labels(y, name="y"):
    """``y`` as an array, after checking that it holds whole-number class labels.

    Integer and boolean arrays pass as they are; float arrays pass when every value is a
    finite whole number (labels read from a float file, say).

    Parameters
    ----------
    y : array-like
        Labels or label maps.

    name : str, default="y"
        How error messages call ``y``.

    Returns
    -------
    y : ndarray

    Raises
    ------
    ValueError
        For NaN or infinite values, fractional values, or a non-numeric dtype.

    Examples
    --------
    >>> from skseg._validation import check_integer_labels
    >>> check_integer_labels([[0.0, 3.0]])
    array([[0., 3.]])
    """
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        return y
    if y.dtype.kind != "f":
        raise ValueError(
            f"Unknown label type: {name} must hold integer class labels, got dtype {y.dtype}"
        )
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite values, not class labels")
    if (y != np.round(y)).any():
        raise ValueError(
            f"Unknown label type: {name} must hold integer class labels, got fractional values"
        )
    return y
