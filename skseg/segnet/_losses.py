"""Per-pixel losses for segmentation."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossEntropy2D"]


class CrossEntropy2D(nn.Module):
    """Per-pixel cross-entropy between class scores and a label map.

    Scores smaller than the target (a network that predicts at a lower resolution, passed
    as ``SegNetSegmenter(module=...)``) are upsampled bilinearly to the target's size
    first; :class:`SegNetLite` returns scores at the target's size.

    Parameters
    ----------
    ignore_index : int, default=255
        Target value whose pixels do not contribute to the loss.

    reduction : {"mean", "sum", "none"}, default="mean"
        As in :func:`torch.nn.functional.cross_entropy` ("mean" averages over the pixels
        that are not ignored, and is 0 where every pixel is).

    weight : Tensor of shape (n_classes,) or None, default=None
        Class weights.

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import CrossEntropy2D
    >>> scores = torch.zeros(1, 3, 4, 4)
    >>> target = torch.zeros(1, 8, 8, dtype=torch.long)
    >>> CrossEntropy2D()(scores, target)
    tensor(1.0986)
    """

    def __init__(self, ignore_index=255, reduction="mean", weight=None):
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, scores, target):
        """Loss of ``scores`` (n, C, h, w) against ``target`` (n, H, W)."""
        if scores.ndim != 4 or target.ndim != 3 or scores.shape[0] != target.shape[0]:
            raise ValueError(
                "expected scores of shape (n, classes, h, w) and a target of shape (n, H, W), "
                f"got {tuple(scores.shape)} and {tuple(target.shape)}"
            )
        target = target.long()
        if scores.shape[-2:] != target.shape[-2:]:
            scores = F.interpolate(
                scores, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
        # the mean is taken here, over the labelled pixels (weighted by their classes'
        # weights), and is 0, not torch's 0 / 0 = NaN, for a batch without any
        loss = F.cross_entropy(
            scores.float(),
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction="sum" if self.reduction == "mean" else self.reduction,
        )
        if self.reduction != "mean":
            return loss
        labelled = target != self.ignore_index
        if self.weight is None:
            count = labelled.sum()
        else:
            count = self.weight[target[labelled]].sum()
        return loss / count.clamp(min=torch.finfo(loss.dtype).tiny)
