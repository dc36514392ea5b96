"""Between RGB images and the feature matrices the estimators work on.

These helpers reuse scikit-image (:func:`skimage.color.rgb2lab`,
:func:`skimage.segmentation.find_boundaries`, :func:`skimage.measure.label`) and add the
reshaping and validation around them. Photos of many megapixels need no float64 copy of
the whole image besides the features themselves: colours are converted a block of rows
at a time, and the overview's segment colours come from one pass over the pixels.
"""

import numpy as np
from joblib import Parallel, delayed
from numba import njit
from skimage import color, io, measure, segmentation, util
from sklearn.base import clone

__all__ = [
    "segment_images",
    "read_rgb_image",
    "rgb_to_features",
    "labels_to_image",
    "merge_small_regions",
    "segmentation_overview",
]

#: pixels converted at a time by :func:`rgb_to_features`; bounds the float64 temporaries
#: of :func:`skimage.color.rgb2lab` to a few times 8 MB whatever the image size
FEATURE_BLOCK = 2**18


def _check_rgb(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"expected an RGB image of shape (height, width, 3), got shape {image.shape}"
        )
    if image.size == 0:
        raise ValueError("the image is empty")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"expected a numeric image, got dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("the image contains NaN or infinite values")
        if image.min() < 0 or image.max() > 1:
            raise ValueError("a floating-point RGB image must have values in [0, 1]")
    return image


def _imread(path, what="an image"):
    """:func:`skimage.io.imread`, with one ``ValueError`` that names the file when it
    cannot be read (imageio raises many types)."""
    try:
        return io.imread(path)
    except Exception as exc:
        raise ValueError(f"cannot read {str(path)!r} as {what}: {exc}") from exc


def read_rgb_image(path):
    """Read an image file as an RGB array.

    Greyscale files become grey RGB (the value in all three channels); files with an
    alpha channel (RGBA, grey and alpha) are composited on white. Other layouts (image
    stacks, more channels) are refused.

    Parameters
    ----------
    path : str or path-like
        Image file in any format scikit-image can read (PNG, JPEG, TIFF, ...).

    Returns
    -------
    image : ndarray of shape (height, width, 3)
        The image in its stored dtype (usually uint8).

    Raises
    ------
    ValueError
        If the file cannot be read as an image, or is neither RGB nor greyscale.

    Examples
    --------
    >>> import os, tempfile
    >>> from skimage import data, io
    >>> from skseg.image import read_rgb_image
    >>> path = os.path.join(tempfile.mkdtemp(), "astronaut.png")
    >>> io.imsave(path, data.astronaut()[:32, :32])
    >>> read_rgb_image(path).shape
    (32, 32, 3)
    """
    image = _imread(path)
    if image.ndim == 3 and image.shape[-1] == 2:  # grey and alpha
        image = image[..., [0, 0, 0, 1]]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = color.rgba2rgb(image)
    if image.ndim == 2:
        image = color.gray2rgb(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"{str(path)!r} is neither an RGB nor a greyscale image: its pixel array has "
            f"shape {image.shape}"
        )
    return image


def rgb_to_features(image, *, spatial_scale=None):
    """Per-pixel CIELAB features of an RGB image.

    Parameters
    ----------
    image : array-like of shape (height, width, 3)
        RGB image, integer or floating point in ``[0, 1]``.

    spatial_scale : float or None, default=None
        When given, append the pixel coordinates ``(row, col) * spatial_scale`` as two more
        features, for joint spatial-range mean-shift (pixels then need to be close both in
        colour and in position to share a segment). ``spatial_scale = bandwidth_colour /
        bandwidth_space`` gives the spatial kernel a bandwidth of ``bandwidth_space``
        pixels.

    Returns
    -------
    features : ndarray of shape (height * width, 3) or (height * width, 5)
        ``L*, a*, b*`` (and scaled coordinates), one row per pixel in row-major order.

    Examples
    --------
    >>> import numpy as np
    >>> from skseg.image import rgb_to_features
    >>> image = np.zeros((2, 3, 3), dtype=np.uint8)
    >>> image[0, 0] = 255
    >>> rgb_to_features(image)[:, 0].round(1)  # L*: white, then black
    array([100.,   0.,   0.,   0.,   0.,   0.])
    >>> rgb_to_features(image, spatial_scale=0.5).shape
    (6, 5)
    """
    image = _check_rgb(image)
    height, width = image.shape[:2]
    features = np.empty((height * width, 3 if spatial_scale is None else 5))
    step = max(1, FEATURE_BLOCK // width)
    for top in range(0, height, step):
        block = image[top : top + step]
        rows = slice(top * width, (top + len(block)) * width)
        features[rows, :3] = color.rgb2lab(util.img_as_float(block)).reshape(-1, 3)
    if spatial_scale is not None:
        scale = float(spatial_scale)
        grid = features.reshape(height, width, 5)  # a view: features is contiguous
        grid[..., 3] = np.arange(height)[:, None] * scale
        grid[..., 4] = np.arange(width)[None, :] * scale
    return features


def labels_to_image(labels, shape):
    """Reshape a vector of per-pixel labels into a label map.

    Parameters
    ----------
    labels : array-like of shape (height * width,)
        One label per pixel in row-major order, as returned by
        ``MeanShiftSegmenter().fit_predict`` on :func:`rgb_to_features` output.

    shape : tuple of int
        ``(height, width)`` or the image's full shape ``(height, width, 3)``.

    Returns
    -------
    label_map : ndarray of shape (height, width)

    Examples
    --------
    >>> from skseg.image import labels_to_image
    >>> labels_to_image([0, 0, 1, 1, 2, 2], (2, 3))
    array([[0, 0, 1],
           [1, 2, 2]])
    """
    labels = np.asarray(labels)
    height, width = shape[:2]
    if labels.ndim != 1 or labels.size != height * width:
        raise ValueError(
            f"expected {height * width} labels for a {height} x {width} image, "
            f"got an array of shape {labels.shape}"
        )
    return labels.reshape(height, width)


def segmentation_overview(image, label_map, *, boundary_color=(1.0, 1.0, 0.0)):
    """Side-by-side picture: original | segments in their mean colour | boundaries.

    Every label, whatever its value, is painted in the mean colour of its pixels; the
    boundaries are those of :func:`skimage.segmentation.mark_boundaries` (``mode="outer"``).
    The panel is built in ``uint8`` directly, with no floating-point copy of a ``uint8``
    image.

    Parameters
    ----------
    image : array-like of shape (height, width, 3)
        The RGB image that was segmented.

    label_map : array-like of shape (height, width)
        Integer segment of every pixel.

    boundary_color : tuple of 3 floats, default=(1, 1, 0)
        RGB colour of the drawn boundaries.

    Returns
    -------
    panel : ndarray of shape (height, 3 * width, 3), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> from skseg.image import segmentation_overview
    >>> image = np.zeros((4, 4, 3))
    >>> image[:, 2:] = 1.0
    >>> label_map = np.repeat([[0, 0, 1, 1]], 4, axis=0)
    >>> segmentation_overview(image, label_map).shape
    (4, 12, 3)
    """
    image = _check_rgb(image)
    label_map = np.asarray(label_map)
    if label_map.shape != image.shape[:2]:
        raise ValueError(
            f"label map of shape {label_map.shape} does not match the image's {image.shape[:2]}"
        )
    if label_map.dtype.kind not in "iub":
        raise ValueError(f"label_map must hold integer labels, got dtype {label_map.dtype}")
    width = image.shape[1]
    # uint8 images are averaged in their own units (exact integer sums)
    values = image if image.dtype == np.uint8 else util.img_as_float(image) * 255
    _, codes = _label_codes(label_map)
    counts = np.bincount(codes.ravel())
    mean_colour = np.stack(
        [np.bincount(codes.ravel(), weights=values[..., c].ravel()) / counts for c in range(3)],
        axis=1,
    )
    panel = np.empty((image.shape[0], 3 * width, 3), dtype=np.uint8)
    panel[:, :width] = image if image.dtype == np.uint8 else _to_ubyte(values)
    panel[:, width : 2 * width] = _to_ubyte(mean_colour)[codes]
    panel[:, 2 * width :] = panel[:, :width]
    boundaries = segmentation.find_boundaries(label_map, mode="outer")
    panel[:, 2 * width :][boundaries] = _to_ubyte(np.asarray(boundary_color, float) * 255)
    return panel


def _to_ubyte(values):
    """Values in ``[0, 255]`` units rounded to uint8, as :func:`skimage.util.img_as_ubyte`."""
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


def _label_codes(label_map):
    """The distinct labels in increasing order, and every pixel's rank among them.

    ``np.unique(label_map, return_inverse=True)``, by a lookup table when the labels span
    a range no larger than four times the pixel count (labels from an estimator do):
    sorting a 12-megapixel map takes 1.5 s, the lookup a tenth of that.
    """
    label_map = np.asarray(label_map)
    labels = label_map.view(np.uint8) if label_map.dtype == bool else label_map
    low, high = int(labels.min()), int(labels.max())
    if high - low > 4 * labels.size or low < -(2**62) or high > 2**62:
        values, codes = np.unique(label_map, return_inverse=True)
        return values, codes.reshape(labels.shape).astype(np.int64)
    offsets = labels.astype(np.int64) - low
    present = np.zeros(high - low + 1, dtype=bool)
    present[offsets.ravel()] = True
    rank = np.cumsum(present) - 1
    values = (np.flatnonzero(present) + low).astype(label_map.dtype)
    return values, rank[offsets]


def merge_small_regions(label_map, min_size):
    """Give every connected region smaller than ``min_size`` pixels its neighbour's label.

    Colour segments of a photo are often split into many specks of a few pixels (noise,
    texture, anti-aliased edges), which clutter a boundary picture. This merges each
    4-connected region of fewer than ``min_size`` pixels (sizes as found before any
    merge), smallest first, into the
    adjacent label it shares the most boundary pixels with. Regions with no neighbour
    (the whole image) keep their label.

    Parameters
    ----------
    label_map : array-like of int of shape (height, width)
        Segment of every pixel, e.g. from :func:`labels_to_image`.

    min_size : int
        Smallest region, in pixels, that keeps its own label. ``0`` or ``1`` changes
        nothing.

    Returns
    -------
    merged : ndarray of shape (height, width)
        The label map with small regions relabelled. Labels keep their values; a label
        whose every region was merged disappears.

    Examples
    --------
    >>> import numpy as np
    >>> from skseg.image import merge_small_regions
    >>> label_map = np.zeros((4, 5), dtype=int)
    >>> label_map[:, 3:] = 1
    >>> label_map[1, 1] = 2
    >>> merge_small_regions(label_map, 2)
    array([[0, 0, 0, 1, 1],
           [0, 0, 0, 1, 1],
           [0, 0, 0, 1, 1],
           [0, 0, 0, 1, 1]])
    """
    merged = np.array(label_map, copy=True)
    if merged.ndim != 2 or merged.dtype.kind not in "iub":
        raise ValueError(
            f"label_map must be a 2-D array of integer labels, got shape {merged.shape} "
            f"and dtype {merged.dtype}"
        )
    if min_size <= 1 or merged.size == 0:
        return merged
    # labels as their ranks (int64 whatever the dtype, booleans included; the order, and
    # so the ties, kept)
    values, codes = _label_codes(merged)
    regions = measure.label(codes, connectivity=1, background=-1).astype(np.int64) - 1
    sizes = np.bincount(regions.ravel())
    small = np.flatnonzero(sizes < min_size)
    # the pixels of every region, region after region
    pixels = np.argsort(regions.ravel(), kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    order = small[np.argsort(sizes[small], kind="stable")]
    return values[_merge_regions(regions, codes, order, starts, pixels)]


@njit(cache=True)
def _merge_regions(regions, codes, order, starts, pixels):
    """Relabel the regions ``order`` in turn with the label most frequent among the
    pixels next to them (4-connectivity; ties to the smallest label); a Python loop over
    the regions took 2 s on a photo's 24,000 specks."""
    height, width = codes.shape
    region_of, code_of = regions.ravel(), codes.ravel()
    counted = np.full(height * width, -1)  # the last region whose border held each pixel
    border = np.empty(height * width, dtype=np.int64)
    for region in order:
        n = 0
        for t in range(starts[region], starts[region + 1]):
            row, col = divmod(pixels[t], width)
            for r, c in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                if 0 <= r < height and 0 <= c < width:
                    q = r * width + c
                    if region_of[q] != region and counted[q] != region:
                        counted[q] = region
                        border[n] = code_of[q]
                        n += 1
        if n == 0:
            continue
        labels = np.sort(border[:n])
        best, longest, run = labels[0], 0, 0
        for t in range(n):
            run = run + 1 if t > 0 and labels[t] == labels[t - 1] else 1
            if run > longest:  # strictly longer: ties go to the smaller label
                best, longest = labels[t], run
        for t in range(starts[region], starts[region + 1]):
            code_of[pixels[t]] = best
    return codes


def _segment_one(segmenter, image, spatial_scale):
    labels = clone(segmenter).fit_predict(rgb_to_features(image, spatial_scale=spatial_scale))
    return labels_to_image(labels, np.shape(image))


def segment_images(images, segmenter, *, spatial_scale=None, n_jobs=None, verbose=0):
    """Segment many RGB images, each with a fresh clone of ``segmenter``, in parallel.

    The work is spread with :class:`joblib.Parallel`, so any joblib backend runs it: local
    processes by default, or a Dask cluster inside
    ``with joblib.parallel_backend("dask"):`` (see :ref:`scale_out`).

    Parameters
    ----------
    images : iterable of array-like of shape (height, width, 3)
        RGB images, of any sizes.

    segmenter : estimator
        An unfitted clusterer with ``fit_predict``, e.g. :class:`~skseg.MeanShiftSegmenter`.

    spatial_scale : float or None, default=None
        Passed to :func:`rgb_to_features`.

    n_jobs : int or None, default=None
        Parallel jobs, as in scikit-learn (``-1``: all workers of the backend). joblib's
        default worker processes each get their share of the cores; on a Dask cluster,
        give the segmenter one thread (``MeanShiftSegmenter(n_jobs=1)``), see
        :ref:`scale_out`.

    verbose : int, default=0
        joblib's progress messages on standard error: ``1`` and up report the images
        done and the time elapsed now and then, above ``10`` every image. ``0`` is
        silent. The segmenter's own ``verbose`` is separate.

    Returns
    -------
    label_maps : list of ndarray of shape (height, width)
        One label map per image, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from skseg import MeanShiftSegmenter
    >>> from skseg.image import segment_images
    >>> images = [np.zeros((4, 4, 3)), np.ones((2, 3, 3))]
    >>> [m.shape for m in segment_images(images, MeanShiftSegmenter(device="cpu"))]
    [(4, 4), (2, 3)]
    """
    return Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(_segment_one)(segmenter, image, spatial_scale) for image in images
    )
