"""Input checks of :class:`~skseg.SegNetSegmenter`: images and label maps.

Images may come as ``(n, H, W)``, ``(n, C, H, W)``, flattened ``(n, C * H * W)`` with
``image_shape``, or pixel rows ``(n, n_features)``; integer and boolean images are scaled
as :func:`skimage.util.img_as_float` does. Every layout the network cannot take gets a
``ValueError`` that names what was expected.
"""

import math
import warnings

import numpy as np
from skimage.util import img_as_float32
from sklearn.utils.validation import check_array

from .._validation import check_integer_labels


def check_images(X, *, image_shape, depth):
    """``X`` as float32 images ``(n, C, H, W)``, and whether it came flat (2-D).

    Parameters
    ----------
    X : array-like
        Images in any layout :meth:`~skseg.SegNetSegmenter.fit` takes.
    image_shape : tuple of int or None
        ``(H, W)`` or ``(C, H, W)`` of flattened images.
    depth : int
        Poolings of the network: height and width must be at least ``2**depth``.

    Returns
    -------
    images : ndarray of shape (n, C, H, W), float32
    flat : bool
    """
    if isinstance(X, (list, tuple)) and len(X) > 1:  # before numpy's "inhomogeneous shape"
        shapes = list(dict.fromkeys(np.shape(image) for image in X))
        if len(shapes) > 1:
            raise ValueError(
                f"X holds images of different shapes, {shapes[0]} and {shapes[1]}; "
                "SegNetSegmenter takes images of one size per call: crop or resize them "
                "to one size, or call predict once per size"
            )
    # integer and boolean images are scaled as scikit-image's img_as_float does
    # (uint8 by 255, uint16 by 65535, bool to 0 / 1), so that they match float images
    dtype_kind = getattr(X, "dtype", np.dtype(float)).kind
    if dtype_kind in "uib" and np.ndim(X) >= 3:
        X = np.asarray(X)
        if dtype_kind == "i" and X.size and X.min() >= 0 and X.max() > 1 and X.max() <= 255:
            warnings.warn(
                f"X holds values 0-255 in a {X.dtype} array, which is scaled by its "
                "type's largest value like skimage.util.img_as_float (to nearly 0); "
                "pass X.astype(np.uint8) for 8-bit images",
                UserWarning,
                stacklevel=5,
            )
        X = img_as_float32(X)
    # scikit-learn's own checks first: sparse, complex, object, empty, NaN / inf
    X = check_array(X, dtype=[np.float32, np.float64], allow_nd=True, input_name="X")
    if X.dtype != np.float32 and X.size:
        largest = max(-float(X.min()), float(X.max()))
        limit = float(np.finfo(np.float32).max)
        if largest > limit:  # the cast would make them infinite
            raise ValueError(
                f"X holds values up to {largest:.3g} in magnitude, beyond the float32 "
                f"range ({limit:.3g}) that SegNetSegmenter computes in; rescale the "
                "images, e.g. to 0-1"
            )
    X = X.astype(np.float32, copy=False)
    if X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"X of shape {X.shape} looks like channels-last images (n, H, W, C); "
            "SegNetSegmenter takes (n, C, H, W): pass X.transpose(0, 3, 1, 2)"
        )
    flat = X.ndim == 2
    if image_shape is not None:
        shape = tuple(image_shape)
        shape = (1, *shape) if len(shape) == 2 else shape
        if X.ndim != 2 or X.shape[1] != math.prod(shape):
            raise ValueError(
                f"with image_shape={image_shape}, X must have shape "
                f"(n_samples, {math.prod(shape)}), got {X.shape}"
            )
        X = X.reshape(len(X), *shape)
    elif X.ndim == 2:
        X = X[:, :, None, None]  # rows of features are single pixels
    elif X.ndim == 3:
        X = X[:, None]
    elif X.ndim != 4:
        raise ValueError(
            "X must be images of shape (n, H, W) or (n, C, H, W), flattened images with "
            f"the image_shape parameter, or pixels (n, n_features); got shape {X.shape}"
        )
    factor = 2**depth
    if flat and image_shape is None and factor > 1 and X.shape[1] > 4:
        raise ValueError(
            f"X of shape {X.shape} is read as {len(X)} single pixels of {X.shape[1]} "
            "channels, which cannot be pooled; pass images of shape (n, H, W) or "
            "(n, C, H, W), or flattened images with image_shape=(H, W)"
        )
    if min(X.shape[-2:]) < factor:
        raise ValueError(
            f"image size {X.shape[-2]} x {X.shape[-1]} is too small to be pooled {depth} "
            f"times: height and width must be at least 2**depth = {factor}"
        )
    return X, flat


def check_label_maps(y, X, estimator_name="SegNetSegmenter"):
    """``y`` as int64 label maps ``(n, H, W)`` matching images ``X`` ``(n, C, H, W)``."""
    if y is None:
        raise ValueError(
            f"{estimator_name} requires y to be passed, but the target y is None"
        )
    y = check_integer_labels(y)
    expected = (len(X), *X.shape[2:])
    n_pixels = math.prod(X.shape[2:])
    flat_ok = (y.ndim == 2 and y.shape == (len(X), n_pixels)) or (
        y.ndim == 1 and n_pixels == 1 and len(y) == len(X)
    )
    if y.shape != expected and not flat_ok:
        raise ValueError(
            f"y must be a label map of shape {expected} for X of shape {X.shape}, got {y.shape}"
        )
    return y.reshape(expected).astype(np.int64)
