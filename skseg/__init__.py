"""skseg: image segmentation estimators for the scikit-learn world.

The estimators load on first use, so that ``import skseg`` and the ``skseg`` command's
``--help`` do not wait for torch; ``from skseg import MeanShiftSegmenter`` imports what
mean-shift needs and nothing of SegNet's.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the subpackage that defines it
_LAZY = {"MeanShiftSegmenter": "meanshift", "SegNetSegmenter": "segnet"}

__all__ = ["MeanShiftSegmenter", "SegNetSegmenter", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for static analysis only
    from .meanshift import MeanShiftSegmenter
    from .segnet import SegNetSegmenter


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
