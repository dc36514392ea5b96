import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skorch.callbacks import Callback
from torch import nn

from skseg import SegNetSegmenter
from skseg.datasets import load_digits_standin, make_multidigit_mnist
from skseg.segnet import Muon, SegNetLite, WarmupStableDecayLR, muon_param_groups, orthogonalize


@pytest.mark.parametrize("dtype, atol", [(None, 2e-3), (torch.bfloat16, 0.15)])
@settings(deadline=None, max_examples=40)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_orthogonalize_approximates_the_polar_factor(dtype, atol, rows, cols, seed, scale):
    matrix = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * scale
    result = orthogonalize(matrix, dtype=dtype)
    assert result.shape == (rows, cols) and result.dtype == torch.float32
    result = result.double().numpy()
    # reference: numpy's SVD in float64, matrix = U S V^T; the polar factor is U V^T
    u, s, vt = np.linalg.svd(matrix.double().numpy(), full_matrices=False)
    inner = u.T @ result @ vt.T
    # the same singular vectors (to bfloat16's few per cent): U^T result V is diagonal ...
    np.testing.assert_allclose(inner - np.diag(np.diag(inner)), 0, atol=atol)
    # ... and every singular value not far below the Frobenius norm lands in Muon's band
    # (five steps lift a relative size of 1/500 to about 0.5)
    relative = s / np.linalg.norm(s)
    values = np.diag(inner)
    assert np.all(values > -atol) and np.all(values < 1.3)
    assert np.all(values[relative > 5e-3] > 0.5)


def test_orthogonalize_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.ones(2, 3, 4))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Conv2d(6, 3, 1)
    )


def _train(net, opt, steps=4):
    x = torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        (net(x) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("shape", [(6, 18), (18, 6), (8, 8)])
@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_part_matches_torch_muon_on_matrices(shape, nesterov):
    # torch.optim.Muon is the independent reference for 2-D parameters. Its momentum is
    # an average (ours a sum: a constant factor apart, which the orthogonalisation
    # removes), its lr is the Muon group's lr (ours lr * muon_lr_ratio), and it iterates
    # in bfloat16, so every step must agree in direction and size to bfloat16's
    # precision; a wrong momentum, transpose or scale would not
    lr, ratio, momentum, decay = 1e-2, 8.0, 0.9, 0.05
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    ours, theirs = nn.Parameter(weight.clone()), nn.Parameter(weight.clone())
    opt = Muon(
        [ours], lr=lr, muon_lr_ratio=ratio, momentum=momentum, nesterov=nesterov,
        weight_decay=decay,
    )
    reference = torch.optim.Muon(
        [theirs], lr=lr * ratio, momentum=momentum, nesterov=nesterov, weight_decay=decay
    )
    generator = torch.Generator().manual_seed(6)
    for _ in range(4):
        grad = torch.randn(*shape, generator=generator)
        before = theirs.detach().clone()
        ours.data.copy_(before)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt.step()
        reference.step()
        step, expected = (ours - before).detach().ravel(), (theirs - before).detach().ravel()
        cosine = torch.dot(step, expected) / (step.norm() * expected.norm())
        assert cosine > 0.995
        assert float(step.norm()) == pytest.approx(float(expected.norm()), rel=0.03)


def test_adamw_part_matches_torch_adamw():
    net, reference = _net(), _net()
    kwargs = dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    _train(net, Muon([{"params": net.parameters(), "use_muon": False}], **kwargs))
    _train(reference, torch.optim.AdamW(reference.parameters(), **kwargs))
    for ours, theirs in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def _numpy_newton_schulz(g, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


@settings(deadline=None, max_examples=30)
@given(
    rows=st.integers(1, 48),
    ratio=st.sampled_from([1, 1.4, 1.6, 2, 4.5, 9, 18]),
    tall=st.booleans(),
    decades=st.floats(0, 6),
    seed=st.integers(0, 2**16),
)
def test_orthogonalize_in_float32_follows_the_direct_iteration(rows, ratio, tall, decades, seed):
    # wide weights iterate on their Gram matrix; the result must be the direct
    # iteration's, also for ill-conditioned spectra (singular values over `decades`).
    # Squaring the spectrum costs precision: up to about 2e-3 of the largest entry in
    # float32 (the direct form: 5e-5), still far below bfloat16's few per cent.
    rng = np.random.default_rng(seed)
    cols = max(1, round(rows * ratio))
    u, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, rows)))
    matrix = (u * np.logspace(0, -decades, rows)) @ v.T
    matrix = matrix.T if tall else matrix
    expected = _numpy_newton_schulz(matrix)
    result = orthogonalize(torch.from_numpy(matrix).float()).double().numpy()
    assert result.shape == matrix.shape
    np.testing.assert_allclose(result, expected, atol=4e-3 * np.abs(expected).max())


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_part_matches_a_numpy_reference(nesterov):
    lr, ratio, momentum, decay = 1e-2, 10.0, 0.9, 0.05
    weight = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    param = nn.Parameter(weight.clone())
    opt = Muon(
        [param],
        lr=lr,
        muon_lr_ratio=ratio,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=decay,
    )
    expected, buffer = weight.double().numpy(), np.zeros((6, 18))
    rng = np.random.default_rng(3)
    for _ in range(3):
        grad = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
        param.grad = torch.from_numpy(grad)
        opt.step()
        g = grad.reshape(6, 18).astype(np.float64)
        buffer = momentum * buffer + g
        update = g + momentum * buffer if nesterov else buffer
        step = _numpy_newton_schulz(update).reshape(expected.shape)
        # a wide (6 x 18) weight: no extra scale (sqrt(max(1, 6 / 18)) = 1)
        expected = expected * (1 - lr * ratio * decay) - lr * ratio * step
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_tall_weights_take_a_larger_step():
    # a (12 x 4) weight: the orthogonal direction is scaled by sqrt(12 / 4)
    param = nn.Parameter(torch.zeros(12, 4))
    param.grad = torch.randn(12, 4, generator=torch.Generator().manual_seed(4))
    Muon([param], lr=1.0, muon_lr_ratio=1.0, nesterov=False).step()
    expected = -np.sqrt(3) * _numpy_newton_schulz(param.grad.double().numpy())
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_default_group_uses_muon_for_matrices_only():
    matrix, vector = nn.Parameter(torch.ones(3, 4)), nn.Parameter(torch.ones(4))
    opt = Muon([matrix, vector], lr=1e-2)
    matrix.grad, vector.grad = torch.ones(3, 4), torch.ones(4)
    opt.step()
    assert set(opt.state[matrix]) == {"momentum_buffer"}
    assert set(opt.state[vector]) == {"step", "exp_avg", "exp_avg_sq"}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"ns_steps": 0}, "ns_steps"),
        ({"ns_dtype": torch.int32}, "ns_dtype"),
        ({"ns_dtype": "bfloat16"}, "ns_dtype"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"muon_lr_ratio": -2.0}, "muon_lr_ratio"),
    ],
)
def test_invalid_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Muon([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_muon_param_groups_split_hidden_convolutions_from_the_rest():
    net = SegNetLite(width=8, depth=2)
    muon, other = muon_param_groups(net)
    assert muon["use_muon"] is True and other["use_muon"] is False
    muon_ids = {id(p) for p in muon["params"]}
    # the first convolution (reading the image), the 1x1 convolutions, BatchNorm and
    # biases take AdamW steps
    assert id(net.encoders[0][0].weight) not in muon_ids
    assert id(net.classifier.weight) not in muon_ids and id(net.skip.weight) not in muon_ids
    assert all(p.ndim == 4 and p.shape[-1] == 3 for p in muon["params"])
    assert len(muon["params"]) == 3
    # every parameter exactly once
    everything = [id(p) for p in muon["params"] + other["params"]]
    assert sorted(everything) == sorted(id(p) for p in net.parameters())


def test_segnet_segmenter_trains_with_muon():
    digits, labels = load_digits_standin()
    keep = labels < 2
    X, y = make_multidigit_mnist(
        64, digits=digits[keep], labels=labels[keep], image_size=32, max_digits=1, random_state=0
    )
    seg = SegNetSegmenter(
        width=8,
        depth=2,
        top_block="unpool",  # hidden convolutions at every level
        optimizer=Muon,
        lr=1e-2,
        batch_size=16,
        max_epochs=6,
        validation_fraction=0,
        verbose=0,
        random_state=0,
    ).fit(X, y)
    groups = seg.optimizer_.param_groups
    assert [g["use_muon"] for g in groups] == [True, False]
    assert all(g["weight_decay"] == seg.weight_decay for g in groups)
    loss = seg.history[:, "train_loss"]
    assert loss[-1] < 0.7 * loss[0]
    assert seg.score(X, y) > 0.4  # all background scores about 0.85 / 3
    # the warmup-stable-decay schedule drives both parts: the last of the 24 steps runs at
    # 1 / 7.2 of the peak (a linear decay over the last 30 % of the steps)
    assert all(g["lr"] == pytest.approx(seg.lr / 7.2) for g in groups)
    # the optimizer's state travels with the estimator
    restored = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(restored.predict(X[:4]), seg.predict(X[:4]))
    assert len(restored.optimizer_.state) == len(seg.optimizer_.state)


def test_explicit_param_groups_reach_the_optimizer():
    X = np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    for optimizer in (Muon, torch.optim.AdamW):
        seg = SegNetSegmenter(
            width=4,
            depth=2,
            optimizer=optimizer,
            max_epochs=1,
            verbose=0,
            validation_fraction=0,
            lr_schedule="constant",
            optimizer__param_groups=[("classifier.*", {"lr": 0.5})],
        ).fit(X, y)
        lrs = [g["lr"] for g in seg.optimizer_.param_groups]
        assert lrs == [0.5, seg.lr]  # skorch's pattern groups, the rest after them


@pytest.mark.parametrize(
    "device, mixed_precision, params, expected",
    [
        ("cpu", False, {}, None),
        ("cpu", True, {}, None),  # float32 iterations take less time on CPUs
        ("cpu", True, {"optimizer__ns_dtype": torch.bfloat16}, torch.bfloat16),
        pytest.param("cuda", True, {}, torch.bfloat16, marks=pytest.mark.cuda),
        pytest.param("cuda", False, {}, None, marks=pytest.mark.cuda),
    ],
)
def test_segnet_segmenter_iterates_in_bfloat16_on_cuda_only(
    device, mixed_precision, params, expected
):
    X = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    seg = SegNetSegmenter(
        width=4,
        depth=1,
        top_block="unpool",  # a hidden convolution in the decoder
        optimizer=Muon,
        mixed_precision=mixed_precision,
        device=device,
        max_epochs=1,
        verbose=0,
        validation_fraction=0,
        **params,
    ).fit(X, y)
    assert [g["ns_dtype"] for g in seg.optimizer_.param_groups] == [expected, expected]


def test_bfloat16_iterations_stay_close_to_the_numpy_reference():
    weight = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(5))
    grad = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(6))
    param = nn.Parameter(weight.clone())
    param.grad = grad
    Muon([param], lr=1.0, muon_lr_ratio=1.0, nesterov=False, ns_dtype=torch.bfloat16).step()
    assert param.dtype == torch.float32
    expected = -_numpy_newton_schulz(grad.double().numpy().reshape(16, 72)).reshape(grad.shape)
    step = (param.detach() - weight).double().numpy()
    assert np.linalg.norm(step - expected) < 0.05 * np.linalg.norm(expected)


def _wsd_reference(step, total, warmup, decay, div_factor):
    # the schedule written out piece by piece: linear ramp, plateau, linear decay to 0
    warmup_end, decay_start = warmup * total, total - decay * total
    ramp = 1 / div_factor + (1 - 1 / div_factor) * step / warmup_end if warmup else 1.0
    fall = (total - step) / (decay * total) if decay else 1.0
    if step < warmup_end and step >= decay_start:  # the two overlap on short schedules
        return max(0.0, min(ramp, fall))
    if step < warmup_end:
        return ramp
    if step >= decay_start:
        return max(0.0, fall)
    return 1.0


def _wsd_rates(scheduler, optimizer, steps):
    rates = []
    for _ in range(steps):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return np.array(rates)


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 300),
    warmup=st.floats(0, 0.5),
    decay=st.floats(0, 0.5),
    div_factor=st.floats(1, 100),
)
def test_warmup_stable_decay_follows_its_formula(total, warmup, decay, div_factor):
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0)
    scheduler = WarmupStableDecayLR(
        optimizer, [0.1, 2.0], total, warmup=warmup, decay=decay, div_factor=div_factor
    )
    rates = _wsd_rates(scheduler, optimizer, total)
    expected = [_wsd_reference(s, total, warmup, decay, div_factor) for s in range(total)]
    np.testing.assert_allclose(rates, np.outer(expected, [0.1, 2.0]), rtol=1e-9, atol=1e-12)
    assert (rates >= 0).all() and (rates <= [0.1, 2.0]).all()


def test_warmup_stable_decay_continues_from_any_step():
    def fresh():
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        return optimizer, WarmupStableDecayLR(optimizer, 3e-3, 40)

    optimizer, scheduler = fresh()
    whole = _wsd_rates(scheduler, optimizer, 40)
    optimizer, scheduler = fresh()
    optimizer.step()
    scheduler.last_epoch = 24
    scheduler.step()
    np.testing.assert_allclose(_wsd_rates(scheduler, optimizer, 15), whole[25:])
    # the peak is held until the decay's 12 steps, and the last step is a twelfth of it
    np.testing.assert_allclose(whole[[4, 27], 0], 3e-3)
    np.testing.assert_allclose(whole[-1, 0], 3e-3 / 12)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": 2.5}, "total_steps"),
        ({"warmup": -0.1}, "warmup"),
        ({"decay": 0.95}, "decay"),
        ({"div_factor": 0.5}, "div_factor"),
        ({"max_lr": [1.0, 2.0]}, "max_lr has 2 values for 1 parameter groups"),
    ],
)
def test_warmup_stable_decay_names_invalid_parameters(kwargs, name):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    kwargs = {"max_lr": 1.0, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=name):
        WarmupStableDecayLR(optimizer, **kwargs)


class _RecordGroupRates(Callback):
    def initialize(self):
        self.rates_ = []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.rates_.append([group["lr"] for group in net.optimizer_.param_groups])


@pytest.mark.parametrize("lr_schedule", ["onecycle", "wsd"])
def test_every_parameter_group_keeps_its_own_peak_rate(lr_schedule):
    # a group with its own lr (here the first encoder block at 10x) must peak at that
    # rate under either schedule, not at the net's lr
    digits, labels = load_digits_standin()
    X, y = make_multidigit_mnist(
        32, digits=digits, labels=labels, image_size=32, max_digits=1, random_state=0
    )
    recorder = _RecordGroupRates()
    SegNetSegmenter(
        width=4, depth=2, lr=1e-3, max_epochs=2, batch_size=8, lr_schedule=lr_schedule,
        validation_fraction=0, verbose=0, random_state=0,
        optimizer__param_groups=[("encoders.0.*", {"lr": 1e-2})],
        callbacks=[("record", recorder)],
    ).fit(X, y)
    peaks = np.max(recorder.rates_, axis=0)
    np.testing.assert_allclose(peaks, [1e-2, 1e-3], rtol=0.05)  # sampled after each step


def test_max_time_plans_the_epochs_and_the_schedule_to_the_budget(monkeypatch):
    # far more epochs than fit in the budget: training must stop early, with the
    # warmup-stable-decay schedule decayed to the end. A clock that advances 10 ms at
    # every reading makes the budget independent of the machine's speed.
    import itertools
    import types

    import skseg.segnet._callbacks

    readings = itertools.count()
    clock = types.SimpleNamespace(perf_counter=lambda: next(readings) * 0.01)
    monkeypatch.setattr(skseg.segnet._callbacks, "time", clock)
    digits, labels = load_digits_standin()
    X, y = make_multidigit_mnist(
        32, digits=digits, labels=labels, image_size=32, max_digits=1, random_state=0
    )
    recorder = _RecordGroupRates()
    model = SegNetSegmenter(
        width=4, depth=2, lr=1e-2, max_epochs=500, max_time=2.0, batch_size=8,
        lr_schedule="wsd", validation_fraction=0, verbose=0, random_state=0,
        callbacks=[("record", recorder)],
    ).fit(X, y)
    epochs = len(model.history)
    assert 2 <= epochs < 500
    rates = np.array(recorder.rates_)[:, 0]
    assert rates.max() == pytest.approx(1e-2, rel=0.05)  # the peak was reached
    assert rates[-1] < 0.2 * 1e-2  # and the schedule decayed by the last step
