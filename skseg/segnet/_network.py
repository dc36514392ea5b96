"""A simplified SegNet: pooling indices carried from the encoder to the decoder."""

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IntensityThresholds", "SegNetLite"]

# the ways SegNetLite's decoder reaches full resolution (see its ``top_block``)
TOP_BLOCKS = ("unpool", "upsample")


def _conv_bn_relu(in_channels, out_channels, n_convs=1):
    layers = []
    for i in range(n_convs):
        layers += [
            nn.Conv2d(
                in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _per_level(convs_per_block, depth):
    if isinstance(convs_per_block, Integral):
        if convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block!r}")
        return [int(convs_per_block)] * depth
    convs = [int(n) for n in convs_per_block]
    if len(convs) != depth or min(convs, default=1) < 1:
        raise ValueError(
            f"convs_per_block must be a positive int or {depth} positive ints (one per "
            f"level), got {convs_per_block!r}"
        )
    return convs


class IntensityThresholds(nn.Module):
    """Soft steps of every input channel at learnable intensity thresholds.

    Maps ``x`` of shape ``(n, C, H, W)`` to ``sigmoid(g_k * (x - t_k))`` for ``k = 1..K``,
    shape ``(n, C * K, H, W)`` (channel ``c``'s steps together; all channels share the
    thresholds and gains, which suits intensities in one range). The thresholds ``t_k``
    start evenly spaced inside ``[low, high]`` and the gains ``g_k`` at ``gain``; both are
    learned, the gains through their logarithm, so that gradient steps change them by
    factors and a step can become as sharp as the labels need (a label that flips between
    two adjacent grey levels) within the steps that training has.

    Parameters
    ----------
    n_thresholds : int
        ``K``, steps per input channel.

    low, high : float, default=0.0, 1.0
        Range over which the thresholds start.

    gain : float, default=20.0
        Starting steepness.

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import IntensityThresholds
    >>> steps = IntensityThresholds(3)
    >>> steps.thresholds.data
    tensor([0.2500, 0.5000, 0.7500])
    >>> steps(torch.full((1, 2, 4, 4), 0.6)).shape
    torch.Size([1, 6, 4, 4])
    """

    def __init__(self, n_thresholds, low=0.0, high=1.0, gain=20.0):
        super().__init__()
        self.thresholds = nn.Parameter(torch.linspace(low, high, n_thresholds + 2)[1:-1])
        self.log_gains = nn.Parameter(torch.full((n_thresholds,), math.log(gain)))

    def forward(self, x):
        """Soft steps of ``x`` (n, C, H, W): shape (n, C * K, H, W)."""
        shape = (1, 1, -1, 1, 1)
        gains = self.log_gains.exp().view(shape)
        steps = torch.sigmoid(gains * (x.unsqueeze(2) - self.thresholds.view(shape)))
        return steps.flatten(1, 2)


class SegNetLite(nn.Module):
    """Simplified SegNet for per-pixel classification.

    Encoder level ``i`` is Conv2d(3x3) -> BatchNorm2d -> ReLU -> MaxPool2d(2) with
    ``width * 2**i`` channels; the pooling indices go to the decoder, whose level ``i`` is
    MaxUnpool2d(2) with those indices -> Conv2d(3x3) -> BatchNorm2d -> ReLU, down to
    ``width * 2**(i-1)`` channels (``width`` at the top). A 1x1 convolution gives the class
    scores. ``width=32, depth=4`` gives 32-64-128-256 channels down and 128-64-32-32 up.
    Additions to SegNet, all on by default: ``encoder_skip``, ``input_skip`` and
    ``input_thresholds`` (see below); ``top_block="upsample"`` replaces the decoder
    block at full resolution by upsampled class scores.

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input images.

    n_classes : int, default=11
        Number of classes (10 digits and background for multi-digit MNIST).

    width : int, default=32
        Channels of the first encoder block; doubled at every level.

    depth : int, default=4
        Number of encoder (and decoder) levels. Inputs may have any height and width of
        at least ``2**depth`` pixels: an odd side keeps its last row or column in a
        pooling window of its own (``ceil_mode``), and every decoder level unpools to the
        size of its encoder level. ``0`` leaves only the 1x1 classifier.

    convs_per_block : int or sequence of int, default=1
        Conv2d -> BatchNorm2d -> ReLU units per block (the original SegNet uses 2-3), for
        all levels or one number per level (encoder and decoder alike), top level first.

    encoder_skip : bool, default=True
        Add each encoder block's output (before pooling) to the input of the decoder block
        of the same level (after unpooling), on every level below the top. Unpooling
        fills one pixel in four; the sum hands the decoder the encoder's dense features
        as well, as U-Net's skips do, but added rather than concatenated, so no weights or
        channels are added.

    input_skip : bool, default=True
        Add the input image, projected by a 1x1 convolution to ``width`` channels, to the
        last decoder block's input. Max-unpooling restores only one pixel in four, so
        without it the top of the decoder never sees each pixel's own intensity.
        ``encoder_skip=False, input_skip=False`` is the plain SegNet.

    input_thresholds : int, default=4
        With ``input_skip``, the 1x1 convolution also reads ``input_thresholds`` soft
        steps of every input channel at learnable intensity thresholds
        (:class:`IntensityThresholds`). A convolution followed by ReLU cannot draw a
        label boundary between two adjacent grey levels with the weights that training
        reaches in time; the steps can, and learn where to (on multi-digit MNIST, whose
        labels turn from background to ink at intensity 0.5, they move there). ``0``
        projects the image alone.

    top_block : {"unpool", "upsample"}, default="unpool"
        How the decoder reaches full resolution. ``"unpool"`` is SegNet's: the top
        decoder block max-unpools to full resolution and convolves there, and the 1x1
        classifier reads its output. ``"upsample"`` leaves that block out: the 1x1
        classifier reads the decoder's output at half resolution, its class scores are
        upsampled bilinearly to full resolution, and the input skip (when on) adds class
        scores of every pixel of its own, a 1x1 convolution of the image and its soft
        steps. Full resolution then holds only the first encoder block and the input
        skip, which makes training markedly faster (see the benchmarks page). The top
        encoder block still pools; its indices go unused.

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import SegNetLite
    >>> net = SegNetLite(width=8, depth=2)
    >>> net(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 11, 16, 16])
    """

    def __init__(
        self,
        in_channels=1,
        n_classes=11,
        width=32,
        depth=4,
        convs_per_block=1,
        encoder_skip=True,
        input_skip=True,
        input_thresholds=4,
        top_block="unpool",
    ):
        super().__init__()
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"top_block must be 'unpool' or 'upsample', got {top_block!r}")
        self.depth = depth
        self.encoder_skip = encoder_skip
        self.input_skip = input_skip
        self.top_block = top_block
        # the first level with a decoder block: 1 when class scores are upsampled to the top
        self.first_decoded = int(top_block == "upsample" and depth > 0)
        channels = [width * 2**i for i in range(depth)]
        convs = _per_level(convs_per_block, depth)
        self.encoders = nn.ModuleList(
            _conv_bn_relu(c_in, c_out, n)
            for c_in, c_out, n in zip([in_channels, *channels[:-1]], channels, convs)
        )
        # ceil_mode: an odd side keeps its last row or column in a window of one; the
        # decoder unpools to each encoder block's own size, so images of any size pass
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True, ceil_mode=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        levels = list(zip(channels, [width, *channels[:-1]], convs))[self.first_decoded :]
        self.decoders = nn.ModuleList(_conv_bn_relu(c_in, c_out, n) for c_in, c_out, n in levels)
        # the input, projected by a 1x1 convolution to the top level's channels (added
        # after unpooling) or, with upsampled scores, to class scores (added to them)
        self.skip = self.thresholds = None
        if input_skip and depth:
            if input_thresholds:
                self.thresholds = IntensityThresholds(input_thresholds)
            n_inputs = in_channels * (1 + input_thresholds)
            n_outputs = n_classes if self.first_decoded else width
            self.skip = nn.Conv2d(n_inputs, n_outputs, kernel_size=1)
        # depth 0 is a per-pixel linear classifier (used for single-pixel "images")
        self.classifier = nn.Conv2d(width if depth else in_channels, n_classes, kernel_size=1)

    def _unpool(self, x, indices, size):
        # max-unpooling only moves values: keep autocast from widening them to float32
        with torch.autocast(x.device.type, enabled=False):
            return self.unpool(x, indices, output_size=size)

    def forward(self, x):
        """Class scores (n, n_classes, H, W) of images ``x`` (n, in_channels, H, W)."""
        smallest = 2**self.depth
        if x.ndim != 4 or min(x.shape[-2:]) < smallest:
            raise ValueError(
                f"SegNetLite with depth={self.depth} needs input of shape (n, channels, H, W)"
                f" with H and W at least 2**depth = {smallest}, got {tuple(x.shape)}"
            )
        image = x
        features, indices = [], []
        for encode in self.encoders:
            x = encode(x)
            features.append(x)
            x, idx = self.pool(x)
            indices.append(idx)
        for level in reversed(range(self.first_decoded, self.depth)):
            x = self._unpool(x, indices[level], features[level].shape[-2:])
            if level > 0 and self.encoder_skip:
                x = x + features[level]
            if level == 0 and self.skip is not None:
                x = x + self._skip(image)
            x = self.decoders[level - self.first_decoded](x)
        scores = self.classifier(x)
        if self.first_decoded:
            # twice the half-resolution grid, cut to the image: an odd side's last row
            # or column lies where it would in a canvas one pixel larger
            height, width = image.shape[-2:]
            scores = F.interpolate(
                scores, scale_factor=2.0, mode="bilinear", align_corners=False
            )[..., :height, :width]
            if self.skip is not None:
                scores = scores + self._skip(image)
        return scores

    def _skip(self, image):
        if self.thresholds is not None:
            image = torch.cat([image, self.thresholds(image)], dim=1)
        return self.skip(image)
