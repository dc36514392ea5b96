"""Hostile inputs to SegNetSegmenter: bad parameters, layouts, dtypes and model files
get an error that names the cause; a diverging training stops.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skseg import SegNetSegmenter


@pytest.mark.parametrize("lr", [1e30])
def test_diverging_training_stops_with_an_error_and_no_model(lr):
    rng = np.random.default_rng(0)
    X = rng.random((8, 16, 16))
    y = (X > 0.5).astype(int)
    seg = SegNetSegmenter(width=4, depth=1, lr=lr, max_epochs=2, verbose=0, random_state=0)
    with pytest.raises(FloatingPointError, match="training diverged.*lower lr"):
        seg.fit(X, y)



TINY = dict(width=4, depth=2, max_epochs=1, batch_size=8, verbose=0, random_state=0)


def _images(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, size, size), dtype=np.float32)
    return X, (X > 0.5).astype(int)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"convs_per_block": 0}, "'convs_per_block' parameter .* must be an int in the range"),
        ({"convs_per_block": (1,)}, "'convs_per_block' .* sequence of depth=2 such ints"),
        ({"convs_per_block": "2"}, "'convs_per_block' parameter of SegNetSegmenter must be"),
        ({"weight_decay": -1}, "'weight_decay' parameter .* must be a float in the range"),
        ({"lr": float("nan")}, "'lr' parameter .* must be a float in the range \\(0.0, inf\\)"),
        ({"lr": float("inf")}, "'lr' parameter .* must be a float in the range \\(0.0, inf\\)"),
        ({"class_weight": "even"}, "'class_weight' parameter .* a str among {'balanced'}"),
        ({"callbacks": 3}, "'callbacks' parameter of SegNetSegmenter must be"),
    ],
)
def test_bad_parameters_are_named_before_training(params, message):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = _images()
    with pytest.raises(InvalidParameterError, match=message):
        SegNetSegmenter(**{**TINY, **params}).fit(X, y)


def test_set_params_stores_callbacks_until_fit_checks_them():
    # skorch builds the callbacks in set_params, where a value that is not a list of
    # callbacks failed after the call's other parameters had been set (scikit-learn's
    # check_set_params warned about every parameter); before the first fit it is stored
    import warnings

    from sklearn.utils._param_validation import InvalidParameterError
    from sklearn.utils.estimator_checks import check_set_params
    from skorch.callbacks import Callback

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_set_params("SegNetSegmenter", SegNetSegmenter(**TINY))
    X, y = _images()
    seg = SegNetSegmenter(**TINY).set_params(callbacks=float("inf"), width=3)
    assert (seg.callbacks, seg.width) == (float("inf"), 3)
    with pytest.raises(InvalidParameterError, match="'callbacks' parameter"):
        seg.fit(X, y)

    class Count(Callback):
        def __init__(self, step=1):
            self.step = step

        def initialize(self):
            self.epochs = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs += self.step

    seg.set_params(callbacks=[("count", Count())]).fit(X, y)
    assert dict(seg.callbacks_)["count"].epochs == 1
    # once initialized, skorch's own path: a callback's parameters reach it at once
    seg.set_params(callbacks__count__step=5)
    assert dict(seg.callbacks_)["count"].step == 5


def test_numpy_integers_work_as_parameters():
    # a GridSearchCV grid from np.array([1, 2]) hands numpy integers to the estimator
    X, y = _images()
    params = {**TINY, "convs_per_block": np.int64(2), "width": np.int64(4)}
    assert SegNetSegmenter(**params).fit(X, y).predict(X).shape == (8, 16, 16)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((4, 16, 16, 3)), "looks like channels-last images"),
        (np.zeros((4, 256)), "read as 4 single pixels of 256 channels"),
        (np.full((4, 16, 16), np.nan), "NaN"),
        (np.zeros((0, 16, 16)), "0 sample"),
        (np.full((4, 16, 16), -1e300), r"values up to 1e\+300 .* beyond the float32 range"),
    ],
)
def test_layout_errors_say_what_was_expected(X, message):
    y = np.zeros(X.shape[:1] + X.shape[1:3], dtype=int) if X.ndim > 2 else np.zeros(len(X), int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error alone, no numpy warning before it
        with pytest.raises(ValueError, match=message):
            SegNetSegmenter(**TINY).fit(X, y)


def test_images_of_different_sizes_are_named():
    X, y = np.zeros((8, 16, 16)), np.zeros((8, 16, 16), dtype=int)
    model = SegNetSegmenter(**TINY).fit(X, y)
    message = r"images of different shapes, \(16, 16\) and \(16, 20\)"
    with pytest.raises(ValueError, match=message):
        model.predict([X[0], np.zeros((16, 20)), X[1]])
    with pytest.raises(ValueError, match=message):
        SegNetSegmenter(**TINY).fit([X[0], np.zeros((16, 20))], [y[0], np.zeros((16, 20))])
    assert model.predict([X[0], X[1]]).shape == (2, 16, 16)  # one size in a list is fine


@pytest.mark.parametrize(
    "dtype, scale", [(np.uint8, 255), (np.uint16, 65535), (np.bool_, 1)]
)
def test_integer_and_boolean_images_are_scaled_like_img_as_float(dtype, scale):
    X, y = _images()
    model = SegNetSegmenter(**TINY).fit(X, y)
    as_float = (np.round(X * scale) / scale).astype(np.float32)
    as_int = np.round(X * scale).astype(dtype)
    np.testing.assert_allclose(
        model.predict_proba(as_int), model.predict_proba(as_float), rtol=1e-5, atol=1e-6
    )


def test_8_bit_values_in_a_signed_array_are_named():
    X, y = _images()
    model = SegNetSegmenter(**TINY).fit(X, y)
    with pytest.warns(UserWarning, match="pass X.astype\\(np.uint8\\)"):
        model.predict((X * 255).astype(np.int64))


def test_one_pixel_images_keep_their_shape():
    X, y = np.random.default_rng(0).random((6, 1, 1)), np.array([0, 1] * 3).reshape(6, 1, 1)
    model = SegNetSegmenter(**{**TINY, "depth": 0}).fit(X, y)
    assert model.predict(X).shape == (6, 1, 1)
    assert model.predict(X.reshape(6, 1)).shape == (6,)  # pixel rows stay rows


def test_fit_and_predict_leave_the_callers_torch_generator_alone():
    import torch

    X, y = _images()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = SegNetSegmenter(**TINY).fit(X, y)
    model.predict(X)
    np.testing.assert_array_equal(torch.rand(3), expected)
    # and the seed still makes fits repeatable
    again = SegNetSegmenter(**TINY).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def _saved_model(tmp_path):
    X, y = _images()
    path = tmp_path / "model.pt"
    SegNetSegmenter(**{**TINY, "verbose": 0}).fit(X, y).save(path)
    return path


def _newer(path):
    import torch

    saved = torch.load(path, weights_only=True)
    saved["format_version"] = 99
    torch.save(saved, path)


def _corrupt(path):
    import torch

    saved = torch.load(path, weights_only=True)
    name = next(iter(saved["state_dict"]))
    saved["state_dict"][name] = saved["state_dict"][name] + 1
    torch.save(saved, path)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:200])


def _foreign(path):
    import torch

    torch.save({"weights": torch.zeros(3)}, path)


def _text(path):
    path.write_text("hello, I am not a model\n")


def _code(path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    path.write_bytes(pickle.dumps(Evil()))


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_newer, "format version 99 by a newer skseg"),
        (_corrupt, "corrupted: its weights do not match their checksum"),
        (_truncate, "is not a SegNetSegmenter model file"),
        (_foreign, "is not a SegNetSegmenter model file"),
        (_text, "is not a SegNetSegmenter model file"),
        (_code, "is not a SegNetSegmenter model file"),
    ],
)
def test_load_names_what_is_wrong_with_the_file(spoil, message, tmp_path, capsys):
    path = _saved_model(tmp_path)
    spoil(path)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError, match=message):
        warnings.simplefilter("always")
        SegNetSegmenter.load(path)
    assert "this ran" not in capsys.readouterr().out
    assert not caught, "the error alone should say what is wrong"


def test_saved_files_keep_verbose_and_history(tmp_path):
    path = _saved_model(tmp_path)
    loaded = SegNetSegmenter.load(path)
    assert loaded.verbose == 0
    assert len(loaded.history) == 1 and "train_loss" in loaded.history[-1]


@settings(max_examples=20, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float64, np.float32, np.uint8, np.uint16, np.bool_, np.int32]),
        st.tuples(st.integers(0, 3), st.sampled_from([1, 3, 8, 13]), st.sampled_from([4, 7, 8])),
    )
)
def test_any_image_array_predicts_finite_labels_or_names_the_problem(X):
    model = _fitted()
    try:
        proba = model.predict_proba(X)
    except ValueError as error:
        assert any(
            word in str(error)
            for word in (
                "NaN", "infinity", "0 sample", "cannot be pooled", "too small", "float32 range"
            )
        )
    else:
        assert np.isfinite(proba).all()
        assert model.predict(X).shape == X.shape


_MODEL = []


def _fitted():
    if not _MODEL:
        X, y = _images(size=8)
        _MODEL.append(SegNetSegmenter(**TINY).fit(X, y))
    return _MODEL[0]
