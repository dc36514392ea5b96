"""Training helpers of :class:`~skseg.SegNetSegmenter` for composed multi-digit images.

:func:`fit_on_fresh_compositions` trains on a new set of composed images every epoch;
:func:`images_per_epoch_for_budget` and :func:`seconds_to_predict` time a model before
training, so that a run can be planned to a budget of seconds (as ``skseg train-segnet``
does).
"""

import time
from numbers import Integral

import numpy as np
from sklearn.base import clone

from ..datasets import BACKGROUND, make_multidigit_mnist


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
