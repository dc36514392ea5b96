"""Data augmentation of :class:`~skseg.SegNetSegmenter`, in training and at test time.

Training (``augment=True``): every training batch is replaced by a random affine copy of
itself (:func:`random_affine`): each image and its label map are rotated, scaled and
shifted together, pixel for pixel, so the network sees new handwriting every epoch. Each
image is then overlaid with another image of the batch, shifted, by the pixelwise
maximum (:func:`max_overlay`): new compositions of the same objects, with more of them
per image and more overlaps.

Test time (``test_time_shifts=k``): pooling makes the network's output depend on where
an image sits modulo ``2**depth`` pixels, so :meth:`~skseg.SegNetSegmenter.predict` also
runs ``k`` copies of every image shifted by the offsets of :func:`shift_offsets` (padded
by replication, then cropped back) and averages their class probabilities.
"""

import itertools
import math
from numbers import Integral

import torch
import torch.nn.functional as F


def random_affine(images, labels, *, rotation=10.0, scale=0.1, shift=2.0, ignore_index=255):
    """Rotate, scale and shift every image and its label map by the same random amounts.

    Each image gets an angle uniform in ``[-rotation, rotation]`` degrees, a zoom uniform
    in ``[1 - scale, 1 + scale]`` and a shift uniform in ``[-shift, shift]`` pixels along
    each axis, about its centre. Both the image and the labels are resampled by nearest
    neighbour, so every output pixel is an input pixel with its own label (a label that is
    a function of the intensity, such as "ink above a threshold", stays exact). Pixels that
    come from outside the image are 0 with the label ``ignore_index``. Random numbers come
    from torch's generator.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
    labels : Tensor of shape (n, H, W), integer
    rotation : float, default=10.0
        Largest rotation, in degrees.
    scale : float, default=0.1
        Largest relative change of size.
    shift : float, default=2.0
        Largest shift, in pixels.
    ignore_index : int, default=255
        Label of the pixels from outside the image.

    Returns
    -------
    images : Tensor of shape (n, C, H, W)
    labels : Tensor of shape (n, H, W)

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import random_affine
    >>> images = torch.rand(2, 1, 8, 8)
    >>> labels = (images[:, 0] > 0.5).long()
    >>> out, out_labels = random_affine(images, labels, ignore_index=9)
    >>> bool(((out[:, 0] > 0.5).long() == out_labels)[out_labels != 9].all())
    True
    """
    n, device = len(images), images.device

    def uniform(bound):
        return (torch.rand(n, device=device) * 2 - 1) * bound

    angle = uniform(math.radians(rotation))
    zoom = 1 + uniform(scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    height, width = images.shape[-2:]
    # the grid's units: the image spans [-1, 1] along each axis
    theta = torch.stack(
        [
            torch.stack([cos, -sin, uniform(2 * shift / width)], dim=1),
            torch.stack([sin, cos, uniform(2 * shift / height)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, (n, 1, height, width), align_corners=False)

    def resample(x):
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    moved = resample(images.float()).to(images.dtype)
    inside = resample(torch.ones(n, 1, height, width, device=device))[:, 0] > 0.5
    # labels resampled as floats: integers below 2**24 are exact
    moved_labels = resample(labels[:, None].float())[:, 0].to(labels.dtype)
    return moved, torch.where(inside, moved_labels, torch.full_like(moved_labels, ignore_index))


def max_overlay(images, labels, *, shift=0.3, ignore_index=255):
    """Overlay every image with another image of the batch, shifted, by the pixelwise
    maximum.

    Image ``i`` meets image ``j`` of a random permutation of the batch (possibly itself),
    moved by a random whole number of pixels uniform in ``[-shift * H, shift * H]`` down
    and ``[-shift * W, shift * W]`` across. Where the moved image is brighter (its mean
    over channels is larger) and labelled (not ``ignore_index``), its pixel and its label
    replace image ``i``'s; pixels moved in from outside are dark and unlabelled, so they
    never do. An image composed by maximum whose labels are those of the brightest
    object, such as multi-digit MNIST with its digits' classes where their ink is, stays
    such a composition, with more objects. Random numbers come from torch's generator.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
    labels : Tensor of shape (n, H, W), integer
    shift : float, default=0.3
        Largest move, as a fraction of the image's height and width.
    ignore_index : int, default=255
        Label of unlabelled pixels.

    Returns
    -------
    images : Tensor of shape (n, C, H, W)
    labels : Tensor of shape (n, H, W)

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import max_overlay
    >>> images = torch.zeros(2, 1, 8, 8)
    >>> images[0, 0, 1, 1], images[1, 0, 6, 6] = 1.0, 0.5
    >>> labels = torch.where(images[:, 0] > 0, 1, 0)
    >>> out, out_labels = max_overlay(images, labels)
    >>> bool(((out[:, 0] > 0).long() == out_labels).all())
    True
    """
    n, height, width = len(images), *images.shape[-2:]
    device = images.device
    other = torch.randperm(n, device=device).tolist()
    reach = torch.tensor([int(shift * height), int(shift * width)], device=device)
    moves = (torch.rand(n, 2, device=device) * (2 * reach + 1)).long() - reach
    moved = torch.zeros_like(images)
    moved_labels = torch.full_like(labels, ignore_index)
    for i, (j, (dy, dx)) in enumerate(zip(other, moves.tolist())):
        # rows and columns of image i that the moved image j covers, and where they come from
        rows, cols = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
        from_rows = slice(max(-dy, 0), height + min(-dy, 0))
        from_cols = slice(max(-dx, 0), width + min(-dx, 0))
        moved[i, :, rows, cols] = images[j, :, from_rows, from_cols]
        moved_labels[i, rows, cols] = labels[j, from_rows, from_cols]
    wins = (moved.float().mean(1) > images.float().mean(1)) & (moved_labels != ignore_index)
    return torch.where(wins[:, None], moved, images), torch.where(wins, moved_labels, labels)


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
