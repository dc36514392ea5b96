"""skseg: image segmentation estimators for the scikit-learn world."""

from .mean_shift import MeanShiftSegmenter

__version__ = "0.1.0"

__all__ = ["MeanShiftSegmenter", "__version__"]
