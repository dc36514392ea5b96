"""The ``skseg`` command line: ``skseg segment`` and ``skseg train-segnet``."""

import argparse
import contextlib
import inspect
import math
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]


def _segment(args):
    from skimage import data, io, transform, util

    from ._device import resolve_device
    from .image import (
        labels_to_image,
        merge_small_regions,
        read_rgb_image,
        rgb_to_features,
        segmentation_overview,
    )
    from .meanshift import MeanShiftSegmenter, compile_kernels

    if args.image is None:
        image, name = data.coffee(), "scikit-image sample 'coffee'"
    else:
        image, name = read_rgb_image(args.image), args.image
    mask = None if args.mask is None else _read_mask(args.mask, image.shape[:2])
    if args.scale != 1.0:
        height, width = (round(side * args.scale) for side in image.shape[:2])
        if min(height, width) < 1 or height * width > MAX_PIXELS:
            raise ValueError(
                f"--scale {args.scale:g} makes the {image.shape[1]} x {image.shape[0]} image "
                f"{width} x {height} pixels; choose a scale that keeps it between 1 pixel "
                f"and {MAX_PIXELS:,} pixels"
            )
        if args.scale > 1:
            print(f"warning: --scale {args.scale:g} upsamples the image", file=sys.stderr)
        image = util.img_as_ubyte(
            transform.rescale(image, args.scale, channel_axis=-1, anti_aliasing=args.scale < 1)
        )
        if mask is not None:  # nearest neighbour: a mask pixel stays in or out
            mask = transform.resize(mask, image.shape[:2], order=0, anti_aliasing=False)
    features = rgb_to_features(image, spatial_scale=args.spatial_scale)
    segmenter = MeanShiftSegmenter(
        bandwidth=args.bandwidth,
        max_iter=args.max_iter,
        algorithm=args.algorithm,
        device=args.device,
        verbose=not args.quiet,
        **({} if args.grid_cell is None else {"grid_cell": args.grid_cell}),
    )
    if resolve_device(args.device).type == "cpu":
        # loading them takes under a second; a compilation is announced while it runs
        notice = threading.Timer(
            COMPILE_NOTICE_AFTER,
            print,
            ["compiling the mean-shift kernels (first use only, about 30 s on 2 cores)"],
            {"flush": True},
        )
        notice.start()
        try:
            seconds = compile_kernels()
        finally:
            notice.cancel()
        if seconds > COMPILE_NOTICE_AFTER:
            print(f"compiled them in {seconds:.0f} s; numba caches them for later runs")
    print(f"segmenting {name}: {image.shape[1]} x {image.shape[0]} pixels")
    start = time.perf_counter()
    labels = segmenter.fit_predict(features, sample_weight=None if mask is None else mask.ravel())
    label_map = merge_small_regions(labels_to_image(labels, image.shape), args.min_segment_size)
    elapsed = time.perf_counter() - start
    print(
        f"{_count(len(np.unique(label_map)), 'segment')} in {elapsed:.2f} s "
        f"({_count(segmenter.n_iter_, 'step')} on {segmenter.device_})"
    )
    with _atomic_output(args.output) as path:
        io.imsave(path, segmentation_overview(image, label_map), check_contrast=False)
    print(f"wrote {args.output} (original | segments in mean colour | boundaries)")
    if args.labels is not None:
        _save_label_map(label_map, args.labels)
    return 0


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _read_mask(path, shape):
    """The pixels of the image file ``path`` that are not black (alpha is ignored); the
    image must be ``shape``."""
    from .image import _imread

    mask = _imread(path, "a mask image")
    if mask.ndim == 3:  # grey or colour channels, without alpha
        mask = mask[..., : 1 if mask.shape[-1] == 2 else 3]
    mask = (mask != 0).any(axis=-1) if mask.ndim == 3 else mask != 0
    if mask.shape != tuple(shape):
        raise ValueError(
            f"the mask {str(path)!r} is {mask.shape[-1]} x {mask.shape[0]} pixels, the image "
            f"{shape[1]} x {shape[0]}: they must be the same size"
        )
    if not mask.any():
        raise ValueError(f"the mask {str(path)!r} is black everywhere: nothing to segment")
    return mask


def _save_label_map(label_map, output):
    """Write segments numbered 0..k-1 (row-major order of first appearance)."""
    _, first, numbers = np.unique(label_map, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    numbered = rank[numbers].reshape(label_map.shape)
    if Path(output).suffix.lower() == ".npy":
        with _atomic_output(output) as path:
            np.save(path, numbered.astype(np.int32))
    else:
        from skimage import io

        if len(first) > 2**16:
            raise ValueError(
                f"{len(first):,} segments do not fit a 16-bit label image; write the label "
                "map to a .npy file instead"
            )
        with _atomic_output(output) as path:
            io.imsave(path, numbered.astype(np.uint16), check_contrast=False)
    print(f"wrote {output} (label map: segments 0 to {len(first) - 1})")


#: largest image ``skseg segment`` makes by rescaling (100 megapixels)
MAX_PIXELS = 100_000_000
#: seconds after which ``skseg segment`` says that it is compiling the kernels
COMPILE_NOTICE_AFTER = 2.0
#: file types ``skseg segment`` writes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: file types of ``skseg segment --labels``: lossless, 16-bit images or numpy's format
LABEL_SUFFIXES = (".npy", ".png", ".tif", ".tiff")


def _check_output(path, suffixes):
    """Reject an output path before any work: unknown type, missing or read-only folder."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"output {str(path)!r} must end in one of {', '.join(suffixes)}, "
            "which says what file to write"
        )
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"the folder of output {str(path)!r} does not exist: create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"the folder of output {str(path)!r} is not writable")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder; give a file name")


@contextlib.contextmanager
def _atomic_output(path):
    """A temporary path beside ``path`` that replaces it only once fully written."""
    path = Path(path)
    # same suffix: writers choose the file type by it
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # the permissions of a plainly created file
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _train_segnet(args):
    from ._memory import keep_freed_memory
    from .metrics import iou_per_class
    from .segnet import fit_recipe, plan_training, recipe_data, recipe_model

    start = time.perf_counter()
    if args.keep_freed_memory:
        keep_freed_memory()  # no page faults for the activations freed and taken every step
    if isinstance(args.n_train, list) and len(args.n_train) != args.epochs:
        raise ValueError(
            f"--n-train gives the images of {len(args.n_train)} epochs, --epochs asks for "
            f"{args.epochs}"
        )
    digits, labels, X_test, y_test = recipe_data(
        args.data_home, n_test=args.n_test, held_out_fraction=args.held_out_fraction, seed=args.seed
    )
    model = recipe_model(**_model_options(args))
    composition = {"train_max_digits": args.train_max_digits, "seed": args.seed}
    seconds = None
    if args.n_train is None:
        args.n_train, seconds = plan_training(
            model,
            digits,
            labels,
            X_test,
            y_test,
            start=start,
            time_budget=args.time_budget,
            verbose=not args.quiet,
            **composition,
        )
    if isinstance(args.n_train, list):
        per_epoch = f"{min(args.n_train)}-{max(args.n_train)}"
    else:  # sized by time: the first epoch's, the later ones re-sized as training goes
        per_epoch = f"{'about ' if seconds else ''}{args.n_train}"
    print(
        f"training in {_precision_name(model)} on {per_epoch} "
        f"fresh images per epoch of up to {args.train_max_digits} digits from {len(digits)} "
        f"digits; evaluating on {len(X_test)} images of up to 3 digits from held-out digits"
    )
    fit_start = time.perf_counter()
    fit_recipe(model, digits, labels, n_train=args.n_train, seconds=seconds, **composition)
    fit_time = time.perf_counter() - fit_start
    sizes = model.history[:, "n_images"]
    print(
        f"trained on {sum(sizes)} images in {fit_time:.0f} s ({sum(sizes) / fit_time:.0f} "
        f"images/s; repeat with --n-train {','.join(map(str, sizes))})"
    )
    classes, iou = iou_per_class(y_test, model.predict(X_test))
    total = time.perf_counter() - start
    print(f"held-out mean IoU: {np.nanmean(iou):.4f}  (whole run {total:.0f} s)")
    names = [str(c) if c < 10 else "background" for c in classes]
    print("per-class IoU: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, iou)))
    with _atomic_output(args.output) as path:
        model.save(path)
    print(f"saved the model to {args.output} (load with SegNetSegmenter.load)")
    return 0


def _model_options(args):
    """The ``recipe_model`` keywords among the parsed options."""
    from .segnet import _recipe

    names = inspect.signature(_recipe.recipe_model).parameters
    options = {name: value for name, value in vars(args).items() if name in names}
    return {**options, "verbose": 0 if args.quiet else 1}


def _precision_name(model):
    return "bfloat16" if model._bf16() else "float32"


def _number(check, requirement):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_positive_float = _number(lambda value: 0 < value < math.inf, "a finite number > 0")
_fraction = _number(lambda value: 0 <= value < 1, "a number in [0, 1)")


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _image_counts(text):
    counts = [_positive_int(part) for part in text.split(",")]
    return counts[0] if len(counts) == 1 else counts


class _Parser(argparse.ArgumentParser):
    """An argument parser that can take its defaults from a function, on first use.

    ``skseg train-segnet``'s defaults are the recipe's, which reads them from
    :class:`~skseg.SegNetSegmenter`'s signature and so imports torch: loading them when
    that command is parsed (or its help shown) keeps ``skseg --help`` and the other
    command's argument errors instant.
    """

    def __init__(self, *args, defaults_from=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._defaults_from = defaults_from

    def _load_defaults(self):
        if self._defaults_from is not None:
            self.set_defaults(**self._defaults_from())
            self._defaults_from = None

    def parse_known_args(self, args=None, namespace=None):
        self._load_defaults()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._load_defaults()
        return super().format_help()


def _recipe_defaults():
    from .segnet import RECIPE

    return RECIPE


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
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    seg = commands.add_parser(
        "segment",
        help="mean-shift segmentation of an image file",
        description="Segment an RGB or greyscale image by Gaussian mean-shift on its CIELAB "
        "colours and write a picture: original | segments in mean colour | boundaries.",
    )
    seg.add_argument(
        "image", nargs="?", help="image file (default: scikit-image's 'coffee' sample)"
    )
    seg.add_argument("--bandwidth", type=_positive_float, default=2.5, help="default 2.5")
    seg.add_argument(
        "--max-iter", type=_non_negative_int, default=20, help="mean-shift steps (default 20)"
    )
    seg.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        help="rescale the image first (default 1: full size; below 1 is faster)",
    )
    seg.add_argument(
        "--min-segment-size",
        type=_non_negative_int,
        default=64,
        help="merge connected regions of fewer pixels into their neighbour "
        "(skseg.image.merge_small_regions; default 64, 0 keeps every region)",
    )
    seg.add_argument(
        "--spatial-scale",
        type=_positive_float,
        default=None,
        help="append (row, col) * S to the colour features for joint spatial-range mean-shift",
    )
    seg.add_argument(
        "--algorithm",
        choices=["blurring", "standard", "grid"],
        default="blurring",
        help="default blurring (exact); grid: approximate and several times faster",
    )
    seg.add_argument(
        "--grid-cell",
        type=_positive_float,
        default=None,
        help="side of the grid algorithm's cells in bandwidths (default: the estimator's; "
        "smaller follows the exact result more closely and takes longer)",
    )
    seg.add_argument(
        "--mask",
        metavar="FILE",
        help="an image of the photo's size: only the photo's pixels where it is not black "
        "are segmented, the others take their nearest segment (MeanShiftSegmenter's "
        "sample_weight)",
    )
    seg.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N (default %(default)s)",
    )
    seg.add_argument("-o", "--output", default="segmentation.png", help="output picture")
    seg.add_argument(
        "--labels",
        metavar="FILE",
        help="also write the label map, segments numbered from 0 in the order they "
        "first appear: .npy (int32) or a 16-bit .png or .tif",
    )
    seg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    seg.set_defaults(run=_segment)

    train = commands.add_parser(
        "train-segnet",
        defaults_from=_recipe_defaults,  # every default in one place
        help="train SegNetSegmenter on multi-digit MNIST and report held-out IoU",
        description="Train the default SegNet recipe on 64 x 64 images composed from MNIST "
        "training digits, evaluate on images composed from held-out digits, print mean and "
        "per-class IoU, and save the model.",
    )
    train.add_argument(
        "--data-home",
        default=None,
        help="folder with the MNIST IDX files (default: $SKSEG_DATA or ~/skseg_data; "
        "without them the 8 x 8 digits stand in, with a warning)",
    )
    train.add_argument("-o", "--output", default="segnet.pt", help="model file")
    train.add_argument(
        "--n-train",
        type=_image_counts,
        default=None,
        help="training images composed per epoch: one number, or one per epoch separated "
        "by commas (default: as many as fill --time-budget, measured on this machine; the "
        "run prints the numbers that repeat it)",
    )
    train.add_argument(
        "--time-budget",
        type=_positive_float,
        help="seconds for the whole run, evaluation included, when --n-train is not given "
        "(default %(default)s: 40 s of 10 minutes are left to the error of the estimates)",
    )
    train.add_argument(
        "--n-test", type=_positive_int, help="evaluation images (default %(default)s)"
    )
    train.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="share of every epoch's images held out of its training to report "
        "valid_miou (default %(default)s; 0 reports none)",
    )
    train.add_argument(
        "--held-out-fraction", type=float, help="digits kept for evaluation (default %(default).3f)"
    )
    train.add_argument(
        "--train-max-digits",
        type=_positive_int,
        help="most digits per training image (default %(default)s; evaluation images "
        "hold 1-3 as the data contract says)",
    )
    train.add_argument("--epochs", type=_positive_int, help="default %(default)s")
    train.add_argument("--width", type=_positive_int, help="default %(default)s")
    train.add_argument("--depth", type=_positive_int, help="default %(default)s")
    train.add_argument(
        "--input-thresholds",
        type=_non_negative_int,
        help="learnable intensity thresholds in the input skip (default %(default)s; 0 "
        "feeds the image alone)",
    )
    train.add_argument(
        "--top-block",
        choices=["upsample", "unpool"],
        help="upsample: class scores at half resolution, upsampled, plus per-pixel scores "
        "from the input skip (faster); unpool: SegNet's decoder block at full resolution "
        "(default %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        help="images per batch (default %(default)s)",
    )
    train.add_argument(
        "--optimizer",
        choices=["muon", "adamw"],
        help="muon: Muon for the hidden 3x3 convolutions, AdamW for the other parameters "
        "(skseg.segnet.Muon); adamw: AdamW for all (default %(default)s)",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        help="peak learning rate (of AdamW; Muon's is 16 times higher; default %(default)s)",
    )
    train.add_argument(
        "--lr-schedule",
        choices=["wsd", "onecycle"],
        help="wsd: warm up over a tenth of the steps, hold the peak, decay linearly to zero "
        "over the last 30 %% (skseg.segnet.WarmupStableDecayLR); onecycle: torch's "
        "one-cycle schedule (default %(default)s)",
    )
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="train on random affine copies of every batch, overlaid with each other "
        "(SegNetSegmenter's augment; default off: every epoch composes new images)",
    )
    train.add_argument(
        "--test-time-shifts",
        type=_non_negative_int,
        help="shifted copies of every evaluation image whose predictions are averaged "
        "with its own (test-time augmentation; default %(default)s, 0 predicts once)",
    )
    train.add_argument(
        "--precision",
        choices=["auto", "bfloat16", "float32"],  # skseg.segnet.PRECISIONS
        help="bfloat16 autocast or float32; auto: bfloat16 where the CPU or GPU has it "
        "natively (AMX, AVX-512 BF16, Ampere or later), float32 elsewhere (default "
        "%(default)s)",
    )
    train.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="ask glibc's malloc to keep freed memory for the next training step instead "
        "of returning it to the system (10-15 %% shorter steps on some virtual machines; "
        "acts on the whole process)",
    )
    train.add_argument("--device", help="cpu, cuda or cuda:N (default %(default)s)")
    train.add_argument("--seed", type=int, help="default %(default)s")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    train.set_defaults(run=_train_segnet)
    return parser


def _check_arguments(args):
    """Checks that need more than one argument or the file system, before any work."""
    if args.command == "segment":
        _check_output(args.output, IMAGE_SUFFIXES)
        if args.labels is not None:
            _check_output(args.labels, LABEL_SUFFIXES)
            if Path(args.labels).resolve() == Path(args.output).resolve():
                raise ValueError(f"--labels and --output are the same file {args.labels!r}")
        if args.image is not None and not Path(args.image).is_file():
            raise ValueError(f"image {args.image!r} does not exist")
        if args.mask is not None and not Path(args.mask).is_file():
            raise ValueError(f"mask {args.mask!r} does not exist")
        _check_device(args.device, ("auto", "cpu", "cuda"))
        return
    _check_output(args.output, (".pt",))
    if args.data_home is not None and not Path(args.data_home).is_dir():
        raise ValueError(
            f"--data-home {args.data_home!r} is not a folder; give the folder that holds "
            "the MNIST IDX files, or leave it out to use $SKSEG_DATA or the stand-in digits"
        )
    _check_device(args.device, ("cpu", "cuda"))


def _check_device(device, names):
    """Reject a ``--device`` that is none of ``names`` and no ``cuda:N``, before any work.

    The spelling only: torch is not imported for argument errors, so whether the machine
    has that device is left to the estimator's ``resolve_device``.
    """
    if device not in names and not re.fullmatch(r"cuda:\d+", device):
        raise ValueError(f"--device must be {', '.join(names)} or cuda:N, got {device!r}")


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

    Examples
    --------
    >>> import os, tempfile
    >>> from skseg.cli import main
    >>> out = os.path.join(tempfile.mkdtemp(), "coffee.png")
    >>> from skseg.meanshift import compile_kernels
    >>> _ = compile_kernels()  # on the first use, ``segment`` would say it compiles them
    >>> main(["segment", "--scale", "0.05", "--quiet", "-o", out])  # doctest: +ELLIPSIS
    segmenting scikit-image sample 'coffee': 30 x 20 pixels
    ... segments in ... s (... steps on ...)
    wrote ... (original | segments in mean colour | boundaries)
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_arguments(args)
        return args.run(args)
    except (ValueError, FloatingPointError) as exc:  # user errors, a diverged training
        print(f"skseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
