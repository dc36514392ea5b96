"""Scale-out on existing engines: joblib on a Dask cluster, Accelerate for SegNet."""

import numpy as np
import pytest
from skimage import data, transform
from sklearn.model_selection import GridSearchCV

from skseg import MeanShiftSegmenter
from skseg.datasets import load_digits_standin, make_multidigit_mnist
from skseg.image import rgb_to_features, segment_images


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _images():
    photos = [data.coffee(), data.astronaut(), data.chelsea()]
    return [transform.rescale(p, 0.06, channel_axis=-1, anti_aliasing=True) for p in photos]


def test_grid_search_and_batch_segmentation_on_a_dask_cluster(dask_client):
    import joblib

    images = _images()
    X = rgb_to_features(images[0])
    grid = {"bandwidth": [1.5, 3.0, 6.0]}
    serial_search = GridSearchCV(MeanShiftSegmenter(device="cpu", random_state=0), grid, cv=2)
    serial_search.fit(X)
    serial_maps = segment_images(images, MeanShiftSegmenter(device="cpu"))

    with joblib.parallel_backend("dask"):
        search = GridSearchCV(
            MeanShiftSegmenter(device="cpu", random_state=0), grid, cv=2, n_jobs=-1
        )
        search.fit(X)
        maps = segment_images(images, MeanShiftSegmenter(device="cpu"), n_jobs=-1)

    workers = dask_client.scheduler_info()["workers"]
    assert len(workers) == 2 and all("127.0.0.1" in address for address in workers)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], serial_search.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == serial_search.best_params_
    for got, expected in zip(maps, serial_maps):
        np.testing.assert_array_equal(got, expected)


def test_accelerate_code_path_on_cpu():
    accelerate = pytest.importorskip("accelerate")
    from skseg.segnet import AcceleratedSegNetSegmenter

    digits, labels = load_digits_standin()
    X, y = make_multidigit_mnist(
        48, digits=digits, labels=labels, image_size=32, max_digits=1, random_state=0
    )
    net = AcceleratedSegNetSegmenter(
        accelerator=accelerate.Accelerator(cpu=True),
        width=4,
        depth=2,
        max_epochs=3,
        lr=2e-2,
        verbose=0,
        random_state=0,
    )
    net.fit(X, y)
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert net.predict(X[:3]).shape == (3, 32, 32)
    assert net.score(X, y) > 0.0


def test_segment_images_reports_progress_when_asked(capfd):
    images = [np.zeros((4, 4, 3)), np.ones((2, 3, 3)), np.full((3, 3, 3), 0.5)]
    maps = segment_images(images, MeanShiftSegmenter(device="cpu", verbose=0), verbose=11)
    assert [m.shape for m in maps] == [(4, 4), (2, 3), (3, 3)]
    assert "Done   3 out of   3" in capfd.readouterr().err
    segment_images(images, MeanShiftSegmenter(device="cpu", verbose=0))
    assert capfd.readouterr().err == ""
