"""SegNet semantic segmentation as a scikit-learn estimator, built on skorch."""

import contextlib
import hashlib
import itertools
import json
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from skimage.util import img_as_float32
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_array, check_is_fitted
from skorch import NeuralNet
from skorch.dataset import ValidSplit

from ._device import has_fast_bfloat16, resolve_device
from ._skorch_callbacks import PlannedLRSchedule, QuietProgressBar, StopOnNonFiniteLoss
from ._validation import check_integer_labels
from .losses import CrossEntropy2D
from .metrics import confusion_matrix_iou, mean_iou
from .optim import Muon, muon_param_groups
from .segnet_model import TOP_BLOCKS, SegNetLite

__all__ = [
    "SegNetSegmenter",
    "fit_on_fresh_compositions",
    "images_per_epoch_for_budget",
    "seconds_to_predict",
    "shift_offsets",
]

# constructor parameters that save() stores; classes and callables are not stored
_SAVED_PARAMS = (
    "width",
    "depth",
    "convs_per_block",
    "encoder_skip",
    "input_skip",
    "input_thresholds",
    "top_block",
    "lr",
    "max_epochs",
    "max_time",
    "batch_size",
    "validation_fraction",
    "lr_schedule",
    "weight_decay",
    "mixed_precision",
    "channels_last",
    "image_shape",
    "ignore_index",
    "test_time_shifts",
    "random_state",
    "verbose",
)

#: what :meth:`SegNetSegmenter.save` writes under the ``"format"`` key, and the newest
#: version of the file layout :meth:`SegNetSegmenter.load` reads (files from before the
#: versions are read as version 0)
FILE_FORMAT = "skseg.SegNetSegmenter"
FILE_FORMAT_VERSION = 1


class SegNetSegmenter(NeuralNet):
    """Semantic segmentation with a simplified SegNet, trained by skorch.

    A :class:`skorch.NeuralNet` (so skorch's callbacks, ``history``,
    ``save_params``/``load_params`` all work) around :class:`~skseg.segnet_model.SegNetLite`,
    trained with the per-pixel :class:`~skseg.losses.CrossEntropy2D` and scored by
    :func:`~skseg.metrics.mean_iou`. It is a scikit-learn estimator: it clones, works in
    :class:`~sklearn.pipeline.Pipeline` and
    :class:`~sklearn.model_selection.GridSearchCV` (``scoring=skseg.metrics.iou_scorer``).

    Read more in the :ref:`User Guide <segnet>`.

    Parameters
    ----------
    module : type, default=SegNetLite
        Network class; called with ``in_channels``, ``n_classes``, ``width``, ``depth``
        and any ``module__*`` parameters.

    width : int, default=32
        Channels of the first encoder block (doubled per level).

    depth : int, default=4
        Encoder levels; image sides must be divisible by ``2**depth``.

    convs_per_block : int or sequence of int, default=1
        Conv2d -> BatchNorm2d -> ReLU units per encoder and decoder block, for all levels
        or one number per level, top level first.

    encoder_skip : bool, default=True
        Add each encoder block's output to the decoder block of the same level after
        unpooling (see :class:`~skseg.segnet_model.SegNetLite`).

    input_skip : bool, default=True
        Feed the input image to the last decoder block as well (see
        :class:`~skseg.segnet_model.SegNetLite`). ``encoder_skip=False,
        input_skip=False`` is the plain SegNet.

    input_thresholds : int, default=4
        With ``input_skip``, soft steps of the image at that many learnable intensity
        thresholds join it (:class:`~skseg.segnet_model.IntensityThresholds`), so that
        the network can draw label boundaries between adjacent grey levels; ``0`` feeds
        the image alone.

    top_block : {"unpool", "upsample"}, default="unpool"
        ``"unpool"`` is SegNet's top decoder block, at full resolution; ``"upsample"``
        computes the class scores at half resolution, upsamples them bilinearly and adds
        per-pixel scores from the input skip, which trains faster (see
        :class:`~skseg.segnet_model.SegNetLite`).

    criterion : type, default=CrossEntropy2D
        Loss class; ``criterion__*`` parameters reach it (``ignore_index`` is passed).

    optimizer : type, default=torch.optim.AdamW
        Optimizer class; ``optimizer__*`` parameters reach it. With
        :class:`skseg.optim.Muon` the weights of the hidden 3x3 convolutions take Muon
        steps and the other parameters AdamW steps (:func:`~skseg.optim.muon_param_groups`)
        unless ``optimizer__param_groups`` says otherwise, and its Newton-Schulz
        iterations run in bfloat16 when ``mixed_precision`` runs the network in bfloat16
        (unless ``optimizer__ns_dtype`` is given).

    lr : float, default=3e-3
        Learning rate (the peak rate of ``lr_schedule``).

    max_epochs : int, default=10
        Passes over the training data.

    max_time : float or None, default=None
        Seconds that one call of :meth:`fit` (or :meth:`partial_fit`) may train. After
        the first epoch, training runs only as many of the ``max_epochs`` epochs as fit
        in the time left at the measured rate, and the learning-rate schedule is planned
        to end with the last of them; a batch that ends past ``max_time`` stops training.
        Validation and setting up are not counted. ``None`` runs all ``max_epochs``.

    batch_size : int, default=32
        Images per batch.

    validation_fraction : float, default=0.1
        Share of the training images held out to report ``valid_loss`` and ``valid_miou``
        every epoch; 0 trains on everything.

    train_split : callable or None, default=None
        A skorch split (e.g. :class:`skorch.dataset.ValidSplit` or
        :func:`skorch.helper.predefined_split`) that replaces ``validation_fraction``. It
        works on the encoded targets: indices into ``classes_``.

    lr_schedule : {"onecycle", "wsd", "constant"}, default="onecycle"
        ``"onecycle"`` runs :class:`torch.optim.lr_scheduler.OneCycleLR` over
        ``max_epochs`` epochs (stepped every batch); ``"wsd"`` runs
        :class:`~skseg.optim.WarmupStableDecayLR` instead (a tenth of the steps warming
        up, the last 30 % decaying linearly to zero, the peak rate in between).
        :meth:`fit` starts the schedule and ``partial_fit(X, y, epochs=1)`` continues
        it, so a fresh training set can be fed every epoch under one schedule.
        ``"constant"`` keeps ``lr``.

    weight_decay : float, default=1e-4
        Decoupled weight decay of AdamW or Muon (other optimizers get none unless
        ``optimizer__weight_decay`` is given).

    mixed_precision : bool or "auto", default=False
        Run the network under bfloat16 autocast (CPU or CUDA). On CPUs with AMX or
        AVX-512 BF16 this trains about twice as fast; on CPUs without them (AVX2 only)
        bfloat16 is emulated and about ten times *slower* than float32. ``"auto"`` uses
        autocast only where the device running the network has native bfloat16, decided
        at every call, so a model trained on one machine predicts well on another.

    channels_last : bool, default=True
        Use the channels-last memory format, which oneDNN and cuDNN convolutions prefer.

    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` to accept flattened images: ``X`` of shape
        ``(n, C * H * W)`` and ``y`` of shape ``(n, H * W)``; predictions then come back
        flattened too.

    ignore_index : int, default=255
        Label of pixels that neither count in the loss nor in the score.

    test_time_shifts : int, default=0
        Test-time augmentation: :meth:`predict`, :meth:`predict_proba` and :meth:`score`
        average the class probabilities of the image and of this many shifted copies.
        Each copy is the image placed at a different offset (0 to ``2**depth - 1`` pixels
        down and right) in a canvas ``2**depth`` pixels taller and wider, padded by
        repeating the border pixels; its output is cut back to the image. Pooling
        makes the network's output depend on where the image lies on the pooling grid, so
        the copies err differently and their average errs less (on multi-digit MNIST, 7
        shifts raise held-out mean IoU by about 0.01). No offset is used twice, so there
        are at most ``4**depth - 1`` copies: prediction costs ``1 + min(test_time_shifts,
        4**depth - 1)`` forward passes. Training and the per-epoch ``valid_miou`` are
        unaffected.

    device : str, default="cpu"
        Torch device, e.g. ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.

    random_state : int or None, default=None
        Seeds weight initialisation, shuffling and the validation split.

    verbose : int, default=1
        1 prints a table per epoch and shows a progress bar over the batches; 0 is silent.

    **kwargs
        Any other :class:`skorch.NeuralNet` parameter (``callbacks``, ``iterator_train__*``,
        ``warm_start``, ...).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen in ``fit`` (``ignore_index`` excluded).

    n_features_in_ : int
        Values per image (``C * H * W``) seen in ``fit``.

    image_shape_ : tuple of int
        ``(C, H, W)`` of the training images.

    module_ : torch.nn.Module
        The trained network.

    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss`` and ``valid_miou``.

    Examples
    --------
    >>> from skseg import SegNetSegmenter
    >>> from skseg.datasets import load_digits_standin, make_multidigit_mnist
    >>> digits, labels = load_digits_standin()
    >>> X, y = make_multidigit_mnist(16, digits=digits, labels=labels, image_size=32,
    ...                              max_digits=1, random_state=0)
    >>> seg = SegNetSegmenter(width=4, depth=2, max_epochs=1, verbose=0, random_state=0)
    >>> seg.fit(X, y).predict(X).shape
    (16, 32, 32)
    >>> seg.predict_proba(X[:2]).shape == (2, len(seg.classes_), 32, 32)
    True
    """

    _parameter_constraints: dict = {
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 0, None, closed="left")],
        "convs_per_block": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "encoder_skip": ["boolean"],
        "input_skip": ["boolean"],
        "input_thresholds": [Interval(Integral, 0, None, closed="left")],
        "top_block": [StrOptions(set(TOP_BLOCKS))],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [StrOptions({"onecycle", "wsd", "constant"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "mixed_precision": ["boolean", StrOptions({"auto"})],
        "channels_last": ["boolean"],
        "image_shape": [None, tuple, list],
        "ignore_index": [Integral],
        "test_time_shifts": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module=SegNetLite,
        *,
        width=32,
        depth=4,
        convs_per_block=1,
        encoder_skip=True,
        input_skip=True,
        input_thresholds=4,
        top_block="unpool",
        criterion=CrossEntropy2D,
        optimizer=torch.optim.AdamW,
        lr=3e-3,
        max_epochs=10,
        max_time=None,
        batch_size=32,
        validation_fraction=0.1,
        train_split=None,
        lr_schedule="onecycle",
        weight_decay=1e-4,
        mixed_precision=False,
        channels_last=True,
        image_shape=None,
        ignore_index=255,
        test_time_shifts=0,
        device="cpu",
        random_state=None,
        verbose=1,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            device=device,
            verbose=verbose,
            **kwargs,
        )
        self.width = width
        self.depth = depth
        self.convs_per_block = convs_per_block
        self.encoder_skip = encoder_skip
        self.input_skip = input_skip
        self.input_thresholds = input_thresholds
        self.top_block = top_block
        self.max_time = max_time
        self.validation_fraction = validation_fraction
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.mixed_precision = mixed_precision
        self.channels_last = channels_last
        self.image_shape = image_shape
        self.ignore_index = ignore_index
        self.test_time_shifts = test_time_shifts
        self.random_state = random_state

    # ----------------------------------------------------------------- validation
    def _check_params(self):
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )
        convs = self.convs_per_block
        if not isinstance(convs, Integral) and (
            len(convs) != self.depth or not all(isinstance(n, Integral) and n >= 1 for n in convs)
        ):
            raise InvalidParameterError(
                f"The 'convs_per_block' parameter of {type(self).__name__} must be an int >= 1 "
                f"or a sequence of depth={self.depth} such ints. Got {convs!r} instead."
            )

    def _check_X(self, X, reset):
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
                    stacklevel=4,
                )
            X = img_as_float32(X)
        # scikit-learn's own checks first: sparse, complex, object, empty, NaN / inf
        X = check_array(X, dtype=np.float32, allow_nd=True, input_name="X")
        if X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
            raise ValueError(
                f"X of shape {X.shape} looks like channels-last images (n, H, W, C); "
                "SegNetSegmenter takes (n, C, H, W): pass X.transpose(0, 3, 1, 2)"
            )
        flat = X.ndim == 2
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            shape = (1, *shape) if len(shape) == 2 else shape
            if X.ndim != 2 or X.shape[1] != math.prod(shape):
                raise ValueError(
                    f"with image_shape={self.image_shape}, X must have shape "
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
        factor = 2**self.depth
        if flat and self.image_shape is None and factor > 1 and X.shape[1] > 4:
            raise ValueError(
                f"X of shape {X.shape} is read as {len(X)} single pixels of {X.shape[1]} "
                "channels, which cannot be pooled; pass images of shape (n, H, W) or "
                "(n, C, H, W), or flattened images with image_shape=(H, W)"
            )
        if X.shape[-2] % factor or X.shape[-1] % factor:
            raise ValueError(
                f"image size {X.shape[-2]} x {X.shape[-1]} cannot be pooled {self.depth} "
                f"times: height and width must be divisible by 2**depth = {factor}"
            )
        if reset:
            self.image_shape_ = X.shape[1:]
            self.n_features_in_ = math.prod(X.shape[1:])
        elif flat and math.prod(X.shape[1:]) != self.n_features_in_:
            raise ValueError(
                f"X has {math.prod(X.shape[1:])} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input"
            )
        elif X.shape[1] != self.image_shape_[0]:
            raise ValueError(
                f"X has {X.shape[1]} channels, but {type(self).__name__} was fitted on "
                f"{self.image_shape_[0]}"
            )
        return X

    def _check_y(self, y, X):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
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

    # ------------------------------------------------------------------- skorch hooks
    def initialize_module(self):
        if not hasattr(self, "classes_"):
            self._size_without_data()
        kwargs = {
            "in_channels": self.image_shape_[0],
            "n_classes": len(self.classes_),
            "width": self.width,
            "depth": self.depth,
            "convs_per_block": self.convs_per_block,
            "encoder_skip": self.encoder_skip,
            "input_skip": self.input_skip,
            "input_thresholds": self.input_thresholds,
            "top_block": self.top_block,
            **self.get_params_for("module"),
        }
        module = self.initialized_instance(self.module, kwargs)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module_ = module
        return self

    def _size_without_data(self):
        """Channels and classes from ``image_shape`` and ``module__n_classes``, so that
        skorch's ``initialize()`` then ``load_params(...)`` works before any fit."""
        n_classes = self.get_params_for("module").get("n_classes")
        if self.image_shape is None or n_classes is None:
            raise NotFittedError(
                "SegNetSegmenter sizes its network from the training data (channels, "
                "classes): call fit, or SegNetSegmenter.load for a saved model; to "
                "initialize without data, pass image_shape and module__n_classes"
            )
        shape = tuple(self.image_shape)
        self.image_shape_ = (1, *shape) if len(shape) == 2 else shape
        self.n_features_in_ = math.prod(self.image_shape_)
        self.classes_ = np.arange(n_classes)

    def initialize_criterion(self):
        kwargs = {"ignore_index": self.ignore_index, **self.get_params_for("criterion")}
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        named = self.get_all_learnable_params()
        args, kwargs = self.get_params_for_optimizer("optimizer", named)
        if self.optimizer in (torch.optim.AdamW, Muon):
            kwargs.setdefault("weight_decay", self.weight_decay)
        if self.optimizer is Muon:
            if "param_groups" not in self.get_params_for("optimizer"):
                args = (muon_param_groups(self.module_),)
            if self._bf16(resolve_device(self.device)):
                kwargs.setdefault("ns_dtype", torch.bfloat16)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        return self

    @property
    def _default_callbacks(self):
        callbacks = list(super()._default_callbacks)
        callbacks.insert(0, ("lr_schedule", PlannedLRSchedule()))
        callbacks.insert(1, ("stop_on_non_finite_loss", StopOnNonFiniteLoss()))
        callbacks.insert(-1, ("progress_bar", QuietProgressBar()))
        return callbacks

    def get_split_datasets(self, X, y=None, **fit_params):
        if self.train_split is not None:
            return super().get_split_datasets(X, y, **fit_params)
        dataset = self.get_dataset(X, y)
        if not self.validation_fraction:
            return dataset, None
        if len(dataset) - math.ceil(self.validation_fraction * len(dataset)) < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} holds out every image "
                f"of n_samples={len(dataset)}, leaving none to train on; pass more images "
                "or validation_fraction=0"
            )
        split = ValidSplit(self.validation_fraction, random_state=self.random_state)
        return split(dataset, y)

    def infer(self, x, **fit_params):
        x = torch.as_tensor(x, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16(x.device)):
            return self.module_(x, **fit_params)

    def _bf16(self, device):
        if self.mixed_precision == "auto":
            return has_fast_bfloat16(device)
        return bool(self.mixed_precision)

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        _, yb = batch
        yb = yb.to(step["y_pred"].device)
        keep = yb != self.ignore_index
        n = len(self.classes_)
        codes = yb[keep] * n + step["y_pred"].argmax(1)[keep]
        self.valid_confusion_ += torch.bincount(codes, minlength=n * n).reshape(n, n).cpu()
        return step

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        n = len(self.classes_)
        self.valid_confusion_ = torch.zeros(n, n, dtype=torch.int64)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)
        if dataset_valid is not None:
            iou = confusion_matrix_iou(self.valid_confusion_.numpy())
            self.history.record("valid_miou", float(np.nanmean(iou)))

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, **fit_params):
        """Train the network on images ``X`` and label maps ``y``.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W)
            Images; flattened ``(n, C * H * W)`` with ``image_shape``. Integer and
            boolean images are scaled as :func:`skimage.util.img_as_float` does: uint8
            by 255, uint16 by 65535, signed integers by their type's largest value (so
            an int64 array of 0-255 values becomes nearly 0: convert it to uint8 or
            float first), bool to 0 and 1. The same scaling applies in ``predict``.

        y : array-like of shape (n, H, W)
            Integer class of every pixel; ``ignore_index`` marks pixels to ignore.

        **fit_params : dict
            Passed on to :meth:`skorch.NeuralNet.fit`.

        Returns
        -------
        self : SegNetSegmenter
            The fitted estimator.
        """
        return self._fit(X, y, None, **fit_params)

    def _fit(self, X, y, classes, **fit_params):
        self._check_params()
        if self.device is not None:  # None: an accelerator places the tensors
            resolve_device(self.device)  # a clear error when CUDA is asked for and absent
        X = self._check_X(X, reset=True)
        y = self._check_y(y, X)
        known = y[y != self.ignore_index]
        if known.size == 0:
            raise ValueError("y has no labelled pixel (all equal ignore_index)")
        if classes is None:
            self.classes_ = np.unique(known)
        else:
            self.classes_ = np.unique(check_integer_labels(classes, "classes"))
        encoded = self._encode(y)
        with self._own_torch_rng():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            return NeuralNet.partial_fit(self, X, encoded, **fit_params)

    def _own_torch_rng(self):
        """Seed torch from ``random_state`` inside, and leave the caller's generators as
        they were outside (``random_state=None`` uses and advances them, as scikit-learn's
        estimators use numpy's global generator)."""
        if self.random_state is None:
            return contextlib.nullcontext()
        seed = self.random_state
        if not isinstance(seed, Integral):
            seed = check_random_state(seed).randint(2**31)
        device = torch.device(self.device or "cpu")
        devices = [device.index or 0] if device.type == "cuda" else []
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(int(seed))
        return stack

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Continue training on ``X``, ``y`` (labels must be among ``classes_``).

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W)
            Images.

        y : array-like of shape (n, H, W)
            Label maps.

        classes : array-like of shape (n_classes,), default=None
            On the first call (when the estimator is not fitted yet), all the labels
            that later calls may bring, as scikit-learn's incremental estimators take
            them; ``None`` takes the labels of ``y``. Ignored afterwards: the classes are
            fixed by the first call or :meth:`fit`.

        **fit_params : dict
            Passed on to :meth:`skorch.NeuralNet.partial_fit`.

        Returns
        -------
        self : SegNetSegmenter
        """
        if not getattr(self, "initialized_", False) or not hasattr(self, "classes_"):
            return self._fit(X, y, classes, **fit_params)
        X = self._check_X(X, reset=False)
        y = self._check_y(y, X)
        return super().partial_fit(X, self._encode(y), **fit_params)

    def _encode(self, y):
        known = y != self.ignore_index
        unknown = np.setdiff1d(np.unique(y[known]), self.classes_)
        if len(unknown):
            raise ValueError(
                f"y contains labels {unknown.tolist()} not seen in fit (classes_ = "
                f"{self.classes_.tolist()})"
            )
        return np.where(known, np.searchsorted(self.classes_, y), self.ignore_index)

    def _prepare(self, X):
        check_is_fitted(self, "classes_")
        return self._check_X(X, reset=False)

    def _restore_layout(self, out, X):
        """Give per-pixel output ``(n, [classes,] H, W)`` the layout the input ``X`` had."""
        lead = out.shape[:-2]
        if self.image_shape is not None:
            return out.reshape(*lead, -1)  # flattened images in, flattened maps out
        if np.ndim(X) == 2:
            return out.reshape(lead)  # pixel rows in, one value per pixel out
        return out

    def predict(self, X):
        """Class of every pixel.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W)
            Images (any size divisible by ``2**depth``).

        Returns
        -------
        y_pred : ndarray of shape (n, H, W)
            Labels from ``classes_``.
        """
        # argmax over the last axis: torch's argmax over axis 1 is several times slower
        batches = [
            proba.movedim(1, -1).contiguous().argmax(-1).numpy()
            for proba in self._proba_batches(X, scores=True)
        ]
        return self._restore_layout(self.classes_[np.concatenate(batches)], X)

    def predict_proba(self, X):
        """Class probabilities of every pixel.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W)
            Images.

        Returns
        -------
        proba : ndarray of shape (n, n_classes, H, W)
            Softmax over ``classes_``, float32 (``(n, n_classes, H * W)`` with
            ``image_shape``; ``(n, n_classes)`` for pixel rows).
        """
        batches = [proba.numpy() for proba in self._proba_batches(X)]
        return self._restore_layout(np.concatenate(batches), X)

    def _proba_batches(self, X, *, scores=False):
        """Softmax of every batch of ``X``, averaged over the test-time shifted copies.

        With ``scores=True`` and no shifted copies, the raw class scores instead: their
        argmax is the same, without the softmax.
        """
        X = self._prepare(X)
        period = 2**self.depth
        offsets = shift_offsets(self.test_time_shifts, period)
        # a DataLoader's iterator draws a seed from torch's generator when it starts:
        # keep the caller's untouched
        with torch.random.fork_rng(devices=[]):
            batches = iter(self.get_iterator(self.get_dataset(X), training=False))
        self.check_is_fitted()
        self._set_training(False)
        for Xb, _ in batches:
            Xb = Xb.to(self.device)
            height, width = Xb.shape[-2:]
            proba = 0
            with torch.inference_mode():
                for dy, dx in offsets:
                    view = Xb
                    if dy or dx:  # a canvas `period` pixels larger, the image at (dy, dx)
                        pad = (dx, period - dx, dy, period - dy)
                        view = F.pad(Xb, pad, mode="replicate")
                    out = self.infer(view)[..., dy : dy + height, dx : dx + width]
                    if scores and len(offsets) == 1:
                        proba = out
                    else:
                        proba = proba + torch.softmax(out.float(), dim=1)
                if not (scores and len(offsets) == 1):
                    proba = proba / len(offsets)
            yield proba.cpu()

    def score(self, X, y):
        """Mean IoU of the predictions on ``X`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W)
            Images.

        y : array-like of shape (n, H, W)
            True label maps. A label outside ``classes_`` is a class the model never
            predicts: it enters the mean with IoU 0, as in scikit-learn's metrics, so that
            a cross-validation fold with a class its training part lacked is scored, not
            rejected (:meth:`partial_fit` rejects such labels).

        Returns
        -------
        score : float
            :func:`~skseg.metrics.mean_iou`.
        """
        return mean_iou(np.asarray(y), self.predict(X), ignore_index=self.ignore_index)

    def save(self, path, *, weights_dtype=None):
        """Save the trained estimator to one file that loads without running code.

        Stores the simple constructor parameters (``verbose`` included), ``classes_``,
        the image shape, the training ``history`` and the network's weights as tensors,
        with a format name, a format version and a SHA-256 checksum of the weights, for
        :meth:`load`. Classes passed as ``module``, ``criterion`` or ``optimizer`` are not
        stored; pass them to :meth:`load` again.

        Unlike this file, a pickle of the estimator (``pickle``, ``joblib``) runs code
        from the file when it is loaded: load pickles only from sources you trust.

        Parameters
        ----------
        path : str or path-like
            Target file (conventionally ``.pt``).

        weights_dtype : torch.dtype or None, default=None
            Store the floating-point weights in this dtype, e.g. ``torch.bfloat16`` for a
            file half the size; :meth:`load` converts them back to the network's dtype.
            ``None`` stores them as they are.
        """
        check_is_fitted(self, "classes_")
        params = {name: getattr(self, name) for name in _SAVED_PARAMS}
        for name in ("image_shape", "convs_per_block"):
            if isinstance(params[name], (tuple, list)):
                params[name] = [int(v) for v in params[name]]
        state = self.module_.state_dict()
        if weights_dtype is not None:
            state = {
                name: tensor.to(weights_dtype) if tensor.is_floating_point() else tensor
                for name, tensor in state.items()
            }
        torch.save(
            {
                "format": FILE_FORMAT,
                "format_version": FILE_FORMAT_VERSION,
                "params": params,
                "classes": torch.as_tensor(self.classes_),
                "image_shape": list(self.image_shape_),
                "history": json.dumps(self.history.to_list(), default=float),
                "state_dict": state,
                "checksum": _weights_checksum(state),
            },
            path,
        )

    @classmethod
    def load(cls, path, **params):
        """Load an estimator written by :meth:`save`.

        The file is read with ``torch.load(weights_only=True)``: it can only hold tensors
        and plain values, never code. A file that is not a model file of this class
        (another torch file, a truncated or corrupted one, one written by a newer skseg)
        raises a ``ValueError`` that says which.

        Parameters
        ----------
        path : str or path-like
            File written by :meth:`save`.

        **params : dict
            Constructor parameters to set (e.g. ``device``, ``verbose``, or a custom
            ``module`` class).

        Returns
        -------
        estimator : SegNetSegmenter
            Ready to predict.
        """
        saved = _read_model_file(path)
        stored = dict(saved["params"])
        stored.setdefault("input_thresholds", 0)  # files from before the parameters
        stored.setdefault("top_block", "unpool")
        for name in ("image_shape", "convs_per_block"):
            if isinstance(stored.get(name), list):
                stored[name] = tuple(stored[name])
        estimator = cls(**{**stored, **params})
        resolve_device(estimator.device)
        estimator.classes_ = saved["classes"].numpy()
        estimator.image_shape_ = tuple(saved["image_shape"])
        estimator.n_features_in_ = math.prod(estimator.image_shape_)
        estimator.initialize()
        try:
            estimator.module_.load_state_dict(saved["state_dict"])
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: the weights do not fit the network the file's parameters build "
                f"({exc})"
            ) from exc
        estimator.module_.to(estimator.device)
        if "history" in saved:
            from skorch.history import History

            estimator.history_ = History(json.loads(saved["history"]))
        return estimator

    def _get_param_names(self):
        # skorch lists its private bookkeeping (_params_to_validate) among the
        # parameters; clone and get_params must see only the constructor's
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        # images (n, H, W) and label maps; estimator_type stays None: as a "classifier"
        # scikit-learn's cross-validation would try to stratify on label maps
        tags.input_tags.three_d_array = True
        tags.target_tags.two_d_labels = True
        return tags


def _weights_checksum(state_dict):
    """SHA-256 of the names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_model_file(path):
    """The dictionary :meth:`SegNetSegmenter.save` wrote, or a ValueError saying why not."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, not a torch file, or holding code
        raise ValueError(
            f"{path} is not a SegNetSegmenter model file: it cannot be read as a file of "
            f"tensors and plain values ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    if not isinstance(saved, dict) or not {"params", "state_dict"} <= saved.keys():
        raise ValueError(
            f"{path} is not a SegNetSegmenter model file (written by "
            "SegNetSegmenter.save); for skorch's save_params files, build the estimator "
            "and call load_params"
        )
    version = saved.get("format_version", 0)  # files from before the versions
    if saved.get("format", FILE_FORMAT) != FILE_FORMAT:
        raise ValueError(f"{path} holds a {saved['format']!r} file, not a SegNetSegmenter")
    if not isinstance(version, int) or version > FILE_FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in format version {version!r} by a newer skseg; this "
            f"version reads up to {FILE_FORMAT_VERSION}: upgrade skseg to load it"
        )
    if version >= 1 and _weights_checksum(saved["state_dict"]) != saved.get("checksum"):
        raise ValueError(f"{path} is corrupted: its weights do not match their checksum")
    return saved


def shift_offsets(n_shifts, period):
    """Offsets ``(dy, dx)`` of the copies that test-time augmentation averages.

    The unshifted image comes first; the shifted copies follow a two-dimensional
    Kronecker (R2) sequence, which spreads any number of points evenly over the
    ``period x period`` grid of offsets that pooling distinguishes. An offset the
    sequence has already given is skipped, so no view is counted twice, and there are at
    most ``period**2 - 1`` shifted copies.

    Parameters
    ----------
    n_shifts : int
        Shifted copies besides the image itself.

    period : int
        ``2**depth``: offsets are taken modulo it.

    Returns
    -------
    offsets : list of tuple of int
        ``min(n_shifts, period**2 - 1) + 1`` distinct pairs, ``(0, 0)`` first.

    Examples
    --------
    >>> from skseg.segnet import shift_offsets
    >>> shift_offsets(3, 16)
    [(0, 0), (4, 1), (0, 10), (12, 3)]
    """
    if not isinstance(n_shifts, Integral) or n_shifts < 0:
        raise ValueError(f"test_time_shifts must be an integer >= 0, got {n_shifts!r}")
    plastic = 1.32471795724474602596  # the plastic number, x**3 = x + 1
    steps = (1 / plastic, 1 / plastic**2)
    n_offsets = min(n_shifts, period * period - 1) + 1
    sequence = (
        tuple(int(period * ((0.5 + i * step) % 1)) for step in steps)
        for i in range(1, 4 * period * period)
    )
    # the sequence reaches every cell within about 2.5 * period**2 steps; the grid in
    # raster order after it makes sure that every cell comes
    candidates = itertools.chain([(0, 0)], sequence, itertools.product(range(period), repeat=2))
    offsets, seen = [], set()
    for offset in candidates:
        if len(offsets) == n_offsets:
            break
        if offset not in seen:
            seen.add(offset)
            offsets.append(offset)
    return offsets


def fit_on_fresh_compositions(
    model, digits, labels, *, n_images, seconds=None, random_state=0, **compose
):
    """Train ``model`` for ``model.max_epochs`` epochs on a new composed set every epoch.

    Every epoch composes its images (:func:`~skseg.datasets.make_multidigit_mnist`) and
    trains one epoch on them with ``partial_fit(X, y, epochs=1)``, which continues the
    learning-rate schedule (``lr_schedule``) over all the epochs. Fresh compositions
    each epoch keep the network from memorising one set of images; only one epoch's
    images are in memory at a time.
    The classes are those of ``labels`` and the background, whichever the first epoch's
    images happen to hold. Each epoch's number of images is recorded in
    ``model.history`` as ``"n_images"``.

    Parameters
    ----------
    model : SegNetSegmenter
        Unfitted (or to be refitted) estimator.

    digits : ndarray of shape (n_digits, 28, 28)
        Source digits.

    labels : ndarray of shape (n_digits,)
        Their classes.

    n_images : int or sequence of int
        Images composed per epoch: one number for every epoch, or one per epoch (as many
        as ``model.max_epochs``). With ``seconds``, an int that sizes the first epoch.

    seconds : float, default=None
        Train for about this long: after each epoch, the epochs left are sized to end
        ``seconds`` after the start at the rate measured so far (composing, training and
        validating all counted), at least one batch each; the learning-rate schedule
        re-plans its steps accordingly. The sizes are then found in ``model.history[:,
        "n_images"]``, and passing them as ``n_images`` repeats the run exactly.

    random_state : int, default=0
        Epoch ``e`` composes with seed ``random_state * 1000 + e``.

    **compose : dict
        Further arguments of :func:`~skseg.datasets.make_multidigit_mnist`.

    Returns
    -------
    model : SegNetSegmenter
        The trained estimator.

    Examples
    --------
    >>> from skseg import SegNetSegmenter
    >>> from skseg.datasets import load_digits_standin
    >>> from skseg.segnet import fit_on_fresh_compositions
    >>> digits, labels = load_digits_standin()
    >>> model = SegNetSegmenter(width=4, depth=2, max_epochs=2, verbose=0)
    >>> fit_on_fresh_compositions(model, digits, labels, n_images=[16, 32], image_size=32)
    ... # doctest: +ELLIPSIS
    <class 'skseg.segnet.SegNetSegmenter'>[initialized](...
    >>> model.history[:, "n_images"]
    [16, 32]
    """
    from .datasets import BACKGROUND, make_multidigit_mnist

    epochs = model.max_epochs
    sizes = [n_images] * epochs if isinstance(n_images, Integral) else list(n_images)
    if len(sizes) != epochs or not all(isinstance(n, Integral) and n > 0 for n in sizes):
        raise ValueError(
            f"n_images must be a positive int or {epochs} positive ints (one per epoch of "
            f"max_epochs={epochs}), got {n_images!r}"
        )
    if seconds is not None and (not isinstance(n_images, Integral) or not seconds > 0):
        raise ValueError(
            "with seconds, n_images must be one positive int (the first epoch's size) and "
            f"seconds > 0, got n_images={n_images!r}, seconds={seconds!r}"
        )
    start = time.perf_counter()
    for epoch in range(epochs):
        if seconds is not None and epoch > 0:
            elapsed = time.perf_counter() - start
            rate = sum(sizes[:epoch]) / elapsed
            left = rate * (seconds - elapsed) / (epochs - epoch)
            sizes[epoch] = max(model.batch_size, int(left))
        X, y = make_multidigit_mnist(
            sizes[epoch],
            digits=digits,
            labels=labels,
            random_state=random_state * 1000 + epoch,
            **compose,
        )
        if epoch == 0:  # a new fit, with all the classes later epochs may bring
            model._fit(X, y, np.union1d(labels, [BACKGROUND]), epochs=1)
        else:
            model.partial_fit(X, y, epochs=1)
        model.history.record("n_images", sizes[epoch])
    return model


def _untrained_clone(model, X, y, **params):
    """A silent clone of ``model``, initialised on ``X``, ``y`` (classes, network) only."""
    probe = clone(model).set_params(verbose=0, validation_fraction=0, callbacks=None, **params)
    return probe.fit(X, y, epochs=0)


def images_per_epoch_for_budget(
    model, digits, labels, *, seconds, n_probe_batches=6, random_state=0, **compose
):
    """How many fresh images per epoch let ``model`` train for about ``seconds`` in all.

    Times a few training steps of a silent clone of ``model`` on composed images (after
    one warm-up step) and scales the measured rate to ``model.max_epochs`` epochs,
    counting the share of each epoch that is held out for validation as training too (a
    small overestimate of its cost, on the safe side). Used by
    :func:`fit_on_fresh_compositions` callers that plan by time, as
    ``skseg train-segnet`` does by default: the same command then fits the budget on
    slower and faster machines, and the planned number is printed so that a run can be
    repeated exactly with ``--n-train``.

    Parameters
    ----------
    model : SegNetSegmenter
        The estimator to be trained (it is not changed).

    digits, labels : ndarray
        Source digits and their classes.

    seconds : float
        Training time to plan for.

    n_probe_batches : int, default=6
        Timed training batches.

    random_state : int, default=0
        Seed of the probe images.

    **compose : dict
        Further arguments of :func:`~skseg.datasets.make_multidigit_mnist`.

    Returns
    -------
    n_images : int
        Images per epoch (at least one batch).

    rate : float
        Measured training images per second.

    Examples
    --------
    >>> from skseg import SegNetSegmenter
    >>> from skseg.datasets import load_digits_standin
    >>> from skseg.segnet import images_per_epoch_for_budget
    >>> digits, labels = load_digits_standin()
    >>> model = SegNetSegmenter(width=4, depth=2, max_epochs=2, batch_size=4)
    >>> n_images, rate = images_per_epoch_for_budget(
    ...     model, digits, labels, seconds=5, image_size=32)
    >>> n_images >= 4 and rate > 0
    True
    """
    from .datasets import make_multidigit_mnist

    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    batch = model.batch_size
    X, y = make_multidigit_mnist(
        batch * (n_probe_batches + 1),
        digits=digits,
        labels=labels,
        random_state=random_state,
        **compose,
    )
    probe = _untrained_clone(model, X, y, max_epochs=1, lr_schedule="constant")
    probe.partial_fit(X[:batch], y[:batch])  # the first step is slower than the rest
    start = time.perf_counter()
    probe.partial_fit(X[batch:], y[batch:])
    rate = batch * n_probe_batches / (time.perf_counter() - start)
    n_images = int(rate * seconds / max(1, model.max_epochs))
    return max(batch, n_images), rate


def seconds_to_predict(model, X, y=None, *, n_probe_images=None):
    """How long ``model`` will take to predict ``X`` once trained, timed before training.

    Initialises a silent, untrained clone of ``model`` (the network's cost does not depend
    on its weights), predicts a first batch to warm up, times the prediction of
    ``n_probe_images`` images of ``X`` (test-time shifts and all) and scales to all of
    ``X``. ``skseg train-segnet`` uses it to leave the evaluation its share of the
    ``--time-budget``.

    Parameters
    ----------
    model : SegNetSegmenter
        The estimator to be trained (it is not changed).

    X : array-like of shape (n_samples, n_channels, height, width) or (n_samples, height, width)
        The images to be predicted.

    y : array-like of shape (n_samples, height, width), default=None
        Label maps of ``X``, if known: the clone's classes are taken from the timed
        images' labels, as training would take them (by default one class, which
        underestimates only the cost of the class scores).

    n_probe_images : int, default=None
        Images timed; by default four batches (``4 * model.batch_size``), at most all of
        ``X``.

    Returns
    -------
    seconds : float
        Estimated seconds to predict all of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from skseg import SegNetSegmenter
    >>> from skseg.segnet import seconds_to_predict
    >>> model = SegNetSegmenter(width=4, depth=2, batch_size=4)
    >>> seconds_to_predict(model, np.zeros((10, 1, 16, 16), dtype=np.float32)) > 0
    True
    """
    X = np.asarray(X)
    if X.ndim < 3 or len(X) == 0:
        raise ValueError(f"X must hold images, (n, H, W) or (n, C, H, W), got shape {X.shape}")
    n = min(len(X), n_probe_images or 4 * model.batch_size)
    labels = np.zeros((1, *X.shape[-2:]), dtype=np.int64) if y is None else np.asarray(y)[:n]
    probe = _untrained_clone(model, X[: len(labels)], labels)
    probe.predict(X[: min(n, model.batch_size)])  # the first call is slower than the rest
    start = time.perf_counter()
    probe.predict(X[:n])
    return (time.perf_counter() - start) * len(X) / n
