"""skseg: image segmentation estimators for the scikit-learn world."""

from .meanshift import MeanShiftSegmenter
from .segnet import SegNetSegmenter

__version__ = "0.1.0"

__all__ = ["MeanShiftSegmenter", "SegNetSegmenter", "__version__"]
