"""SegNet semantic segmentation as a scikit-learn estimator, built on skorch."""

import contextlib
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.dataset import ValidSplit

from .._device import has_fast_bfloat16, resolve_device
from .._validation import check_integer_labels
from ..metrics import confusion_matrix_iou, mean_iou
from ._augment import averaged_scores, max_overlay, random_affine, shift_offsets
from ._callbacks import PlannedLRSchedule, QuietProgressBar, StopOnNonFiniteLoss
from ._losses import CrossEntropy2D
from ._network import TOP_BLOCKS, SegNetLite
from ._optim import Muon, muon_param_groups
from ._persistence import load_model, save_model
from ._validation import check_images, check_label_maps

#: images smaller than this (in height or width) are not augmented by ``augment=True``
MIN_AUGMENTED_SIZE = 16
#: most pixels in one forward pass of prediction (bounds its memory: about 1.4 GB in
#: bfloat16 with the default network), whatever the batch size; 1,024 images of 64 x 64
PREDICT_PIXELS = 2**22
#: times ``augment=True`` overlays every training image with a moved image of its batch
OVERLAYS = 2


class SegNetSegmenter(NeuralNet):
    """Semantic segmentation with a simplified SegNet, trained by skorch.

    A :class:`skorch.NeuralNet` (so skorch's callbacks, ``history``,
    ``save_params``/``load_params`` all work) around :class:`~skseg.segnet.SegNetLite`,
    trained with the per-pixel :class:`~skseg.segnet.CrossEntropy2D` and scored by
    :func:`~skseg.metrics.mean_iou`. It is a scikit-learn estimator: it clones, works in
    :class:`~sklearn.pipeline.Pipeline` and
    :class:`~sklearn.model_selection.GridSearchCV` (``scoring=skseg.metrics.iou_scorer``).

    The defaults are the best recipe measured on multi-digit MNIST for a fit of a few
    minutes on 2 CPU cores (the User Guide names slower, more accurate settings): SegNet's
    encoder and decoder over three levels with both skips and learnable intensity
    thresholds, two convolutions per block below full resolution, class scores upsampled
    from half resolution (``top_block="upsample"``), :class:`~skseg.segnet.Muon` for the
    hidden convolutions and AdamW for the rest at batch 32, all the training images
    (none held out for validation), a warmup-stable-decay learning-rate schedule over 16
    epochs, random affine copies of the training images overlaid with each other twice
    (``augment=True``), and bfloat16 where the device has it natively.

    Read more in the :ref:`User Guide <segnet>`.

    Parameters
    ----------
    module : type, default=SegNetLite
        Network class; called with ``in_channels``, ``n_classes``, ``width``, ``depth``
        and any ``module__*`` parameters.

    width : int, default=32
        Channels of the first encoder block (doubled per level).

    depth : int, default=3
        Encoder levels; image sides must be at least ``2**depth`` pixels (any size
        above that works, see :class:`~skseg.segnet.SegNetLite`). A fourth level (8 x 8
        for 64 x 64 images, 256 channels) makes an epoch 12 to 25 % longer and, at the
        same number of epochs, scores no higher on multi-digit MNIST; the default spends
        that time on more epochs.

    convs_per_block : int, sequence of int or None, default=None
        Conv2d -> BatchNorm2d -> ReLU units per encoder and decoder block, for all levels
        or one number per level, top level first. ``None`` gives the top level one unit
        and every level below two (``(1, 2, 2)`` at ``depth=3``): a second unit at
        full resolution costs the most time for the least gain.

    encoder_skip : bool, default=True
        Add each encoder block's output to the decoder block of the same level after
        unpooling (see :class:`~skseg.segnet.SegNetLite`).

    input_skip : bool, default=True
        Feed the input image to the last decoder block as well (see
        :class:`~skseg.segnet.SegNetLite`). ``encoder_skip=False,
        input_skip=False`` is the plain SegNet.

    input_thresholds : int, default=4
        With ``input_skip``, soft steps of the image at that many learnable intensity
        thresholds join it (:class:`~skseg.segnet.IntensityThresholds`), so that
        the network can draw label boundaries between adjacent grey levels; ``0`` feeds
        the image alone.

    top_block : {"upsample", "unpool"}, default="upsample"
        ``"upsample"`` computes the class scores at half resolution, upsamples them
        bilinearly and adds per-pixel scores from the input skip, which trains 1.4 to 1.7
        times as many images per second; ``"unpool"`` is SegNet's top decoder block, at
        full resolution (see :class:`~skseg.segnet.SegNetLite`).

    criterion : type, default=CrossEntropy2D
        Loss class; ``criterion__*`` parameters reach it (``ignore_index`` is passed).

    optimizer : type, default=skseg.segnet.Muon
        Optimizer class; ``optimizer__*`` parameters reach it. With
        :class:`skseg.segnet.Muon` the weights of the hidden 3x3 convolutions take Muon
        steps and the other parameters AdamW steps (:func:`~skseg.segnet.muon_param_groups`)
        unless ``optimizer__param_groups`` says otherwise. Its Newton-Schulz iterations
        run in bfloat16 on CUDA devices when ``mixed_precision`` runs the network in
        bfloat16, and in float32 on CPUs, where they take less time than in bfloat16 even
        with AMX (unless ``optimizer__ns_dtype`` is given).

    lr : float, default=5e-3
        Learning rate (the peak rate of ``lr_schedule``; Muon's part runs 16 times
        higher).

    max_epochs : int, default=16
        Passes over the training data.

    max_time : float or None, default=None
        Seconds that one call of :meth:`fit` (or :meth:`partial_fit`) may train. After
        the first epoch, training runs only as many of the ``max_epochs`` epochs as fit
        in the time left at the measured rate, and the learning-rate schedule is planned
        to end with the last of them; a batch that ends past ``max_time`` stops training.
        Validation and setting up are not counted. ``None`` runs all ``max_epochs``.

    batch_size : int, default=32
        Images per batch. Prediction splits a batch further where it would hold more
        than ``2**22`` pixels (4 megapixels), so that large images predict in bounded
        memory (about 1.4 GB per pass in bfloat16 with the default network).

    validation_fraction : float, default=0
        Share of the training images held out to report ``valid_loss`` and ``valid_miou``
        every epoch (e.g. ``0.1``); 0 trains on all of them and reports the training
        loss only.

    train_split : callable or None, default=None
        A skorch split (e.g. :class:`skorch.dataset.ValidSplit` or
        :func:`skorch.helper.predefined_split`) that replaces ``validation_fraction``. It
        works on the encoded targets: indices into ``classes_``.

    lr_schedule : {"wsd", "onecycle", "constant"}, default="wsd"
        ``"wsd"`` runs :class:`~skseg.segnet.WarmupStableDecayLR` over ``max_epochs``
        epochs, stepped every batch (a tenth of the steps warming up, the last 30 %
        decaying linearly to zero, the peak rate in between); ``"onecycle"`` runs
        :class:`torch.optim.lr_scheduler.OneCycleLR` instead.
        :meth:`fit` starts the schedule and ``partial_fit(X, y, epochs=1)`` continues
        it, so a fresh training set can be fed every epoch under one schedule.
        ``"constant"`` keeps ``lr``.

    weight_decay : float, default=1e-4
        Decoupled weight decay of AdamW or Muon (other optimizers get none unless
        ``optimizer__weight_decay`` is given).

    augment : bool, "affine" or callable, default=True
        Replace every training batch by a random affine copy of itself
        (:func:`~skseg.segnet.random_affine`: each image and its label map rotated by up
        to 10 degrees, scaled by up to 10 % and shifted by up to 2 pixels, together,
        by nearest neighbour; pixels from outside get ``ignore_index``), then overlay
        every image with another image of the batch moved by up to 30 % of its size, by
        the pixelwise maximum, and the result once more the same way
        (:func:`~skseg.segnet.max_overlay` twice: where the other image is brighter, its
        pixel and label win). The overlay suits images whose objects
        are brighter than their background and whose labels are the brightest
        object's, such as multi-digit MNIST; ``"affine"`` leaves it out. Images smaller
        than 16 x 16 pixels (and pixel rows) are not augmented. A callable
        ``augment(X, y) -> (X, y)`` on the batch's tensors (images ``(n, C, H, W)``,
        labels ``(n, H, W)`` as indices into ``classes_``) replaces both. ``False``
        trains on the images as given. Validation images are never augmented.

    mixed_precision : bool or "auto", default="auto"
        Run the network under bfloat16 autocast (CPU or CUDA). On CPUs with AMX or
        AVX-512 BF16 this trains 1.5 to 2 times as fast; on CPUs without them (AVX2 only)
        bfloat16 is emulated and about ten times *slower* than float32. ``"auto"`` uses
        autocast only where the device running the network has native bfloat16, decided
        at every call, so a model trained on one machine predicts well on another;
        ``False`` is float32 everywhere, the same numbers on every machine.

    channels_last : bool, default=True
        Use the channels-last memory format, which oneDNN and cuDNN convolutions prefer.

    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` to accept flattened images: ``X`` of shape
        ``(n, C * H * W)`` and ``y`` of shape ``(n, H * W)``; predictions then come back
        flattened too.

    ignore_index : int, default=255
        Label of pixels that neither count in the loss nor in the score.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn's classifiers, per pixel.
        A dict maps class labels to weights (classes it leaves out weigh 1);
        ``"balanced"`` weighs each class by ``n_pixels / (n_classes * its_pixels)``,
        counted over the labelled pixels of the label maps given to :meth:`fit` (or the
        first :meth:`partial_fit`), so that rare classes count as much as common ones.
        ``None`` weighs every pixel 1. Passing ``criterion__weight`` as well is an error.

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

    class_weight_ : ndarray of shape (n_classes,) or None
        Weight of each class of ``classes_`` in the loss, from ``class_weight``.

    n_features_in_ : int
        Values per image (``C * H * W``) seen in ``fit``.

    image_shape_ : tuple of int
        ``(C, H, W)`` of the training images.

    module_ : torch.nn.Module
        The trained network.

    history_ : skorch.History
        Per-epoch ``train_loss``, and ``valid_loss`` and ``valid_miou`` when images are
        held out for validation (``validation_fraction`` or ``train_split``).

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
        "convs_per_block": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
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
        "augment": ["boolean", StrOptions({"affine"}), callable],
        "mixed_precision": ["boolean", StrOptions({"auto"})],
        "channels_last": ["boolean"],
        "image_shape": [None, tuple, list],
        "ignore_index": [Integral],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "test_time_shifts": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, StrOptions({"disable"}), None],
    }

    def __init__(
        self,
        module=SegNetLite,
        *,
        width=32,
        depth=3,
        convs_per_block=None,
        encoder_skip=True,
        input_skip=True,
        input_thresholds=4,
        top_block="upsample",
        criterion=CrossEntropy2D,
        optimizer=Muon,
        lr=5e-3,
        max_epochs=16,
        max_time=None,
        batch_size=32,
        validation_fraction=0,
        train_split=None,
        lr_schedule="wsd",
        weight_decay=1e-4,
        augment=True,
        mixed_precision="auto",
        channels_last=True,
        image_shape=None,
        ignore_index=255,
        class_weight=None,
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
        self.augment = augment
        self.mixed_precision = mixed_precision
        self.channels_last = channels_last
        self.image_shape = image_shape
        self.ignore_index = ignore_index
        self.class_weight = class_weight
        self.test_time_shifts = test_time_shifts
        self.random_state = random_state

    def set_params(self, **params):
        """Set the parameters of this estimator, as skorch's ``set_params`` does.

        Before the estimator is initialized, ``callbacks`` is stored like any other
        parameter and checked by ``fit``. skorch itself builds the callbacks as soon as
        the parameter is set, which fails on a value that is not a list of callbacks
        after the call's other parameters have been set.

        Parameters
        ----------
        **params : dict
            Estimator parameters, including skorch's prefixed ones (``optimizer__...``,
            ``callbacks__...``).

        Returns
        -------
        self : SegNetSegmenter
            This estimator.
        """
        if "callbacks" in params and not self.initialized_:
            self.callbacks = params.pop("callbacks")
        return super().set_params(**params)

    # ----------------------------------------------------------------- validation
    def _check_params(self):
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )
        convs = self.convs_per_block
        if convs is not None and not isinstance(convs, Integral) and (
            len(convs) != self.depth or not all(isinstance(n, Integral) and n >= 1 for n in convs)
        ):
            raise InvalidParameterError(
                f"The 'convs_per_block' parameter of {type(self).__name__} must be an int >= 1 "
                f"or a sequence of depth={self.depth} such ints. Got {convs!r} instead."
            )

    def _convs_per_level(self):
        if self.convs_per_block is not None:
            return self.convs_per_block
        return tuple(1 if level == 0 else 2 for level in range(self.depth))

    def _check_X(self, X, reset):
        X, flat = check_images(X, image_shape=self.image_shape, depth=self.depth)
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
        return check_label_maps(y, X, type(self).__name__)

    # ------------------------------------------------------------------- skorch hooks
    def initialize_module(self):
        if not hasattr(self, "classes_"):
            self._size_without_data()
        kwargs = {
            "in_channels": self.image_shape_[0],
            "n_classes": len(self.classes_),
            "width": self.width,
            "depth": self.depth,
            "convs_per_block": self._convs_per_level(),
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
        weights = getattr(self, "class_weight_", None)
        if weights is not None:
            kwargs["weight"] = torch.as_tensor(weights, dtype=torch.float32)
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
            device = resolve_device(self.device or "cpu")
            if device.type == "cuda" and self._bf16(device):
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

    def train_step_single(self, batch, **fit_params):
        Xi, yi = batch
        if callable(self.augment):
            batch = self.augment(Xi, yi)
        elif self.augment and min(Xi.shape[-2:]) >= MIN_AUGMENTED_SIZE:
            batch = random_affine(Xi, yi, ignore_index=self.ignore_index)
            if self.augment != "affine":
                for _ in range(OVERLAYS):
                    batch = max_overlay(*batch, ignore_index=self.ignore_index)
        return super().train_step_single(batch, **fit_params)

    def infer(self, x, **fit_params):
        x = torch.as_tensor(x, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16(x.device)):
            return self.module_(x, **fit_params)

    def _bf16(self, device=None):
        """Whether the network runs under bfloat16 autocast on ``device`` (by default
        the estimator's ``device``)."""
        if self.mixed_precision == "auto":
            return has_fast_bfloat16(resolve_device(self.device) if device is None else device)
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
        self.class_weight_ = self._class_weights(known, encoded)
        with self._own_torch_rng():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            elif self.class_weight is not None:  # a warm start: this fit's class weights
                self._initialize_criterion()
            return NeuralNet.partial_fit(self, X, encoded, **fit_params)

    def _class_weights(self, known, encoded):
        """``class_weight`` as one weight per class of ``classes_``; ``known`` holds the
        labelled pixels' labels, ``encoded`` every pixel's class index. The cases
        scikit-learn's messages would blur are named first."""
        if self.class_weight is None:
            return None
        if "weight" in self.get_params_for("criterion"):
            raise ValueError(
                "class_weight and criterion__weight both weigh the classes: pass one of them"
            )
        if isinstance(self.class_weight, dict):
            unknown = sorted(set(self.class_weight) - set(self.classes_.tolist()))
            if unknown:
                raise ValueError(
                    f"class_weight has labels {unknown} that are not among the classes "
                    f"{self.classes_.tolist()}"
                )
        else:
            # counted on the class indices: no sort of every pixel's label
            labelled = encoded[encoded != self.ignore_index]
            absent = self.classes_[np.bincount(labelled, minlength=len(self.classes_)) == 0]
            if len(absent):
                raise ValueError(
                    f"class_weight='balanced' counts the pixels of every class, and classes "
                    f"{absent.tolist()} have none in y: pass a dict of weights instead"
                )
        return compute_class_weight(self.class_weight, classes=self.classes_, y=known)

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
            Images of any size with sides of at least ``2**depth`` pixels, not
            necessarily the training images' size.

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
        indices = np.concatenate(batches)
        if np.array_equal(self.classes_, np.arange(len(self.classes_))):
            labels = indices.astype(self.classes_.dtype, copy=False)  # classes 0..k-1
        else:
            labels = self.classes_[indices]
        return self._restore_layout(labels, X)

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
        self.check_is_fitted()
        self._set_training(False)
        for Xb in self._inference_batches(X):
            with torch.inference_mode():
                proba = averaged_scores(
                    self.infer, Xb.to(self.device), offsets, period, raw_scores=scores
                )
                # the sum is one fast pass, and finite when every value is (or an
                # overflow, which the exact check then tells apart)
                if not torch.isfinite(proba.sum()) and not torch.isfinite(proba).all():
                    raise ValueError(
                        "the network's class scores are NaN or infinity for some images of "
                        f"X (values up to {float(Xb.abs().max()):g}); pass images scaled like "
                        "the training images, e.g. to [0, 1]"
                    )
            yield proba.cpu()

    def _inference_batches(self, X):
        """Batches of ``X`` as the validation iterator forms them, split further so that
        no batch holds more than :data:`PREDICT_PIXELS` pixels (one image at least)."""
        batch_size = self.get_params_for("iterator_valid").get("batch_size", self.batch_size)
        per_batch = max(1, PREDICT_PIXELS // math.prod(X.shape[-2:]))
        chunks = [X]
        if batch_size == -1 or batch_size > per_batch:
            chunks = [X[first : first + per_batch] for first in range(0, len(X), per_batch)]
        for chunk in chunks:
            # a DataLoader's iterator draws a seed from torch's generator when it starts:
            # keep the caller's untouched
            with torch.random.fork_rng(devices=[]):
                batches = iter(self.get_iterator(self.get_dataset(chunk), training=False))
            for Xb, _ in batches:
                yield Xb

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
        ``class_weight_``, the image shape, the training ``history`` and the network's
        weights as tensors, with a format name, a format version and a SHA-256 checksum
        of the weights, for :meth:`load`. Classes passed as ``module``, ``criterion`` or
        ``optimizer`` and a callable ``augment`` are not stored; pass them to
        :meth:`load` again (a file without ``augment`` loads with ``augment=False``).

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
        save_model(self, path, weights_dtype=weights_dtype)

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
        return load_model(cls, path, **params)

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
