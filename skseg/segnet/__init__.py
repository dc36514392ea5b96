"""SegNet semantic segmentation: the estimator, its network and how it is trained.

:class:`SegNetSegmenter` is the scikit-learn estimator (skorch underneath). The modules
of this package each hold one part of it:

- ``_estimator``: :class:`SegNetSegmenter` itself (parameters, fit, predict, score);
- ``_network``: the network, :class:`SegNetLite`, and :class:`IntensityThresholds`;
- ``_validation``: the checks of images and label maps;
- ``_augment``: random affine copies and overlays for training (:func:`random_affine`,
  :func:`max_overlay`) and shifted copies at test time (:func:`shift_offsets`);
- ``_persistence``: model files that load without running code (``save`` / ``load``);
- ``_losses``: the per-pixel loss, :class:`CrossEntropy2D`;
- ``_optim``: :class:`Muon` and the warmup-stable-decay schedule;
- ``_callbacks``: the skorch callbacks (planned learning-rate schedule, time budget,
  non-finite loss);
- ``_training``: training on fresh compositions and planning a run by time;
- ``_recipe``: the ``skseg train-segnet`` recipe as keyword-argument functions;
- ``_accelerate``: :class:`AcceleratedSegNetSegmenter` (needs ``accelerate``).
"""

from ._augment import max_overlay, random_affine, shift_offsets
from ._estimator import SegNetSegmenter
from ._losses import CrossEntropy2D
from ._network import IntensityThresholds, SegNetLite
from ._optim import Muon, WarmupStableDecayLR, muon_param_groups, orthogonalize
from ._recipe import PRECISIONS, RECIPE, fit_recipe, plan_training, recipe_data, recipe_model
from ._training import fit_on_fresh_compositions, images_per_epoch_for_budget, seconds_to_predict

__all__ = [
    "AcceleratedSegNetSegmenter",
    "CrossEntropy2D",
    "IntensityThresholds",
    "Muon",
    "PRECISIONS",
    "RECIPE",
    "SegNetLite",
    "SegNetSegmenter",
    "WarmupStableDecayLR",
    "fit_on_fresh_compositions",
    "fit_recipe",
    "images_per_epoch_for_budget",
    "max_overlay",
    "muon_param_groups",
    "orthogonalize",
    "plan_training",
    "random_affine",
    "recipe_data",
    "recipe_model",
    "seconds_to_predict",
    "shift_offsets",
]


# the public path, in reprs, pickles and the docs, whatever module defines them
for _name in __all__:
    if callable(globals().get(_name)):
        globals()[_name].__module__ = __name__
del _name


def __getattr__(name):
    # imported on first use: it needs the optional ``accelerate`` package
    if name == "AcceleratedSegNetSegmenter":
        from ._accelerate import AcceleratedSegNetSegmenter

        AcceleratedSegNetSegmenter.__module__ = __name__

        return AcceleratedSegNetSegmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
