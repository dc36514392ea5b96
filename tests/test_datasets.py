import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from skseg.datasets import (
    StandInWarning,
    get_data_home,
    load_digits_standin,
    load_mnist,
    make_multidigit_mnist,
)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_shared = pytest.mark.skipif(
    not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="the MNIST training files are not beside the checkout",
)


@needs_shared
def test_load_mnist_reads_the_shared_training_digits():
    images, labels = load_mnist(SHARED_MNIST)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
    # the first training digit of MNIST is a 5
    assert labels[0] == 5 and images[0].max() == 255


def _write_idx(folder, images, labels, compress):
    folder.mkdir(parents=True, exist_ok=True)
    img = (
        (0x803).to_bytes(4, "big")
        + b"".join(n.to_bytes(4, "big") for n in images.shape)
        + images.tobytes()
    )
    lab = (0x801).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.tobytes()
    for name, raw in [("train-images-idx3-ubyte", img), ("train-labels-idx1-ubyte", lab)]:
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return img, lab


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_round_trips_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    _write_idx(tmp_path, images, labels, compress)
    got_images, got_labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_load_mnist_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    img, lab = _write_idx(tmp_path, np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8), False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(img[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + img[4:])
    with pytest.raises(ValueError, match="magic number"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(img)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(lab[:8] + b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="subset"):
        load_mnist(tmp_path, subset="validation")
    monkeypatch.setenv("SKSEG_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"


@pytest.fixture
def local_mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving IDX files, like an MNIST mirror."""
    served = tmp_path / "mirror"
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([1, 2, 3, 4], dtype=np.uint8)
    _write_idx(served, images, labels, compress=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    checksums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.glob("*.gz")}
    yield f"http://127.0.0.1:{server.server_address[1]}/", checksums, images, labels
    server.shutdown()


def test_download_from_a_local_mirror(tmp_path, local_mirror, capsys):
    url, checksums, images, labels = local_mirror
    home = tmp_path / "home"
    got, got_labels = load_mnist(home, download=True, base_url=url, checksums=checksums)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert "downloading train-images" in capsys.readouterr().err
    assert (home / "train-images-idx3-ubyte.gz").exists()


def test_download_rejects_a_bad_checksum(tmp_path, local_mirror):
    url, checksums, _, _ = local_mirror
    wrong = dict.fromkeys(checksums, "0" * 32)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist(tmp_path / "home", download=True, base_url=url, checksums=wrong, verbose=False)
    assert not list((tmp_path / "home").glob("*.gz"))


def test_standin_digits_look_like_mnist():
    images, labels = load_digits_standin()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert images[:, :4].max() == 0 and images[:, 24:].max() == 0  # centred, with margin
    assert set(labels) == set(range(10))


def test_default_digits_fall_back_to_the_standin_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("SKSEG_DATA", str(tmp_path))
    with pytest.warns(StandInWarning, match="stand-in"):
        X, y = make_multidigit_mnist(2, random_state=0)
    assert X.shape == (2, 1, 64, 64)


def _compose_reference(digits, labels, n, image_size, max_digits, seed, ink_threshold=128):
    """The composition contract, written out independently, one pixel at a time."""
    rng = np.random.RandomState(seed)
    X = np.zeros((n, image_size, image_size))
    y = np.zeros((n, image_size, image_size), dtype=int)
    instances = np.zeros((n, image_size, image_size), dtype=int)
    for i in range(n):
        k = rng.randint(1, max_digits + 1)
        chosen = rng.randint(0, len(digits), size=k)
        offsets = rng.randint(0, image_size - 28 + 1, size=(k, 2))
        layers = np.zeros((k, image_size, image_size))
        for j, (idx, (r, c)) in enumerate(zip(chosen, offsets)):
            layers[j, r : r + 28, c : c + 28] = digits[idx] / 255.0
        X[i] = layers.max(axis=0)
        for r in range(image_size):
            for c in range(image_size):
                j = int(np.argmax(layers[:, r, c]))
                top = layers[j, r, c]
                inked = top >= ink_threshold / 255
                y[i, r, c] = labels[chosen[j]] if inked else 10
                instances[i, r, c] = j + 1 if inked else 0
    return X, y, instances


@pytest.mark.parametrize("ink_threshold", [128, 1])
@pytest.mark.parametrize("grey_levels", [None, [0, 1, 127, 128, 255]])
def test_multidigit_composition_follows_the_contract(grey_levels, ink_threshold):
    rng = np.random.default_rng(2)
    digits = (rng.random((6, 28, 28)) ** 3 * 255).astype(np.uint8)
    if grey_levels is not None:  # ties between digits and both sides of the 0.5 boundary
        digits = rng.choice(np.array(grey_levels, dtype=np.uint8), size=(6, 28, 28))
    labels = np.array([0, 1, 2, 3, 4, 5])
    params = dict(digits=digits, labels=labels, image_size=40, max_digits=3, random_state=7)
    X, y = make_multidigit_mnist(5, ink_threshold=ink_threshold, **params)
    X_ref, y_ref, instances_ref = _compose_reference(digits, labels, 5, 40, 3, 7, ink_threshold)
    assert X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X[:, 0], X_ref, atol=1e-7)
    np.testing.assert_array_equal(y, y_ref)
    X2, y2, instances = make_multidigit_mnist(
        5, ink_threshold=ink_threshold, return_instances=True, **params
    )
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert instances.dtype == np.int64
    np.testing.assert_array_equal(instances, instances_ref)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digits": np.zeros((2, 28, 27), np.uint8), "labels": [0, 1]}, r"\(n, 28, 28\)"),
        ({"digits": np.zeros((2, 28, 28), np.uint8), "labels": [0]}, "expected 2 labels"),
        ({"digits": np.zeros((2, 28, 28), np.uint8)}, "labels are required"),
        (
            {"digits": np.zeros((1, 28, 28), np.uint8), "labels": [0], "image_size": 20},
            "at least 28",
        ),
        ({"digits": np.full((1, 28, 28), 0.5), "labels": [0]}, r"scaled to \[0, 1\]"),
        ({"digits": np.full((1, 28, 28), 300), "labels": [0]}, r"got values in \[300, 300\]"),
        ({"digits": np.zeros((1, 28, 28), bool), "labels": [0]}, "got dtype bool"),
        ({"digits": np.zeros((1, 28, 28), np.uint8), "labels": [10]}, "classes 0..9"),
        ({"digits": np.zeros((1, 28, 28), np.uint8), "labels": [1.0]}, "classes 0..9"),
        ({"n_samples": -1, "digits": np.zeros((1, 28, 28), np.uint8), "labels": [0]}, ">= 0"),
        (
            {"digits": np.zeros((1, 28, 28), np.uint8), "labels": [0], "ink_threshold": 0},
            "ink_threshold must be an integer in 1..255",
        ),
    ],
)
def test_composition_rejects_bad_arguments(kwargs, message):
    kwargs = {"n_samples": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_multidigit_mnist(**kwargs)


def test_composition_accepts_whole_number_intensities_of_any_dtype():
    digits = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28))
    X, y = make_multidigit_mnist(
        4, digits=digits.astype(np.uint8), labels=[1, 2, 3], random_state=0
    )
    X64, y64 = make_multidigit_mnist(
        4, digits=digits.astype(float), labels=[1, 2, 3], random_state=0
    )
    np.testing.assert_array_equal(X, X64)
    np.testing.assert_array_equal(y, y64)
