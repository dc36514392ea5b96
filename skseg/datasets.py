"""Data sets: MNIST in IDX format, an offline stand-in, and multi-digit MNIST composition."""

import gzip
import hashlib
import os
import shutil
import urllib.request
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

__all__ = [
    "get_data_home",
    "load_mnist",
    "load_digits_standin",
    "load_default_digits",
    "StandInWarning",
    "make_multidigit_mnist",
    "split_digits",
    "MNIST_URL",
    "MNIST_MD5",
    "BACKGROUND",
]

#: label of the background pixels of :func:`make_multidigit_mnist` (digits are 0..9)
BACKGROUND = 10

#: where :func:`load_mnist` downloads from; any mirror with the four standard files works
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: MD5 of the gzip-compressed files as distributed (the values torchvision checks too)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


class StandInWarning(UserWarning):
    """Warns that the bundled 8 x 8 digits stand in for MNIST.

    Examples
    --------
    >>> from skseg.datasets import StandInWarning
    >>> issubclass(StandInWarning, UserWarning)  # filter it like any UserWarning
    True
    """


def get_data_home(data_home=None):
    """Folder that holds skseg's data sets.

    Parameters
    ----------
    data_home : str or path-like or None, default=None
        Explicit folder. ``None`` uses the ``SKSEG_DATA`` environment variable, and
        ``~/skseg_data`` when that is unset.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> from skseg.datasets import get_data_home
    >>> get_data_home("/tmp/digits").as_posix()
    '/tmp/digits'
    """
    if data_home is None:
        data_home = os.environ.get("SKSEG_DATA", Path.home() / "skseg_data")
    return Path(data_home).expanduser()


def _find(folder, name):
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path, magic, item_shape):
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    header_len = 4 * (1 + 1 + len(item_shape))
    if len(raw) < header_len:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, not even a full header")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise ValueError(
            f"{path} has magic number {found_magic:#010x}, expected {magic:#010x}: "
            "not an MNIST IDX file of this kind"
        )
    dims = [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, 2 + len(item_shape))]
    if tuple(dims[1:]) != item_shape:
        raise ValueError(f"{path} holds items of shape {tuple(dims[1:])}, expected {item_shape}")
    expected = header_len + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(
            f"{path} is truncated or padded: {len(raw)} bytes, the header announces {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _download(url, target, md5, verbose):
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(partial, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"downloading {target.name}",
                disable=not verbose,
            ) as bar,
        ):
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))
    digest = hashlib.md5(partial.read_bytes()).hexdigest()
    if md5 is not None and digest != md5:
        partial.unlink()
        raise ValueError(f"checksum mismatch for {url}: got md5 {digest}, expected {md5}")
    shutil.move(partial, target)


def load_mnist(
    data_home=None,
    subset="train",
    download=False,
    *,
    base_url=None,
    checksums=None,
    verbose=True,
):
    """Load MNIST digits from the standard IDX files.

    Reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (or the ``t10k``
    pair for ``subset="test"``), gzip-compressed (``.gz``) or not, from ``data_home``.

    Parameters
    ----------
    data_home : str or path-like or None, default=None
        Folder with the files; see :func:`get_data_home`.

    subset : {"train", "test"}, default="train"
        Which split.

    download : bool, default=False
        Fetch missing files from ``base_url`` into ``data_home`` (with a progress bar and an
        MD5 check).

    base_url : str or None, default=None
        Mirror to download from; ``None`` uses :data:`MNIST_URL`.

    checksums : dict or None, default=None
        MD5 of each ``.gz`` file by name; ``None`` uses :data:`MNIST_MD5`, the checksums
        of the files as distributed. Give your own for a mirror that recompressed them.

    verbose : bool, default=True
        Show the download progress bar.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), dtype uint8
    labels : ndarray of shape (n,), dtype uint8

    Raises
    ------
    FileNotFoundError
        If a file is missing and ``download`` is False.
    ValueError
        If a file is not a valid IDX file (bad magic number, wrong item shape, truncated)
        or images and labels disagree in number.

    Examples
    --------
    >>> import gzip, pathlib, tempfile
    >>> import numpy as np
    >>> from skseg.datasets import load_mnist
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> header = (0x803).to_bytes(4, "big") + b"".join(
    ...     n.to_bytes(4, "big") for n in (2, 28, 28))
    >>> _ = (home / "train-images-idx3-ubyte").write_bytes(header + bytes(2 * 784))
    >>> _ = (home / "train-labels-idx1-ubyte").write_bytes(
    ...     (0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([3, 7]))
    >>> images, labels = load_mnist(home)
    >>> images.shape, labels.tolist()
    ((2, 28, 28), [3, 7])
    """
    if subset not in _FILES:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    folder = get_data_home(data_home)
    paths = []
    for name in _FILES[subset]:
        path = _find(folder, name)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"no {name}[.gz] in {folder}; point data_home (or $SKSEG_DATA) at a "
                    "folder with the MNIST IDX files, or pass download=True"
                )
            path = folder / f"{name}.gz"
            url = (base_url or MNIST_URL).rstrip("/") + f"/{name}.gz"
            md5 = (MNIST_MD5 if checksums is None else checksums).get(path.name)
            _download(url, path, md5, verbose)
        paths.append(path)
    images = _read_idx(paths[0], _IMAGES_MAGIC, (28, 28))
    labels = _read_idx(paths[1], _LABELS_MAGIC, ())
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {folder}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{paths[1]} holds labels above 9: not MNIST digit labels")
    return images, labels


def load_digits_standin():
    """scikit-learn's bundled 8 x 8 digits, upsampled to 28 x 28 MNIST-like digits.

    An offline stand-in for MNIST (1,797 digits, no download), used when no MNIST files
    are found. It is good enough to run examples and tests; models trained on it are not
    MNIST models. Each 8 x 8 digit (values 0-16) is upsampled bilinearly to 20 x 20 and
    centred on a 28 x 28 canvas, as MNIST digits are.

    Returns
    -------
    images : ndarray of shape (1797, 28, 28), dtype uint8
    labels : ndarray of shape (1797,), dtype uint8

    Examples
    --------
    >>> from skseg.datasets import load_digits_standin
    >>> images, labels = load_digits_standin()
    >>> images.shape, images.dtype, int(images.max())
    ((1797, 28, 28), dtype('uint8'), 255)
    """
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = digits.images / 16.0
    big = resize(small, (len(small), 20, 20), order=1, anti_aliasing=False)
    images = np.zeros((len(small), 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = np.round(np.clip(big, 0, 1) * 255)
    return images, digits.target.astype(np.uint8)


def load_default_digits(data_home=None):
    """MNIST training digits when they are found, else the 8 x 8 stand-in.

    Parameters
    ----------
    data_home : str or path-like or None, default=None
        Where to look for the MNIST IDX files; see :func:`get_data_home`.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), dtype uint8
    labels : ndarray of shape (n,), dtype uint8

    Warns
    -----
    StandInWarning
        When no MNIST files are found and :func:`load_digits_standin` is used.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from skseg.datasets import load_default_digits
    >>> with warnings.catch_warnings(record=True):
    ...     images, labels = load_default_digits(tempfile.mkdtemp())
    >>> images.shape
    (1797, 28, 28)
    """
    try:
        return load_mnist(data_home)
    except FileNotFoundError:
        warnings.warn(
            f"no MNIST files in {get_data_home(data_home)}: using scikit-learn's 8 x 8 "
            "digits upsampled to 28 x 28 as a stand-in (see load_digits_standin)",
            StandInWarning,
            stacklevel=2,
        )
        return load_digits_standin()


def make_multidigit_mnist(
    n_samples,
    *,
    digits=None,
    labels=None,
    image_size=64,
    max_digits=3,
    ink_threshold=128,
    random_state=None,
    return_instances=False,
):
    """Compose images of several MNIST digits with a per-pixel label map.

    The composition contract, for every image:

    1. the number of digits ``k`` is uniform in ``1..max_digits``;
    2. ``k`` digits are drawn uniformly (with replacement) from ``digits``, each scaled
       to ``[0, 1]`` (``uint8 / 255``) and placed at a uniformly random integer offset
       (row, then column) with the whole 28 x 28 digit inside the canvas;
    3. the image is the pixelwise maximum of the placed digits;
    4. a pixel's label is the class (0-9) of the digit whose intensity is highest there
       (the first drawn wins ties) when that intensity is ``>= 0.5``
       (``ink_threshold / 255``), else 10 (background); with ``return_instances``, the
       pixel's instance is that digit's place in the drawing order, from 1 (0 where the
       label is the background).

    Random numbers are drawn image by image in that order (``k``, the digit indices, the
    offsets), so the same ``random_state`` gives the same data.

    Parameters
    ----------
    n_samples : int
        Number of images.

    digits : ndarray of shape (n_digits, 28, 28), dtype uint8, default=None
        Source digits, intensities 0..255 (whole numbers of another numeric dtype are
        accepted; digits already scaled to ``[0, 1]`` are rejected). ``None`` uses
        :func:`load_default_digits`: MNIST from the default data home, or the stand-in
        (with a warning) when no MNIST is there.

    labels : ndarray of int of shape (n_digits,), default=None
        Class (0-9) of each source digit; required when ``digits`` is given.

    image_size : int, default=64
        Side of the square canvas, at least 28.

    max_digits : int, default=3
        Most digits per image.

    ink_threshold : int, default=128
        Intensity (1-255, of the uint8 digits) from which a pixel is labelled with its
        digit's class: 128 is the contract's 0.5; 1 labels every pixel with any ink, as
        course exercises on multi-digit MNIST often do.

    random_state : int, RandomState instance or None, default=None
        Seed of the composition.

    return_instances : bool, default=False
        Also return the instance map: which digit of its image each pixel's label comes
        from, to score a model digit by digit or to train instance segmentation. ``X``
        and ``y`` are the same either way.

    Returns
    -------
    X : ndarray of shape (n_samples, 1, image_size, image_size), dtype float32
        Images in ``[0, 1]``.
    y : ndarray of shape (n_samples, image_size, image_size), dtype int64
        Per-pixel labels in ``0..10``.
    instances : ndarray of shape (n_samples, image_size, image_size), dtype int64
        Only with ``return_instances=True``: 0 where ``y`` is the background, else the
        place (1 to ``max_digits``) of the pixel's digit in its image's drawing order. A
        digit hidden everywhere by brighter ink of others has no pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from skseg.datasets import make_multidigit_mnist
    >>> digits = np.zeros((2, 28, 28), dtype=np.uint8)
    >>> digits[:, 10:18, 12:16] = 255
    >>> X, y = make_multidigit_mnist(
    ...     4, digits=digits, labels=np.array([3, 8]), random_state=0)
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((4, 1, 64, 64), dtype('float32'), (4, 64, 64), dtype('int64'))
    >>> sorted(np.unique(y).tolist())
    [3, 8, 10]
    >>> X, y, instances = make_multidigit_mnist(
    ...     4, digits=digits, labels=np.array([3, 8]), random_state=0, return_instances=True)
    >>> bool(((instances == 0) == (y == 10)).all())
    True
    """
    if digits is None:
        digits, labels = load_default_digits()
    digits = np.asarray(digits)
    if labels is None:
        raise ValueError("labels are required when digits are given")
    labels = np.asarray(labels)
    if digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise ValueError(f"digits must have shape (n, 28, 28), got {digits.shape}")
    if len(digits) == 0:
        raise ValueError("digits is empty")
    if labels.shape != (len(digits),):
        raise ValueError(f"expected {len(digits)} labels, got an array of shape {labels.shape}")
    if digits.dtype != np.uint8:
        if digits.dtype.kind not in "iuf":
            raise ValueError(f"digits must hold intensities 0..255, got dtype {digits.dtype}")
        if digits.dtype.kind == "f" and (digits != np.round(digits)).any():
            raise ValueError(
                f"digits must hold intensities 0..255 like MNIST's uint8, got {digits.dtype} "
                "with fractional values (scaled to [0, 1]? multiply by 255)"
            )
        if digits.min() < 0 or digits.max() > 255:
            raise ValueError(
                f"digits must hold intensities 0..255, got values in "
                f"[{digits.min()}, {digits.max()}]"
            )
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            "labels must be digit classes 0..9 (10 labels the background), got "
            f"dtype {labels.dtype} with values {np.unique(labels)[:12].tolist()}"
        )
    if not isinstance(n_samples, Integral) or n_samples < 0:
        raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
    if image_size < 28:
        raise ValueError(f"image_size must be at least 28, got {image_size}")
    if max_digits < 1:
        raise ValueError(f"max_digits must be at least 1, got {max_digits}")
    if not isinstance(ink_threshold, Integral) or not 1 <= ink_threshold <= 255:
        raise ValueError(f"ink_threshold must be an integer in 1..255, got {ink_threshold!r}")
    rng = check_random_state(random_state)
    # draw image by image (the documented order), then place digit slot by slot for all
    # images at once
    counts = np.zeros(n_samples, dtype=np.int64)
    chosen = np.zeros((n_samples, max_digits), dtype=np.int64)
    offsets = np.zeros((n_samples, max_digits, 2), dtype=np.int64)
    for i in range(n_samples):
        k = rng.randint(1, max_digits + 1)
        counts[i] = k
        chosen[i, :k] = rng.randint(0, len(digits), size=k)
        offsets[i, :k] = rng.randint(0, image_size - 28 + 1, size=(k, 2))
    # compose in uint8: v / 255 is strictly increasing in v and v / 255 >= 0.5 exactly
    # when v >= 128, so every comparison of the contract comes out as on the scaled
    # intensities, and only the finished images are scaled (to the same float32 values)
    ink = digits.astype(np.uint8, copy=False)
    classes = labels.astype(np.uint8)
    best = np.zeros((n_samples, image_size, image_size), dtype=np.uint8)
    y = np.full((n_samples, image_size, image_size), BACKGROUND, dtype=np.uint8)
    if return_instances:
        instances = np.zeros((n_samples, image_size, image_size), dtype=np.int64)
    span = np.arange(28)
    for slot in range(max_digits):
        images = np.flatnonzero(counts > slot)
        window = (
            images[:, None, None],
            offsets[images, slot, 0][:, None, None] + span[None, :, None],
            offsets[images, slot, 1][:, None, None] + span[None, None, :],
        )
        digit = ink[chosen[images, slot]]
        under = best[window]
        higher = digit > under  # strictly higher: the first drawn wins ties
        inked = digit >= ink_threshold
        label = np.where(inked, classes[chosen[images, slot]][:, None, None], BACKGROUND)
        best[window] = np.where(higher, digit, under)
        y[window] = np.where(higher, label, y[window])
        if return_instances:
            instances[window] = np.where(higher, np.where(inked, slot + 1, 0), instances[window])
    X = best[:, None].astype(np.float32) / 255.0
    if return_instances:
        return X, y.astype(np.int64), instances
    return X, y.astype(np.int64)


def split_digits(n_digits, *, held_out_fraction=1 / 6, random_state=0):
    """Split digit indices into training digits and held-out digits.

    Images composed from the held-out digits measure generalisation to handwriting the
    model never saw, which is what ``skseg train-segnet`` reports.

    Parameters
    ----------
    n_digits : int
        Number of source digits.

    held_out_fraction : float, default=1/6
        Share of the digits held out (10,000 of MNIST's 60,000 training digits).

    random_state : int, RandomState instance or None, default=0
        Seed of the split.

    Returns
    -------
    train : ndarray of int
        Indices of the training digits.
    held_out : ndarray of int
        Indices of the held-out digits.

    Examples
    --------
    >>> from skseg.datasets import split_digits
    >>> train, held_out = split_digits(12, held_out_fraction=0.25)
    >>> len(train), len(held_out), sorted([*train, *held_out]) == list(range(12))
    (9, 3, True)
    """
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    order = check_random_state(random_state).permutation(n_digits)
    n_held = max(1, int(round(n_digits * held_out_fraction)))
    return order[n_held:], order[:n_held]
