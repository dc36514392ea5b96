"""The multi-digit MNIST training recipe behind ``skseg train-segnet``, as functions.

:data:`RECIPE` holds every default of the recipe in one place; the functions take them
as keyword arguments and ``skseg train-segnet``'s options are the same names. A whole
run, as the command does it::

    import time
    from skseg.segnet import fit_recipe, plan_training, recipe_data, recipe_model

    start = time.perf_counter()
    digits, labels, X_test, y_test = recipe_data("path/to/mnist")
    model = recipe_model()
    n_train, seconds = plan_training(model, digits, labels, X_test, y_test, start=start)
    fit_recipe(model, digits, labels, n_train=n_train, seconds=seconds)
    model.score(X_test, y_test)
"""

import inspect
import time

import torch

from ..datasets import load_default_digits, make_multidigit_mnist, split_digits
from ._estimator import SegNetSegmenter
from ._optim import Muon
from ._training import fit_on_fresh_compositions, images_per_epoch_for_budget, seconds_to_predict

__all__ = ["RECIPE", "PRECISIONS", "recipe_data", "recipe_model", "plan_training", "fit_recipe"]

#: the names of ``optimizer`` and the classes they stand for
OPTIMIZERS = {"muon": Muon, "adamw": torch.optim.AdamW}
#: the ``precision`` names and the ``SegNetSegmenter(mixed_precision=...)`` each stands for
PRECISIONS = {"auto": "auto", "bfloat16": True, "float32": False}


def _estimator_defaults():
    """The recipe's network and optimisation settings: SegNetSegmenter's defaults."""
    default = {
        name: parameter.default
        for name, parameter in inspect.signature(SegNetSegmenter).parameters.items()
    }
    shared = ("width", "depth", "input_thresholds", "top_block", "lr", "lr_schedule", "device")
    return {
        **{name: default[name] for name in shared},
        "optimizer": next(k for k, v in OPTIMIZERS.items() if v is default["optimizer"]),
        "precision": next(k for k, v in PRECISIONS.items() if v == default["mixed_precision"]),
    }


#: every default of the recipe (and of ``skseg train-segnet``'s options of the same
#: names): :class:`~skseg.SegNetSegmenter`'s defaults for the network and its
#: optimisation, then what a run on fresh compositions sets differently (four levels,
#: with which its results were measured; one convolution per block and batch 16, so
#: that more images and steps fit the time budget; 7 epochs of
#: new images, which need no augmentation, 2 % of them for validation, 7 test-time
#: shifts), then the run itself
RECIPE = {
    **_estimator_defaults(),
    "depth": 4,
    "convs_per_block": 1,
    "batch_size": 16,
    "epochs": 7,
    "augment": False,
    "validation_fraction": 0.02,
    "test_time_shifts": 7,
    "seed": 0,
    "time_budget": 560.0,
    "n_test": 2000,
    "held_out_fraction": 1 / 6,
    "train_max_digits": 8,
}


def recipe_data(
    data_home=None,
    *,
    n_test=RECIPE["n_test"],
    held_out_fraction=RECIPE["held_out_fraction"],
    seed=RECIPE["seed"],
):
    """Training digits and held-out evaluation images of the recipe.

    A share ``held_out_fraction`` of the digits is held out
    (:func:`~skseg.datasets.split_digits`); the evaluation images are composed from those
    alone, by the data contract (1 to 3 digits per image).

    Parameters
    ----------
    data_home : str or path-like or None, default=None
        Where the MNIST IDX files are (:func:`~skseg.datasets.load_default_digits`).
    n_test : int, default=2000
        Evaluation images.
    held_out_fraction : float, default=1/6
        Share of the digits kept for evaluation.
    seed : int, default=0
        Seed of the split and of the compositions.

    Returns
    -------
    digits, labels : ndarray
        The training digits and their classes.
    X_test, y_test : ndarray
        Evaluation images and label maps.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from skseg.segnet import recipe_data
    >>> with warnings.catch_warnings(record=True):  # no MNIST there: the stand-in
    ...     digits, labels, X_test, y_test = recipe_data(tempfile.mkdtemp(), n_test=4)
    >>> len(digits), X_test.shape
    (1497, (4, 1, 64, 64))
    """
    digits, labels = load_default_digits(data_home)
    train, held = split_digits(len(digits), held_out_fraction=held_out_fraction, random_state=seed)
    X_test, y_test = make_multidigit_mnist(
        n_test, digits=digits[held], labels=labels[held], random_state=seed + 1
    )
    return digits[train], labels[train], X_test, y_test


def recipe_model(
    *,
    width=RECIPE["width"],
    depth=RECIPE["depth"],
    convs_per_block=RECIPE["convs_per_block"],
    input_thresholds=RECIPE["input_thresholds"],
    top_block=RECIPE["top_block"],
    optimizer=RECIPE["optimizer"],
    lr=RECIPE["lr"],
    lr_schedule=RECIPE["lr_schedule"],
    batch_size=RECIPE["batch_size"],
    epochs=RECIPE["epochs"],
    augment=RECIPE["augment"],
    validation_fraction=RECIPE["validation_fraction"],
    test_time_shifts=RECIPE["test_time_shifts"],
    precision=RECIPE["precision"],
    device=RECIPE["device"],
    seed=RECIPE["seed"],
    verbose=1,
    **params,
):
    """The recipe's :class:`~skseg.SegNetSegmenter`, unfitted.

    Parameters
    ----------
    width, depth, convs_per_block, input_thresholds, top_block, lr, lr_schedule, \
batch_size, augment, validation_fraction, test_time_shifts, device, verbose
        As in :class:`~skseg.SegNetSegmenter`; four levels with one convolution per
        block and batch 16 (more images and steps in the time budget), and ``augment``
        is off (every epoch composes new images).
    optimizer : {"muon", "adamw"}, default="muon"
        :class:`~skseg.segnet.Muon` for the hidden convolutions and AdamW for the rest, or
        :class:`torch.optim.AdamW` for all.
    epochs : int, default=7
        ``max_epochs``: the epochs of one learning-rate schedule.
    precision : {"auto", "bfloat16", "float32"}, default="auto"
        ``mixed_precision``: bfloat16 where the device has it natively, or as named.
    seed : int, default=0
        ``random_state``.
    **params : dict
        Further :class:`~skseg.SegNetSegmenter` parameters (e.g. ``callbacks``).

    Returns
    -------
    model : SegNetSegmenter

    Examples
    --------
    >>> from skseg.segnet import recipe_model
    >>> model = recipe_model(width=16)
    >>> model.width, model.top_block, model.batch_size
    (16, 'upsample', 16)
    """
    if optimizer not in OPTIMIZERS or precision not in PRECISIONS:
        raise ValueError(
            f"optimizer must be one of {list(OPTIMIZERS)} and precision one of "
            f"{list(PRECISIONS)}, got {optimizer!r} and {precision!r}"
        )
    return SegNetSegmenter(
        width=width,
        depth=depth,
        convs_per_block=convs_per_block,
        input_thresholds=input_thresholds,
        top_block=top_block,
        lr=lr,
        lr_schedule=lr_schedule,
        max_epochs=epochs,
        augment=augment,
        validation_fraction=validation_fraction,
        batch_size=batch_size,
        optimizer=OPTIMIZERS[optimizer],
        test_time_shifts=test_time_shifts,
        mixed_precision=PRECISIONS[precision],
        device=device,
        random_state=seed,
        verbose=verbose,
        **params,
    )


def plan_training(
    model,
    digits,
    labels,
    X_test,
    y_test,
    *,
    start,
    time_budget=RECIPE["time_budget"],
    train_max_digits=RECIPE["train_max_digits"],
    seed=RECIPE["seed"],
    verbose=True,
):
    """First epoch's images and training seconds that fill ``time_budget``.

    Times the evaluation (predicting ``X_test`` with an untrained clone of ``model``, test-
    time shifts included) and a few training steps
    (:func:`~skseg.segnet.images_per_epoch_for_budget`); what the budget leaves after the
    time already spent and the evaluation is the training time, and the measured rate
    sizes the first epoch. :func:`fit_recipe` then sizes the later epochs by the rate it
    measures itself.

    Parameters
    ----------
    model : SegNetSegmenter
        From :func:`recipe_model`.
    digits, labels : ndarray
        Training digits, from :func:`recipe_data`.
    X_test, y_test : ndarray
        Evaluation images and label maps, from :func:`recipe_data`.
    start : float
        :func:`time.perf_counter` at the start of the run.
    time_budget : float, default=560
        Seconds for the whole run, evaluation included.
    train_max_digits : int, default=8
        Most digits per training image.
    seed : int, default=0
        Seed of the training compositions.
    verbose : bool, default=True
        Print the measurements and the plan.

    Returns
    -------
    n_train : int
        Images to compose for the first epoch.
    seconds : float
        Training seconds (at least 1).

    Examples
    --------
    >>> import time
    >>> from skseg.datasets import load_digits_standin, make_multidigit_mnist
    >>> from skseg.segnet import plan_training, recipe_model
    >>> digits, labels = load_digits_standin()
    >>> X_test, y_test = make_multidigit_mnist(8, digits=digits, labels=labels)
    >>> n_train, seconds = plan_training(
    ...     recipe_model(width=4, verbose=0), digits, labels, X_test, y_test,
    ...     start=time.perf_counter(), time_budget=20, verbose=False)
    >>> n_train > 0 and 1 <= seconds < 20
    True
    """
    evaluation = seconds_to_predict(model, X_test, y_test)

    def training_seconds():  # what the budget leaves now, at least 1 s
        return max(time_budget - (time.perf_counter() - start) - evaluation, 1.0)

    n_train, rate = images_per_epoch_for_budget(
        model,
        digits,
        labels,
        seconds=training_seconds(),
        random_state=seed,
        max_digits=train_max_digits,
    )
    seconds = training_seconds()  # after the probe's own time
    if verbose:
        print(
            f"measured {rate:.0f} training images/s and {evaluation:.0f} s to evaluate: "
            f"{seconds:.0f} s of training fill the {time_budget:.0f} s budget, "
            f"{model.max_epochs} epochs of about {n_train} images"
        )
    return n_train, seconds


def fit_recipe(
    model,
    digits,
    labels,
    *,
    n_train,
    seconds=None,
    train_max_digits=RECIPE["train_max_digits"],
    seed=RECIPE["seed"],
):
    """Train ``model`` the recipe's way: fresh compositions every epoch.

    Parameters
    ----------
    model : SegNetSegmenter
        From :func:`recipe_model`.
    digits, labels : ndarray
        Training digits, from :func:`recipe_data`.
    n_train : int or list of int
        Images of every epoch (one number, or one per epoch), or of the first epoch
        with ``seconds``.
    seconds : float, default=None
        Train for about this long (from :func:`plan_training`), sizing the epochs after
        the first by the measured rate.
    train_max_digits : int, default=8
        Most digits per training image.
    seed : int, default=0
        Seed of the compositions.

    Returns
    -------
    model : SegNetSegmenter
        Trained; ``model.history[:, "n_images"]`` holds the images of every epoch.

    Examples
    --------
    >>> from skseg.datasets import load_digits_standin
    >>> from skseg.segnet import fit_recipe, recipe_model
    >>> digits, labels = load_digits_standin()
    >>> model = recipe_model(width=4, epochs=2, verbose=0)
    >>> fit_recipe(model, digits, labels, n_train=[8, 16]).history[:, "n_images"]
    [8, 16]
    """
    return fit_on_fresh_compositions(
        model,
        digits,
        labels,
        n_images=n_train,
        seconds=seconds,
        random_state=seed,
        max_digits=train_max_digits,
    )
