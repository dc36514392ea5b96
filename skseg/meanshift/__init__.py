"""Gaussian mean-shift segmentation of pixel features.

- ``_estimator``: :class:`MeanShiftSegmenter`, the scikit-learn estimator, and
  :func:`silhouette_scorer`;
- ``_backend``: the numerical engine (k-d leaves, error-bounded pruning, merging of
  collapsed points, the torch kernel for CUDA and many features) and
  :func:`compile_kernels`;
- ``_kernels``: the fused numba CPU kernels of one mean-shift step.

The image helpers that go with it (:func:`skseg.image.rgb_to_features`,
:func:`skseg.image.merge_small_regions`, :func:`skseg.image.segment_images`) live in
:mod:`skseg.image`.
"""

from ._backend import compile_kernels
from ._estimator import MeanShiftSegmenter, silhouette_scorer

__all__ = ["MeanShiftSegmenter", "compile_kernels", "silhouette_scorer"]


# the public path, in reprs, pickles and the docs, whatever module defines them
for _name in __all__:
    if callable(globals().get(_name)):
        globals()[_name].__module__ = __name__
del _name
