"""Independent plain-numpy reference implementations used by the tests."""

import numpy as np


def blurring_mean_shift_reference(X, bandwidth=2.5, n_steps=20, sample_weight=None):
    """The reference algorithm, written as plainly as the assignment's pseudo-code.

    For every point, the distance to all points, a Gaussian weight of that distance
    (times the point's ``sample_weight``), the weighted mean; all points are updated out
    of place. float64 throughout.
    """
    points = np.array(X, dtype=np.float64)
    mass = np.ones(len(points)) if sample_weight is None else np.asarray(sample_weight)
    for _ in range(n_steps):
        new_points = np.empty_like(points)
        for i in range(len(points)):
            distances = np.sqrt(((points - points[i]) ** 2).sum(axis=1))
            weights = mass * np.exp(-(distances**2) / (2 * bandwidth**2))
            new_points[i] = (weights[:, None] * points).sum(axis=0) / weights.sum()
        points = new_points
    return points


def dense_weighted_means(Y, w, queries=None):
    """One step's weighted means in scaled coordinates (pair weight ``exp(-|q - y|**2)``):
    plain float64 numpy, every pair, no pruning."""
    Q = Y if queries is None else queries
    K = np.exp(-((Q[:, None, :] - Y[None, :, :]) ** 2).sum(-1)) * w
    return K @ Y / K.sum(1, keepdims=True)


def standard_mean_shift_reference(X, bandwidth=2.5, n_steps=20, sample_weight=None):
    """Gaussian mean-shift over the fixed data: each point climbs the density of ``X``
    (each sample's kernel times its ``sample_weight``)."""
    data = np.array(X, dtype=np.float64)
    mass = np.ones(len(data)) if sample_weight is None else np.asarray(sample_weight)
    points = data.copy()
    for _ in range(n_steps):
        new_points = np.empty_like(points)
        for i in range(len(points)):
            distances = np.sqrt(((data - points[i]) ** 2).sum(axis=1))
            weights = mass * np.exp(-(distances**2) / (2 * bandwidth**2))
            new_points[i] = (weights[:, None] * data).sum(axis=0) / weights.sum()
        points = new_points
    return points


def merge_small_regions_reference(label_map, min_size):
    """:func:`skseg.image.merge_small_regions` one region at a time with scipy: each
    4-connected region under ``min_size`` pixels, smallest first (sizes before any merge),
    takes the label most frequent on its one-pixel border as labelled so far (ties to
    the smaller label)."""
    from scipy import ndimage
    from skimage import measure

    merged = np.array(label_map, copy=True)
    if min_size <= 1:
        return merged
    regions = measure.label(merged.astype(np.int64), connectivity=1, background=-1)
    sizes = np.bincount(regions.ravel())
    small = [r for r in np.argsort(sizes, kind="stable") if r > 0 and sizes[r] < min_size]
    for region in small:
        inside = regions == region
        ring = ndimage.binary_dilation(inside) & ~inside
        if ring.any():
            values, counts = np.unique(merged[ring], return_counts=True)
            merged[inside] = values[np.argmax(counts)]
    return merged
