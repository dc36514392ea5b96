"""The ``skseg`` command line: ``skseg segment`` and ``skseg train-segnet``."""

import argparse
import sys
import time

import numpy as np

__all__ = ["main"]


def _segment(args):
    from skimage import data, io, transform

    from .image import labels_to_image, read_rgb_image, rgb_to_features, segmentation_overview
    from .mean_shift import MeanShiftSegmenter

    if args.image is None:
        image, name = data.coffee(), "scikit-image sample 'coffee'"
    else:
        image, name = read_rgb_image(args.image), args.image
    if args.scale != 1.0:
        image = transform.rescale(image, args.scale, channel_axis=-1, anti_aliasing=True)
    features = rgb_to_features(image, spatial_scale=args.spatial_scale)
    segmenter = MeanShiftSegmenter(
        bandwidth=args.bandwidth,
        max_iter=args.max_iter,
        algorithm=args.algorithm,
        device=args.device,
        verbose=not args.quiet,
    )
    print(f"segmenting {name}: {image.shape[1]} x {image.shape[0]} pixels")
    start = time.perf_counter()
    labels = segmenter.fit_predict(features)
    elapsed = time.perf_counter() - start
    label_map = labels_to_image(labels, image.shape)
    print(
        f"{len(segmenter.cluster_centers_)} segments in {elapsed:.2f} s "
        f"({segmenter.n_iter_} steps on {segmenter.device_})"
    )
    io.imsave(args.output, segmentation_overview(image, label_map), check_contrast=False)
    print(f"wrote {args.output} (original | segments in mean colour | boundaries)")
    return 0


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser():
    """The argument parser of the ``skseg`` command.

    Returns
    -------
    parser : argparse.ArgumentParser

    Examples
    --------
    >>> from skseg.cli import build_parser
    >>> build_parser().parse_args(["segment", "--bandwidth", "3"]).bandwidth
    3.0
    """
    parser = argparse.ArgumentParser(
        prog="skseg", description="Image segmentation with scikit-learn estimators."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser(
        "segment",
        help="mean-shift segmentation of an image file",
        description="Segment an RGB image by Gaussian mean-shift on its CIELAB colours and "
        "write a picture: original | segments in mean colour | boundaries.",
    )
    seg.add_argument(
        "image", nargs="?", help="image file (default: scikit-image's 'coffee' sample)"
    )
    seg.add_argument("--bandwidth", type=_positive_float, default=2.5, help="default 2.5")
    seg.add_argument("--max-iter", type=int, default=20, help="mean-shift steps (default 20)")
    seg.add_argument(
        "--scale",
        type=_positive_float,
        default=0.25,
        help="rescale the image first (default 0.25; 1 keeps full size)",
    )
    seg.add_argument(
        "--spatial-scale",
        type=_positive_float,
        default=None,
        help="append (row, col) * S to the colour features for joint spatial-range "
        "mean-shift",
    )
    seg.add_argument("--algorithm", choices=["blurring", "standard"], default="blurring")
    seg.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    seg.add_argument("-o", "--output", default="segmentation.png", help="output picture")
    seg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    seg.set_defaults(run=_segment)
    return parser


def main(argv=None):
    """Entry point of the ``skseg`` console script.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 when the input is rejected.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:
        print(f"skseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
