import os
import pickle
from collections import Counter

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import jaccard_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skseg import SegNetSegmenter
from skseg._device import has_fast_bfloat16
from skseg.datasets import load_digits_standin, make_multidigit_mnist
from skseg.metrics import iou_scorer, mean_iou
from skseg.segnet import IntensityThresholds, SegNetLite, shift_offsets

# the mechanics are tested on tiny networks trained by AdamW under a one-cycle schedule in
# float32 (exact and the same on every machine); the defaults learn in
# test_training_lowers_the_loss_and_beats_chance and the Muon tests of test_optim.py
TINY = dict(
    width=4,
    depth=2,
    convs_per_block=1,
    lr=2e-2,
    batch_size=16,
    optimizer=torch.optim.AdamW,
    lr_schedule="onecycle",
    top_block="unpool",
    mixed_precision=False,
    verbose=0,
    random_state=0,
)


@pytest.fixture(scope="module")
def small_data():
    """32 x 32 images of one stand-in 0 or 1 each: labels 0, 1 and 10 (background)."""
    digits, labels = load_digits_standin()
    keep = labels < 2
    X, y = make_multidigit_mnist(
        96, digits=digits[keep], labels=labels[keep], image_size=32, max_digits=1, random_state=0
    )
    return X, y


def test_architecture_follows_segnet():
    net = SegNetLite(width=32, depth=4)
    enc = [block[0].out_channels for block in net.encoders]
    dec = [block[0].out_channels for block in reversed(net.decoders)]
    assert enc == [32, 64, 128, 256] and dec == [128, 64, 32, 32]
    assert net.pool.return_indices and isinstance(net.unpool, torch.nn.MaxUnpool2d)
    kinds = [type(m) for m in net.encoders[0]]
    assert kinds == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU]
    assert net(torch.zeros(2, 1, 32, 48)).shape == (2, 11, 32, 48)
    with pytest.raises(ValueError, match="at least 2\\*\\*depth = 16"):
        net(torch.zeros(1, 1, 15, 40))


def test_upsampled_top_block_leaves_out_the_full_resolution_decoder():
    net = SegNetLite(width=32, depth=4, top_block="upsample")
    dec = [block[0].out_channels for block in reversed(net.decoders)]
    assert dec == [128, 64, 32]  # no decoder block at full resolution
    assert (net.classifier.in_channels, net.skip.out_channels) == (32, 11)
    full_resolution = Counter()  # layers whose output is 64 x 64

    def count(module, args, out):
        if (out[0] if isinstance(out, tuple) else out).shape[-1] == 64:
            full_resolution[type(module)] += 1

    for layer in net.modules():
        if not list(layer.children()):
            layer.register_forward_hook(count)
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 11, 64, 64)
    # the first encoder block and the input skip (its soft steps, its 1x1 convolution)
    assert full_resolution == {
        torch.nn.Conv2d: 2,
        torch.nn.BatchNorm2d: 1,
        torch.nn.ReLU: 1,
        IntensityThresholds: 1,
    }
    with pytest.raises(ValueError, match="top_block must be 'unpool' or 'upsample'"):
        SegNetLite(top_block="bilinear")


def _functional_segnet(net, x, encoder_skip, top_block="unpool"):
    """SegNetLite's forward pass in eval mode, written out with torch.nn.functional.

    Odd sides are padded to even ones for pooling (with -inf, which no maximum comes
    from) and every unpooled or upsampled map is cut back to the size it came from.
    """

    def block(layers, x):
        conv, bn, _ = layers
        x = F.conv2d(x, conv.weight, padding=1)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
        return F.relu(x)

    def pad_to_even(x):
        return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), value=-torch.inf)

    def cut(x, like):
        return x[..., : like.shape[-2], : like.shape[-1]]

    image, features, indices = x, [], []
    for layers in net.encoders:
        x = block(layers, x)
        features.append(x)
        x, idx = F.max_pool2d(pad_to_even(x), 2, return_indices=True)
        indices.append(idx)

    def pixel_scores(image):  # the input skip: the image and its soft steps, 1x1 conv
        inputs = [image]
        if net.thresholds is not None:  # one soft step per threshold
            t, g = net.thresholds.thresholds, net.thresholds.log_gains.exp()
            inputs += [torch.sigmoid(g[k] * (image - t[k])) for k in range(len(t))]
        return F.conv2d(torch.cat(inputs, dim=1), net.skip.weight, net.skip.bias)

    upsample = top_block == "upsample"
    decoders = iter(reversed(net.decoders))
    for level in reversed(range(int(upsample), len(net.encoders))):
        x = cut(F.max_unpool2d(x, indices[level], 2), features[level])
        if level == 0:
            x = x + pixel_scores(image)
        elif encoder_skip:
            x = x + features[level]
        x = block(next(decoders), x)
    scores = F.conv2d(x, net.classifier.weight, net.classifier.bias)
    if upsample:  # half-resolution scores, bilinearly doubled, plus the pixels' own
        scores = F.interpolate(scores, scale_factor=2, mode="bilinear", align_corners=False)
        scores = cut(scores, image) + pixel_scores(image)
    return scores


@pytest.mark.parametrize("size", [(16, 24), (19, 29), (8, 9)])
@pytest.mark.parametrize(
    "encoder_skip, input_thresholds, top_block",
    [
        (True, 4, "unpool"),
        (False, 0, "unpool"),
        (True, 2, "unpool"),
        (True, 4, "upsample"),
        (False, 0, "upsample"),
    ],
)
def test_forward_matches_a_functional_reference(
    encoder_skip, input_thresholds, top_block, size
):
    torch.manual_seed(0)
    net = SegNetLite(
        width=4,
        depth=3,
        encoder_skip=encoder_skip,
        input_thresholds=input_thresholds,
        top_block=top_block,
    ).eval()
    for module in net.modules():  # stored statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        expected = _functional_segnet(net, x, encoder_skip, top_block)
        torch.testing.assert_close(net(x), expected)


@settings(max_examples=30)
@given(
    depth=st.integers(0, 4),
    extra=st.tuples(st.integers(0, 23), st.integers(0, 23)),
    top_block=st.sampled_from(["unpool", "upsample"]),
)
def test_any_image_of_at_least_2_to_the_depth_pixels_keeps_its_size(depth, extra, top_block):
    net = SegNetLite(width=2, depth=depth, top_block=top_block).eval()
    height, width = (2**depth + e for e in extra)
    with torch.no_grad():
        assert net(torch.rand(2, 1, height, width)).shape == (2, 11, height, width)
    if depth:
        with pytest.raises(ValueError, match=f"at least 2\\*\\*depth = {2**depth}"):
            net(torch.rand(1, 1, 2**depth - 1, width))


def test_unpooling_stays_in_bfloat16_under_autocast():
    # autocast would widen max-unpooling to float32, doubling the decoder's memory traffic
    net = SegNetLite(width=4, depth=2).eval()
    dtypes = []
    net.unpool.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(1, 1, 16, 16))
    assert dtypes == [torch.bfloat16, torch.bfloat16]


def test_input_skip_feeds_the_image_to_the_top_decoder_block():
    assert SegNetLite(width=4, depth=2, input_skip=False).skip is None
    plain = SegNetLite(width=4, depth=2, input_thresholds=0).skip
    assert (plain.in_channels, plain.out_channels, plain.kernel_size) == (1, 4, (1, 1))
    net = SegNetLite(width=4, depth=2).eval()
    assert net.skip.in_channels == 1 + 4  # the image and its four soft steps
    # without the skip the output no longer depends on the exact input values that
    # max-unpooling drops; with it, it does
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 1.0
    y = x.clone()
    y[0, 0, 0, 1] = 0.5  # not a pooling maximum: invisible to the plain decoder
    with torch.no_grad():
        assert not torch.allclose(net(x), net(y))


def _fit_grey_level_boundary(n_thresholds):
    """Boundary confidence of a 1x1 classifier of 8-bit grey levels, with or without steps."""
    torch.manual_seed(0)
    levels = torch.arange(256.0) / 255
    x, y = levels.view(-1, 1, 1, 1), (levels >= 95 / 255).long()
    steps = IntensityThresholds(n_thresholds) if n_thresholds else None
    head = torch.nn.Conv2d(1 + n_thresholds, 2, 1)
    params = [*head.parameters(), *(steps.parameters() if steps else [])]
    optimizer = torch.optim.Adam(params, lr=0.05)
    for _ in range(1000):
        inputs = torch.cat([x, steps(x)], dim=1) if steps else x
        logits = head(inputs).flatten(1)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    proba = logits.softmax(1)[torch.arange(256), y]
    return proba[93:97].min().item(), steps


def test_intensity_thresholds_learn_a_boundary_between_adjacent_grey_levels():
    # labels that flip between two adjacent 8-bit grey levels, 94/255 and 95/255: a
    # linear function of the intensity cannot separate them confidently in 1,000 steps,
    # a step whose threshold and gain are learned can
    confidence, steps = _fit_grey_level_boundary(4)
    assert confidence > 0.95
    assert steps.log_gains.exp().max() > 500
    assert steps.thresholds.detach().sub(94.5 / 255).abs().min() < 1 / 255
    assert _fit_grey_level_boundary(0)[0] < 0.6


@pytest.mark.parametrize("top_block", ["unpool", "upsample"])
def test_training_lowers_the_loss_and_beats_chance(small_data, top_block):
    X, y = small_data
    # the defaults (Muon, warmup-stable-decay, bfloat16 where native) on a small network
    params = {"width": 8, "depth": 2, "top_block": top_block, "verbose": 0, "random_state": 0}
    seg = SegNetSegmenter(max_epochs=8, validation_fraction=0.25, **params).fit(X, y)
    train_loss = seg.history[:, "train_loss"]
    assert train_loss[-1] < 0.7 * train_loss[0]
    valid_miou = seg.history[:, "valid_miou"]
    assert valid_miou[-1] > valid_miou[0]
    # chance: all background scores (IoU ~0.85 for background, 0 for both digits) / 3
    assert seg.score(X, y) > 0.4
    assert set(np.unique(seg.predict(X))) <= set(seg.classes_)


def test_valid_miou_is_the_mean_iou_of_the_validation_images(small_data):
    X, y = small_data
    # a custom train_split sees the encoded targets: indices into classes_ (0, 1, 10)
    encoded = np.searchsorted([0, 1, 10], y[:16])
    seg = SegNetSegmenter(
        max_epochs=2, train_split=predefined_split(Dataset(X[:16], encoded)), **TINY
    ).fit(X[16:], y[16:])
    assert seg.history[-1, "valid_miou"] == pytest.approx(seg.score(X[:16], y[:16]))


def test_predict_proba_and_labels(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    proba = seg.predict_proba(X[:4])
    assert proba.shape == (4, len(seg.classes_), 32, 32)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(seg.classes_[proba.argmax(1)], seg.predict(X[:4]))
    # images of another size work too (fully convolutional), odd sides included, and
    # (n, H, W) input
    assert seg.predict(X[:2, 0, :16, :24]).shape == (2, 16, 24)
    assert seg.predict(X[:2, 0, :19, :27]).shape == (2, 19, 27)


def test_prediction_holds_at_most_predict_pixels_per_forward_pass(small_data, monkeypatch):
    from skseg.segnet import _estimator

    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)  # batch_size 16
    expected = seg.predict_proba(X[:20])
    sizes = []
    seg.module_.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    seg.predict_proba(X[:20])
    assert sizes == [16, 4]  # the iterator's batches
    sizes.clear()
    monkeypatch.setattr(_estimator, "PREDICT_PIXELS", 3 * 32 * 32 + 1)
    np.testing.assert_allclose(seg.predict_proba(X[:20]), expected, rtol=1e-5, atol=1e-6)
    assert sizes == [3] * 6 + [2]
    sizes.clear()
    monkeypatch.setattr(_estimator, "PREDICT_PIXELS", 1)  # one image at least
    assert seg.predict(X[:3]).shape == (3, 32, 32) and sizes == [1, 1, 1]


def test_odd_sized_images_train_and_predict(small_data):
    X, y = small_data
    # 31 x 29 (odd sides at every pooling level but the lowest), the digits moved so
    # that many cross the last row or column
    X = np.roll(X, (12, 14), axis=(-2, -1))[:, :, :31, :29]
    y = np.roll(y, (12, 14), axis=(-2, -1))[:, :31, :29]
    # the upsampled top block, whose alignment on odd sides the forward test pins down
    params = {**TINY, "top_block": "upsample"}
    seg = SegNetSegmenter(max_epochs=8, validation_fraction=0.25, **params).fit(X, y)
    y_pred = seg.predict(X)
    assert y_pred.shape == y.shape
    assert seg.score(X, y) > 0.4  # chance is about 0.3 (see the test above)
    assert seg.set_params(test_time_shifts=3).predict(X[:2]).shape == (2, 31, 29)


def test_test_time_shifts_average_shifted_copies(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    images = X[:3]
    # depth 2: the image itself, then copies at offsets below 4 in a canvas 4 pixels larger
    offsets = shift_offsets(3, 4)
    assert offsets == [(0, 0), (1, 0), (0, 2), (3, 0)]
    expected = 0
    seg.module_.eval()
    for dy, dx in offsets:
        canvas = images
        if dy or dx:
            canvas = np.pad(images, ((0, 0), (0, 0), (dy, 4 - dy), (dx, 4 - dx)), mode="edge")
        with torch.no_grad():
            logits = seg.module_(torch.as_tensor(canvas)).numpy()
        logits = logits[..., dy : dy + 32, dx : dx + 32]
        expected += np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected /= len(offsets)
    seg.set_params(test_time_shifts=3)
    proba = seg.predict_proba(images)
    labels = seg.predict(images)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(labels, seg.classes_[expected.argmax(1)])
    assert seg.score(X, y) > 0
    with pytest.raises(ValueError, match="test_time_shifts must be an integer >= 0"):
        seg.set_params(test_time_shifts=-1).predict(images)


@given(n_shifts=st.integers(0, 300), depth=st.integers(0, 5))
def test_shift_offsets_spread_over_the_pooling_grid(n_shifts, depth):
    period = 2**depth
    offsets = shift_offsets(n_shifts, period)
    # distinct offsets, the image's own first, as many as asked for or the grid holds
    assert len(offsets) == len(set(offsets)) == min(n_shifts + 1, period * period)
    assert offsets[0] == (0, 0)
    assert all(0 <= d < period for offset in offsets for d in offset)
    # evenly spread: no quarter of the grid gets more than half of the first offsets
    if depth >= 1 and n_shifts >= 7:
        quarters = Counter((dy * 2 // period, dx * 2 // period) for dy, dx in offsets[:8])
        assert max(quarters.values()) <= 4


def test_classes_are_learned_from_y_and_ignored_pixels_skipped(small_data):
    X, _ = small_data
    y = np.full((len(X), 32, 32), 7)
    y[:, :, 16:] = 42
    y[:, :4] = 255
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    np.testing.assert_array_equal(seg.classes_, [7, 42])
    assert set(np.unique(seg.predict(X[:3]))) <= {7, 42}
    with pytest.raises(ValueError, match=r"labels \[3\] not seen in fit"):
        seg.partial_fit(X[:2], np.full((2, 32, 32), 3))


def test_first_partial_fit_takes_all_classes(small_data):
    X, _ = small_data
    y = np.full((len(X), 32, 32), 7)
    seg = SegNetSegmenter(**TINY).partial_fit(X[:4], y[:4], classes=[9, 7, 42])
    np.testing.assert_array_equal(seg.classes_, [7, 9, 42])
    assert seg.predict_proba(X[:1]).shape == (1, 3, 32, 32)
    seg.partial_fit(X[:2], np.full((2, 32, 32), 42), classes=[1, 2])  # fitted: ignored
    np.testing.assert_array_equal(seg.classes_, [7, 9, 42])
    with pytest.raises(ValueError, match=r"labels \[7\] not seen in fit"):
        SegNetSegmenter(**TINY).partial_fit(X[:2], y[:2], classes=[9, 42])
    with pytest.raises(ValueError, match="classes must hold integer class labels, got fractional"):
        SegNetSegmenter(**TINY).partial_fit(X[:2], y[:2], classes=[7.5])


def test_flattened_images_with_image_shape(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, image_shape=(32, 32), **TINY)
    seg.fit(X.reshape(len(X), -1), y.reshape(len(y), -1))
    assert seg.n_features_in_ == 1024
    assert seg.predict(X[:3].reshape(3, -1)).shape == (3, 1024)
    with pytest.raises(ValueError, match=r"image_shape=\(32, 32\), X must have shape"):
        seg.predict(np.zeros((2, 1000)))


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((2, 1, 1, 16, 16)), np.zeros((2, 16, 16)), "shape"),
        (np.zeros((2, 16, 16)), np.zeros((3, 16, 16)), "label map of shape"),
        (np.zeros((2, 16, 32)), np.zeros((2, 32, 16)), "label map of shape"),
        (np.full((2, 16, 16), np.nan), np.zeros((2, 16, 16)), "NaN"),
        (np.zeros((2, 3, 18)), np.zeros((2, 3, 18)), "at least 2\\*\\*depth = 4"),
        (np.zeros((2, 16, 16)), np.full((2, 16, 16), 0.5), "integer class labels"),
        (np.zeros((2, 16, 16)), None, "requires y"),
        (np.zeros((0, 16, 16)), np.zeros((0, 16, 16)), "0 sample"),
    ],
)
def test_bad_input_names_the_problem(X, y, message):
    with pytest.raises(ValueError, match=message):
        SegNetSegmenter(**TINY).fit(X, y)


def test_a_validation_split_that_leaves_nothing_to_train_names_the_problem():
    X, y = np.zeros((1, 16, 16)), np.zeros((1, 16, 16), dtype=int)
    with pytest.raises(ValueError, match="validation_fraction=0.1 holds out every image"):
        SegNetSegmenter(validation_fraction=0.1, **TINY).fit(X, y)


def test_one_image_trains_without_a_validation_split():
    X, y = np.zeros((1, 16, 16)), np.zeros((1, 16, 16), dtype=int)
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)  # validation_fraction=0
    assert seg.predict(X).shape == (1, 16, 16)
    assert "valid_loss" not in seg.history[-1]


def test_unknown_device_names_the_device(small_data):
    X, y = small_data
    with pytest.raises(ValueError, match="device='tpu' is not a device torch knows"):
        SegNetSegmenter(**{**TINY, "device": "tpu"}).fit(X[:4], y[:4])


@pytest.mark.parametrize("accelerator", ["mps", "xpu"])
def test_absent_accelerator_says_so(small_data, accelerator):
    if getattr(torch, accelerator).is_available():
        pytest.skip(f"this machine has a {accelerator} device")
    X, y = small_data
    with pytest.raises(ValueError, match=f"has no {accelerator} device"):
        SegNetSegmenter(**{**TINY, "device": accelerator}).fit(X[:4], y[:4])


def test_score_counts_labels_unseen_in_fit_as_never_predicted(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    y_true = y[:8].copy()
    y_true[:, :3] = 3  # a class the model has never seen
    pred = seg.predict(X[:8])
    labels = np.union1d(y_true, pred)
    expected = jaccard_score(y_true.ravel(), pred.ravel(), labels=labels, average="macro")
    assert seg.score(X[:8], y_true) == pytest.approx(expected)


def test_initialize_before_fit_says_what_to_do():
    # skorch's initialize() cannot size the network before it has seen the data
    with pytest.raises(NotFittedError, match="pass image_shape and module__n_classes"):
        SegNetSegmenter(**TINY).initialize()


def test_skorch_initialize_and_load_params_with_image_shape(small_data, tmp_path):
    X, y = small_data
    trained = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    trained.save_params(f_params=tmp_path / "weights.pt")
    fresh = SegNetSegmenter(image_shape=(32, 32), module__n_classes=3, **TINY)
    fresh.initialize()
    fresh.load_params(f_params=tmp_path / "weights.pt")
    flat = X[:4].reshape(4, -1)
    # the classes are 0..n-1; the trained model's are [0, 1, 10]
    np.testing.assert_array_equal(
        trained.classes_[fresh.predict(flat)], trained.predict(X[:4]).reshape(4, -1)
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_says_so(small_data):
    X, y = small_data
    with pytest.raises(ValueError, match="no CUDA GPU"):
        SegNetSegmenter(**{**TINY, "device": "cuda"}).fit(X[:4], y[:4])


@pytest.mark.cuda
def test_cuda_training(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=2, **{**TINY, "device": "cuda"}).fit(X, y)
    assert next(seg.module_.parameters()).is_cuda
    assert seg.predict(X[:2]).shape == (2, 32, 32)


def test_save_and_load_round_trip_without_code(small_data, tmp_path):
    X, y = small_data
    seg = SegNetSegmenter(
        max_epochs=1, encoder_skip=False, test_time_shifts=2, **{**TINY, "top_block": "upsample"}
    )
    seg.fit(X, y)
    path = tmp_path / "model.pt"
    seg.save(path)
    loaded = SegNetSegmenter.load(path)
    np.testing.assert_array_equal(loaded.predict(X[:5]), seg.predict(X[:5]))
    assert (loaded.width, loaded.depth, loaded.top_block) == (4, 2, "upsample")
    assert loaded.encoder_skip is False and loaded.test_time_shifts == 2
    # a file that needs code to unpickle is refused
    evil = tmp_path / "evil.pt"
    torch.save({"params": FunctionTransformer()}, evil)
    with pytest.raises(ValueError, match="not a SegNetSegmenter model file") as error:
        SegNetSegmenter.load(evil)
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_pickle_joblib_and_clone(small_data, tmp_path):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **TINY).fit(X, y)
    expected = seg.predict(X[:4])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(seg)).predict(X[:4]), expected)
    joblib.dump(seg, tmp_path / "seg.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "seg.joblib").predict(X[:4]), expected)
    fresh = clone(seg)
    assert fresh.get_params()["width"] == 4 and not hasattr(fresh, "classes_")


def test_pipeline_and_grid_search_over_width(small_data):
    X, y = small_data
    pipe = make_pipeline(
        FunctionTransformer(lambda Z: Z * 2.0), SegNetSegmenter(max_epochs=1, **TINY)
    )
    assert pipe.fit(X, y).predict(X[:2]).shape == (2, 32, 32)
    # one channel per block cannot tell two digits and the background apart as well as
    # sixteen: the search must find that
    search = GridSearchCV(
        SegNetSegmenter(max_epochs=3, **{**TINY, "width": 1}),
        param_grid={"width": [1, 16]},
        scoring=iou_scorer,
        cv=2,
    )
    search.fit(X, y)
    scores = dict(zip([1, 16], search.cv_results_["mean_test_score"]))
    assert search.best_params_["width"] == 16
    assert scores[16] > scores[1] + 0.05
    assert search.score(X, y) == pytest.approx(mean_iou(y, search.predict(X)))


def test_verbose_shows_progress_and_zero_is_silent(small_data, capsys):
    X, y = small_data
    SegNetSegmenter(max_epochs=1, validation_fraction=0.25, **{**TINY, "verbose": 1}).fit(
        X[:32], y[:32]
    )
    captured = capsys.readouterr()
    assert "valid_miou" in captured.out and "%" in captured.err
    SegNetSegmenter(max_epochs=1, **TINY).fit(X[:32], y[:32])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_mixed_precision_trains(small_data):
    X, y = small_data
    seg = SegNetSegmenter(max_epochs=1, **{**TINY, "mixed_precision": True}).fit(X, y)
    assert seg.predict_proba(X[:2]).dtype == np.float32


@pytest.mark.parametrize("native", [True, False])
def test_auto_mixed_precision_follows_the_hardware(small_data, monkeypatch, native):
    X, y = small_data
    monkeypatch.setattr("skseg.segnet._estimator.has_fast_bfloat16", lambda device: native)
    seg = SegNetSegmenter(max_epochs=1, **{**TINY, "mixed_precision": "auto"}).fit(X[:16], y[:16])
    logits = seg.infer(torch.as_tensor(X[:2]))
    assert logits.dtype == (torch.bfloat16 if native else torch.float32)


def _cpu_flags():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads Linux's /proc/cpuinfo")
def test_native_bfloat16_matches_the_cpu_flags():
    flags = _cpu_flags()
    assert has_fast_bfloat16("cpu") == bool(flags & {"amx_bf16", "avx512_bf16"})


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_native_bfloat16_on_cuda_from_ampere_on(monkeypatch, capability, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert has_fast_bfloat16("cuda") is native


def test_mixed_precision_must_be_bool_or_auto(small_data):
    X, y = small_data
    with pytest.raises(ValueError, match="'mixed_precision' parameter .* instance of 'bool'"):
        SegNetSegmenter(**{**TINY, "mixed_precision": "bf16"}).fit(X[:4], y[:4])


def _scheduler(model):
    return dict(model.callbacks_)["lr_schedule"].scheduler_


def test_one_cycle_spans_partial_fit_calls(small_data):
    X, y = small_data
    model = SegNetSegmenter(max_epochs=3, validation_fraction=0, **TINY)
    model.fit(X, y, epochs=1)
    steps_per_epoch = -(-len(X) // TINY["batch_size"])
    assert _scheduler(model).total_steps == 3 * steps_per_epoch
    peak = model.optimizer_.param_groups[0]["lr"]
    model.partial_fit(X, y, epochs=1)
    model.partial_fit(X, y, epochs=1)
    scheduler = _scheduler(model)
    assert scheduler.last_epoch == scheduler.total_steps - 1
    assert model.optimizer_.param_groups[0]["lr"] < 1e-3 * peak
    model.partial_fit(X, y, epochs=1)  # a new cycle starts once the last one has ended
    assert _scheduler(model) is not scheduler
    assert _scheduler(model).last_epoch == steps_per_epoch


def test_one_cycle_of_five_steps(small_data):
    # one step per epoch: the warm-up of 0.2 x 5 steps ends at step 0 (where torch's
    # schedule divides by zero), and the last epoch's step is this cycle's, not a new one's
    X, y = small_data
    model = SegNetSegmenter(max_epochs=5, validation_fraction=0, **TINY).fit(X[:16], y[:16])
    assert _scheduler(model).total_steps == 5
    assert model.optimizer_.param_groups[0]["lr"] < 1e-4 * TINY["lr"]


class _TrainingRates(Callback):
    def initialize(self):
        self.rates = []
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.rates.append(net.optimizer_.param_groups[0]["lr"])


def test_one_cycle_re_plans_for_epochs_of_another_size(small_data):
    X, y = small_data
    batch = TINY["batch_size"]
    model = SegNetSegmenter(
        max_epochs=3, validation_fraction=0, callbacks=[("rates", _TrainingRates())], **TINY
    )
    model.fit(X[: 2 * batch], y[: 2 * batch], epochs=1)  # plans 3 x 2 steps
    model.partial_fit(X[: 4 * batch], y[: 4 * batch], epochs=1)  # re-plans 2 + 2 x 4
    model.partial_fit(X[: 4 * batch], y[: 4 * batch], epochs=1)
    rates = dict(model.callbacks_)["rates"].rates
    assert _scheduler(model).total_steps == len(rates) == 10
    # from the third step on: torch's one-cycle schedule of the re-planned 10 steps
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))])
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=TINY["lr"], total_steps=10, pct_start=0.2
    )
    expected = []
    for _ in range(10):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if len(expected) < 10:
            reference.step()
    np.testing.assert_allclose(rates[2:], expected[2:])
    assert rates[-1] < 1e-4 * TINY["lr"]  # the cycle ends with the last epoch


def test_warmup_stable_decay_spans_partial_fit_calls_and_re_plans(small_data):
    X, y = small_data
    batch = TINY["batch_size"]
    model = SegNetSegmenter(
        max_epochs=3,
        validation_fraction=0,
        callbacks=[("rates", _TrainingRates())],
        **{**TINY, "lr_schedule": "wsd"},
    )
    model.fit(X[: 2 * batch], y[: 2 * batch], epochs=1)  # plans 3 x 2 steps
    model.partial_fit(X[: 4 * batch], y[: 4 * batch], epochs=1)  # re-plans 2 + 2 x 4
    model.partial_fit(X[: 4 * batch], y[: 4 * batch], epochs=1)
    rates = dict(model.callbacks_)["rates"].rates
    assert _scheduler(model).total_steps == len(rates) == 10
    # 6 steps planned: warm-up from lr / 25 over 0.6 steps; then, re-planned as 10 steps,
    # the peak until the last 3 steps, which fall linearly towards zero
    expected = np.array([1 / 25, 1, 1, 1, 1, 1, 1, 1, 2 / 3, 1 / 3]) * TINY["lr"]
    np.testing.assert_allclose(rates, expected)


def test_unknown_top_block_is_named(small_data):
    X, y = small_data
    with pytest.raises(ValueError, match="'top_block' parameter .* must be a str among"):
        SegNetSegmenter(**{**TINY, "top_block": "nearest"}).fit(X[:4], y[:4])


def test_unknown_lr_schedule_is_named(small_data):
    X, y = small_data
    with pytest.raises(ValueError, match="'lr_schedule' parameter .* must be a str among"):
        SegNetSegmenter(**{**TINY, "lr_schedule": "cosine"}).fit(X[:4], y[:4])


def test_fresh_compositions_every_epoch(small_data):
    from skseg.segnet import fit_on_fresh_compositions

    digits, labels = load_digits_standin()
    model = SegNetSegmenter(max_epochs=2, **TINY)
    fit_on_fresh_compositions(model, digits, labels, n_images=24, image_size=32, max_digits=1)
    assert len(model.history) == 2
    assert model.predict(small_data[0][:2]).shape == (2, 32, 32)


class _FakeClock:
    """``time.perf_counter`` that advances only when an epoch ends: 128 images a second."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class _AdvanceClock(Callback):
    def __init__(self, clock):
        self.clock = clock

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.clock.now += (len(dataset_train) + len(dataset_valid or [])) / 128


def test_fresh_compositions_sized_by_time(monkeypatch):
    from skseg.segnet import _training

    clock = _FakeClock()
    monkeypatch.setattr(_training, "time", clock)
    digits, labels = load_digits_standin()
    model = SegNetSegmenter(max_epochs=3, callbacks=[("clock", _AdvanceClock(clock))], **TINY)
    # 16 images take 0.125 s; the 0.5 s left are shared by the two epochs left
    _training.fit_on_fresh_compositions(
        model, digits, labels, n_images=16, seconds=0.625, image_size=32, max_digits=1
    )
    assert model.history[:, "n_images"] == [16, 32, 32]
    assert clock.now == 0.625
    # the schedule was re-planned for the larger epochs and ended with the last
    assert _scheduler(model).last_epoch == _scheduler(model).total_steps - 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_images=[8, 8, 8]), "n_images must be a positive int or 2 positive ints"),
        (dict(n_images=0), "n_images must be a positive int or 2 positive ints"),
        (dict(n_images=[8, 8], seconds=5), "with seconds, n_images must be one positive int"),
        (dict(n_images=8, seconds=0), "and seconds > 0"),
    ],
)
def test_fresh_compositions_reject_bad_sizes(kwargs, message):
    from skseg.segnet import fit_on_fresh_compositions

    digits, labels = load_digits_standin()
    model = SegNetSegmenter(max_epochs=2, **TINY)
    with pytest.raises(ValueError, match=message):
        fit_on_fresh_compositions(model, digits, labels, **kwargs)
    assert not hasattr(model, "module_")


def test_seconds_to_predict_times_a_clone(small_data):
    from skseg.segnet import seconds_to_predict

    X, y = small_data
    model = SegNetSegmenter(test_time_shifts=3, **TINY)
    assert seconds_to_predict(model, X, y) > 0
    assert seconds_to_predict(model, X[:, 0], n_probe_images=4) > 0
    assert not hasattr(model, "module_")
    with pytest.raises(ValueError, match="X must hold images"):
        seconds_to_predict(model, X[:0])


def test_images_per_epoch_for_budget_times_a_clone():
    from skseg.segnet import images_per_epoch_for_budget

    digits, labels = load_digits_standin()
    model = SegNetSegmenter(max_epochs=4, **TINY)
    n_images, rate = images_per_epoch_for_budget(
        model, digits, labels, seconds=2, image_size=32, max_digits=1
    )
    assert rate > 0 and n_images >= model.batch_size
    # the plan is rate x seconds spread over the epochs
    assert n_images == max(model.batch_size, int(rate * 2 / 4))
    assert not hasattr(model, "module_")  # the estimator itself is left untouched
    with pytest.raises(ValueError, match="seconds must be > 0"):
        images_per_epoch_for_budget(model, digits, labels, seconds=0)


def _shifted(image, dy, dx):
    """``image`` moved down by ``dy`` and right by ``dx`` pixels, zeros coming in."""
    out = np.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@given(st.integers(0, 2**31 - 1))
def test_random_affine_without_rotation_or_zoom_is_an_integer_shift(seed):
    from skseg.segnet import random_affine

    torch.manual_seed(seed)
    images = torch.rand(3, 1, 12, 10)
    labels = (images[:, 0] > 0.5).long()
    moved, moved_labels = random_affine(
        images, labels, rotation=0, scale=0, shift=2.0, ignore_index=7
    )
    for image, label, out, out_label in zip(images, labels, moved, moved_labels):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out.numpy(), _shifted(image.numpy(), dy, dx))
        ]
        assert matches
        dy, dx = matches[0]
        expected = _shifted(label.numpy(), dy, dx)
        outside = _shifted(np.ones_like(label.numpy()), dy, dx) == 0
        expected[outside] = 7
        np.testing.assert_array_equal(out_label.numpy(), expected)


@given(st.integers(0, 2**31 - 1))
def test_random_affine_moves_pixels_and_labels_together(seed):
    from skseg.segnet import random_affine

    torch.manual_seed(seed)
    images = torch.rand(4, 1, 16, 16)
    labels = (images[:, 0] * 3).long()  # a function of the intensity
    moved, moved_labels = random_affine(images, labels, rotation=30, scale=0.3, shift=3)
    inside = moved_labels != 255
    np.testing.assert_array_equal((moved[:, 0] * 3).long()[inside], moved_labels[inside])
    assert (moved[:, 0][~inside] == 0).all()
    # every output pixel is an input pixel of the same image
    for image, out, kept in zip(images, moved, inside):
        assert set(out[0][kept].tolist()) <= set(image.ravel().tolist())


@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.sampled_from([0.0, 0.3, 1.0]))
def test_max_overlay_is_the_brighter_of_each_image_and_another_moved_one(seed, n, shift):
    from skseg.segnet import max_overlay

    torch.manual_seed(seed)
    images = torch.rand(n, 2, 10, 12)
    labels = torch.randint(0, 3, (n, 10, 12))
    labels[:, 0, 0] = 9  # unlabelled pixels never win
    out, out_labels = max_overlay(images, labels, shift=shift, ignore_index=9)
    reach_y, reach_x = int(shift * 10), int(shift * 12)
    for image, label, o, o_label in zip(images, labels, out, out_labels):
        # some image j of the batch, moved by some (dy, dx) within reach, explains it
        found = False
        for j in range(n):
            for dy in range(-reach_y, reach_y + 1):
                for dx in range(-reach_x, reach_x + 1):
                    moved = _shifted(images[j].numpy(), dy, dx)
                    moved_label = _shifted(labels[j].numpy() - 9, dy, dx) + 9  # 9 comes in
                    wins = (moved.mean(0) > image.numpy().mean(0)) & (moved_label != 9)
                    expected = np.where(wins, moved, image.numpy())
                    expected_label = np.where(wins, moved_label, label.numpy())
                    if np.array_equal(o.numpy(), expected) and np.array_equal(
                        o_label.numpy(), expected_label
                    ):
                        found = True
        assert found


def test_augment_affine_leaves_out_the_overlay(small_data, tmp_path):
    X, y = small_data
    params = {**TINY, "max_epochs": 1, "validation_fraction": 0}
    losses = {
        augment: SegNetSegmenter(augment=augment, **params).fit(X, y).history[-1, "train_loss"]
        for augment in (True, "affine", False)
    }
    assert len(set(losses.values())) == 3
    model = SegNetSegmenter(augment="affine", **params).fit(X, y)
    model.save(tmp_path / "model.pt")
    assert SegNetSegmenter.load(tmp_path / "model.pt").augment == "affine"


def test_augment_true_is_an_affine_copy_overlaid_twice(small_data):
    from skseg.segnet import max_overlay, random_affine

    X, y = small_data

    def affine_then_two_overlays(Xb, yb):
        Xb, yb = random_affine(Xb, yb)
        return max_overlay(*max_overlay(Xb, yb))

    params = {**TINY, "max_epochs": 2, "validation_fraction": 0}
    default = SegNetSegmenter(augment=True, **params).fit(X, y)
    spelled_out = SegNetSegmenter(augment=affine_then_two_overlays, **params).fit(X, y)
    assert default.history[:, "train_loss"] == spelled_out.history[:, "train_loss"]


@pytest.mark.parametrize(
    "depth, convs_per_block, expected",
    [(4, None, [1, 2, 2, 2]), (2, None, [1, 2]), (1, None, [1]), (3, 3, [3, 3, 3]),
     (3, (1, 2, 1), [1, 2, 1]), (2, [1, 3], [1, 3])],
)
def test_convs_per_block_builds_that_many_convolutions_per_level(depth, convs_per_block,
                                                                  expected):
    model = SegNetSegmenter(
        width=2, depth=depth, convs_per_block=convs_per_block, image_shape=(1, 16, 16),
        module__n_classes=3,
    ).initialize()
    # levels top first; the decoder has no block at the top with top_block="upsample"
    for blocks in (model.module_.encoders, model.module_.decoders):
        counts = [sum(isinstance(m, torch.nn.Conv2d) for m in block.modules()) for block in blocks]
        assert counts == expected[len(expected) - len(counts) :]


def test_augment_transforms_training_batches_only(small_data):
    X, y = small_data
    seen = []

    def flip(Xb, yb):
        seen.append(tuple(Xb.shape))
        return Xb.flip(-1), yb.flip(-1)

    params = {**TINY, "validation_fraction": 0.25, "max_epochs": 1}
    model = SegNetSegmenter(augment=flip, **params).fit(X, y)
    n_train = len(X) - int(np.ceil(0.25 * len(X)))
    assert sum(shape[0] for shape in seen) == n_train  # the validation images are not seen
    plain = SegNetSegmenter(augment=False, **params).fit(X, y)
    assert model.history[-1, "train_loss"] != plain.history[-1, "train_loss"]
    with pytest.raises(ValueError, match="'augment' parameter"):
        SegNetSegmenter(augment="flip", **params).fit(X, y)


def test_augment_leaves_images_under_16_pixels_alone():
    digits, labels = load_digits_standin()
    X, y = make_multidigit_mnist(32, digits=digits, labels=labels, image_size=28, random_state=0)
    X, y = X[..., :8, :8], y[..., :8, :8]
    params = {**TINY, "max_epochs": 2, "validation_fraction": 0}
    augmented = SegNetSegmenter(augment=True, **params).fit(X, y)
    plain = SegNetSegmenter(augment=False, **params).fit(X, y)
    assert augmented.history[:, "train_loss"] == plain.history[:, "train_loss"]


def test_a_callable_augment_is_not_saved(small_data, tmp_path):
    X, y = small_data
    seg = SegNetSegmenter(augment=lambda Xb, yb: (Xb, yb), max_epochs=1, **TINY).fit(X, y)
    seg.save(tmp_path / "model.pt")
    # like classes, callables are passed to load again
    assert SegNetSegmenter.load(tmp_path / "model.pt").augment is False
    flip = lambda Xb, yb: (Xb.flip(-1), yb.flip(-1))  # noqa: E731
    assert SegNetSegmenter.load(tmp_path / "model.pt", augment=flip).augment is flip


class _FixedScores(torch.nn.Module):
    """Class scores 0 except ``value`` for the second class; one pixel can be NaN."""

    def __init__(self, n_classes, value, nan_pixel=False):
        super().__init__()
        self.n_classes, self.value, self.nan_pixel = n_classes, value, nan_pixel

    def forward(self, x):
        scores = torch.zeros(len(x), self.n_classes, *x.shape[-2:])
        scores[:, 1] = self.value
        if self.nan_pixel:
            scores[-1, 0, -1, -1] = float("nan")
        return scores


def test_predict_names_non_finite_scores_and_keeps_huge_finite_ones(small_data):
    X, y = small_data
    model = SegNetSegmenter(max_epochs=1, **TINY).fit(X[:16], y[:16])
    n = len(model.classes_)
    model.module_ = _FixedScores(n, 3e38)  # finite, but their sum overflows
    assert (model.predict(X[:20]) == model.classes_[1]).all()
    model.module_ = _FixedScores(n, 1.0, nan_pixel=True)
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(X[:20])
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict_proba(X[:20])


# the class weight tests need the weights and the loss, not a trained network
ONE_EPOCH = {**TINY, "max_epochs": 1}


def test_balanced_class_weights_weigh_the_loss(small_data):
    X, y = small_data
    model = SegNetSegmenter(**ONE_EPOCH, class_weight="balanced").fit(X, y)
    # n_pixels / (n_classes * pixels of the class), counted by hand
    counts = np.array([(y == c).sum() for c in model.classes_])
    expected = counts.sum() / (len(counts) * counts)
    np.testing.assert_allclose(model.class_weight_, expected)
    # the loss is torch's class-weighted cross-entropy (a weighted mean over the pixels)
    scores = torch.randn(3, len(counts), 32, 32, generator=torch.Generator().manual_seed(0))
    target = torch.as_tensor(np.searchsorted(model.classes_, y[:3]))
    target[:, :4] = 255
    weight = torch.as_tensor(expected, dtype=torch.float32)
    reference = F.cross_entropy(scores, target, weight=weight, ignore_index=255)
    torch.testing.assert_close(model.criterion_(scores, target), reference)


def test_class_weight_dicts_and_their_errors(small_data):
    X, y = small_data
    model = SegNetSegmenter(**ONE_EPOCH, class_weight={1: 3.0}).fit(X, y)
    np.testing.assert_array_equal(model.class_weight_, [1.0, 3.0, 1.0])  # classes 0, 1, 10
    np.testing.assert_array_equal(model.criterion_.weight, [1.0, 3.0, 1.0])
    assert SegNetSegmenter(**ONE_EPOCH).fit(X, y).class_weight_ is None
    with pytest.raises(ValueError, match=r"labels \[4\] that are not among the classes"):
        SegNetSegmenter(**ONE_EPOCH, class_weight={4: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"classes \[7\] have none in y"):
        balanced = SegNetSegmenter(**ONE_EPOCH, class_weight="balanced")
        balanced.partial_fit(X, y, classes=[0, 1, 7, 10])
    with pytest.raises(ValueError, match="pass one of them"):
        both = SegNetSegmenter(**ONE_EPOCH, class_weight={1: 2.0}, criterion__weight=torch.ones(3))
        both.fit(X, y)


def test_class_weights_are_saved_and_follow_a_warm_start(small_data, tmp_path):
    X, y = small_data
    model = SegNetSegmenter(**ONE_EPOCH, class_weight="balanced", warm_start=True).fit(X, y)
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = SegNetSegmenter.load(path, optimizer=torch.optim.AdamW)
    assert loaded.class_weight == "balanced"
    np.testing.assert_array_equal(loaded.class_weight_, model.class_weight_)
    torch.testing.assert_close(loaded.criterion_.weight, model.criterion_.weight)
    # a second warm fit on other label maps weighs the loss by their pixels
    model.fit(X[:8], y[:8])
    counts = np.array([(y[:8] == c).sum() for c in model.classes_])
    expected = counts.sum() / (len(counts) * counts)
    np.testing.assert_allclose(model.criterion_.weight, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "format_version, convs_per_level", [(2, (1, 1, 2, 2)), (3, (1, 2, 2, 2))]
)
def test_convs_per_block_none_loads_as_the_file_version_meant_it(
    small_data, tmp_path, format_version, convs_per_level
):
    # None meant two convolutions at the two lowest levels up to format version 2, and
    # one at the top level and two below from version 3 on
    X, y = small_data[0][:16], small_data[1][:16]
    params = {**TINY, "depth": 4, "max_epochs": 1, "verbose": 0}
    model = SegNetSegmenter(**{**params, "convs_per_block": convs_per_level}).fit(X, y)
    path = tmp_path / "model.pt"
    model.save(path)
    saved = torch.load(path, weights_only=True)
    assert saved["format_version"] == 3
    saved["params"]["convs_per_block"] = None
    saved["format_version"] = format_version
    torch.save(saved, path)
    loaded = SegNetSegmenter.load(path)
    assert loaded._convs_per_level() == convs_per_level
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_version_1_model_files_still_load():
    # the gallery's model was saved before class weights (format version 1)
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "data", "segnet_mnist.pt")
    assert torch.load(path, weights_only=True)["format_version"] == 1
    model = SegNetSegmenter.load(path)
    assert model.class_weight is None and model.criterion_.weight is None
    assert model.predict(np.zeros((1, 64, 64), np.float32)).shape == (1, 64, 64)
