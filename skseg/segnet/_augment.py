"""Test-time augmentation of :class:`~skseg.SegNetSegmenter`: shifted copies, averaged.

Pooling makes the network's output depend on where an image sits modulo ``2**depth``
pixels. With ``test_time_shifts=k``, :meth:`~skseg.SegNetSegmenter.predict` also runs
``k`` copies of every image shifted by the offsets of :func:`shift_offsets` (padded by
replication, then cropped back) and averages their class probabilities.
"""

import itertools
from numbers import Integral

import torch
import torch.nn.functional as F


def averaged_scores(infer, images, offsets, period, *, raw_scores=False):
    """Class probabilities of ``images`` averaged over their shifted copies.

    Parameters
    ----------
    infer : callable
        The network's forward pass: images ``(n, C, H, W)`` to class scores.
    images : Tensor of shape (n, C, H, W)
    offsets : list of tuple of int
        From :func:`shift_offsets`.
    period : int
        ``2**depth``.
    raw_scores : bool, default=False
        With a single offset, return the class scores themselves (their argmax is the
        same, without the softmax).

    Returns
    -------
    Tensor of shape (n, n_classes, H, W)
    """
    height, width = images.shape[-2:]
    if raw_scores and len(offsets) == 1 and offsets[0] == (0, 0):
        return infer(images)
    proba = 0
    for dy, dx in offsets:
        view = images
        if dy or dx:  # a canvas `period` pixels larger, the image at (dy, dx)
            view = F.pad(images, (dx, period - dx, dy, period - dy), mode="replicate")
        out = infer(view)[..., dy : dy + height, dx : dx + width]
        proba = proba + torch.softmax(out.float(), dim=1)
    return proba / len(offsets)


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
