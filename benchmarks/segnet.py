"""SegNet benchmark: throughput, the fixed-set fits and the command's recipe, in one run.

Part 1 times training steps and inference of SegNetLite (width 32, depth 4, 64 x 64
images, batch 32) with SegNet's top decoder block and with upsampled class scores
(``top_block``), in float32 and bf16 autocast, with and without channels-last, on the
CPU and, when torch sees one, on the CUDA GPU; ``SegNetSegmenter.predict`` beside its
bare module under ``torch.inference_mode`` (same batch and precision); then the
optimizer steps of AdamW and Muon (its Newton-Schulz iterations in float32 and in
bfloat16) against the forward and backward pass of a batch of 16 (float32,
channels-last).

Part 2 (needs the MNIST files) fits ``SegNetSegmenter(random_state=0)`` with its
defaults and with settings that fit in less time (:data:`FIXED_SET_RUNS`) on one fixed
set of 6,400 course-style images (every pixel with ink labelled, ``ink_threshold=1``)
and scores 1,000 images composed from held-out digits; for the defaults it also scores
the prediction with 7 test-time shifts and counts the held-out digits read right, apart
from and touching others.

Part 3 (needs the MNIST files) runs the ``skseg train-segnet`` recipe as the command
does (epochs sized by time), keeps the weights of every epoch, and afterwards scores
each on images composed from held-out digits, against the images and training time so
far.

Every part writes its tables to ``docs/generated_benchmarks/segnet_*.rst`` (the files
the docs' benchmarks page includes, each table headed by the machine that measured it)
and prints them.

Usage::

    python benchmarks/segnet.py --data-home ../shared/data/mnist  # 80 min on 2 AVX2 cores
    python benchmarks/segnet.py --throughput-only                 # part 1, 5 minutes
    python benchmarks/segnet.py --data-home ../shared/data/mnist --fixed-set  # part 2
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _report import TABLES, cpu_line, write_tables
from skorch.callbacks import Callback

from skseg._device import has_fast_bfloat16
from skseg.datasets import StandInWarning
from skseg.metrics import mean_iou
from skseg.segnet import (
    RECIPE,
    CrossEntropy2D,
    Muon,
    SegNetLite,
    SegNetSegmenter,
    fit_recipe,
    muon_param_groups,
    plan_training,
    recipe_data,
    recipe_model,
)


def _network_and_batch(device, batch, channels_last, top_block="upsample"):
    """SegNetLite of the recipe, a random batch of 64 x 64 images and labels, and a sync."""
    torch.manual_seed(0)
    net = SegNetLite(top_block=top_block).to(device)
    x = torch.rand(batch, 1, 64, 64, device=device)
    y = torch.randint(0, 11, (batch, 64, 64), device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    # GPU work is queued: wait for it before reading the clock
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return net, x, y, sync


def throughput(channels_last, bf16, top_block, device="cpu", seconds=8.0, batch=32):
    net, x, y, sync = _network_and_batch(device, batch, channels_last, top_block)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    loss_fn = CrossEntropy2D()

    def step():
        opt.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss_fn(out, y).backward()
        opt.step()

    def rate(work, seconds):
        for _ in range(3):
            work()
        sync()
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            work()
            images += batch
            if images % (20 * batch) == 0:
                sync()  # keep the queue short, so the loop stops near `seconds`
        sync()
        return images / (time.perf_counter() - start)

    train_rate = rate(step, seconds)
    net.eval()
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        infer_rate = rate(lambda: net(x), seconds / 2)
    return train_rate, infer_rate


def optimizer_step_times(make_optimizer, device="cpu", batch=16, repeats=20):
    """Milliseconds of one forward + backward pass and of one optimizer step."""
    net, x, y, sync = _network_and_batch(device, batch, channels_last=True)
    opt = make_optimizer(net)
    loss_fn = CrossEntropy2D()

    def forward_backward():
        opt.zero_grad()
        loss_fn(net(x), y).backward()

    def timed(work):
        for _ in range(3):
            work()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        sync()
        return 1000 * (time.perf_counter() - start) / repeats

    return timed(forward_backward), timed(opt.step)


def predict_against_bare_module(device="cpu", batch=32, n_images=2048, repeats=3):
    """Images per second of ``SegNetSegmenter.predict`` and of its bare module.

    Both at the same batch size and precision (bfloat16 where native, as
    ``mixed_precision="auto"`` chooses), channels-last, no test-time shifts; the bare
    module runs under ``torch.inference_mode`` and takes the argmax over the classes.
    """
    import numpy as np

    from skseg import SegNetSegmenter

    rng = np.random.default_rng(0)
    X = rng.random((n_images, 1, 64, 64), dtype=np.float32)
    y = rng.integers(0, 11, size=(64, 64, 64))
    model = SegNetSegmenter(
        top_block="upsample", mixed_precision="auto", batch_size=batch, max_epochs=1,
        validation_fraction=0, verbose=0, random_state=0, device=device,
    ).fit(X[:64], y)
    net = model.module_.eval()
    bf16 = model._bf16(torch.device(device))
    images = torch.from_numpy(X).to(device).contiguous(memory_format=torch.channels_last)

    def bare():
        with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bf16):
            for start in range(0, n_images, batch):
                net(images[start : start + batch]).movedim(1, -1).argmax(-1).cpu()

    rates = []
    for work in (lambda: model.predict(X), bare):
        work()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        rates.append(repeats * n_images / (time.perf_counter() - start))
    return rates


OPTIMIZERS = {
    "AdamW": lambda net: torch.optim.AdamW(net.parameters(), 5e-3, weight_decay=1e-4),
    "Muon + AdamW": lambda net: Muon(muon_param_groups(net), 5e-3, weight_decay=1e-4),
    "Muon + AdamW, bfloat16 Newton-Schulz": lambda net: Muon(
        muon_param_groups(net), 5e-3, weight_decay=1e-4, ns_dtype=torch.bfloat16
    ),
}


class EpochSnapshots(Callback):
    """Keep a copy of the network's weights after every epoch, to be scored afterwards.

    Scoring during training would count as training time where the recipe sizes its
    epochs by the rate it measures; copying the weights takes milliseconds.
    """

    def initialize(self):
        self.weights_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.weights_.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})


def digits_read(y_true, y_pred, instances):
    """Digits, digits read right and their pixels' errors, apart from and touching others.

    A digit is read right when most of its labelled pixels get its class; it touches
    another when one of its pixels is next to (8 neighbours) one of the other's.
    """
    from scipy import ndimage

    rows = {"apart from the others": [0, 0, 0, 0], "touching another": [0, 0, 0, 0]}
    for truth, pred, inst in zip(y_true, y_pred, instances):
        for digit in range(1, inst.max() + 1):
            pixels = inst == digit
            size = int(pixels.sum())
            if not size:  # hidden by brighter ink everywhere
                continue
            near = ndimage.binary_dilation(pixels, structure=np.ones((3, 3), bool))
            touching = bool((near & (inst != 0) & ~pixels).any())
            wrong = int((pred[pixels] != truth[pixels]).sum())
            row = rows["touching another" if touching else "apart from the others"]
            row[0] += 1
            row[1] += int(wrong < size / 2)
            row[2] += wrong
            row[3] += size
    return rows


def percent(part, whole, digits=1):
    """``part`` as a percentage of ``whole``, or "-" where there is no whole (no digits of a
    kind, or a model without errors)."""
    return f"{100 * part / whole:.{digits}f} %" if whole else "-"


def course_sets(data_home):
    """6,400 course-style training images, and 1,000 of held-out digits with instances."""
    from skseg.datasets import load_default_digits, make_multidigit_mnist, split_digits

    digits, labels = load_default_digits(data_home)
    train, held = split_digits(len(digits), random_state=0)
    course = dict(ink_threshold=1, max_digits=3)
    X, y = make_multidigit_mnist(
        6400, digits=digits[train], labels=labels[train], random_state=0, **course
    )
    X_val, y_val, instances = make_multidigit_mnist(
        1000, digits=digits[held], labels=labels[held], random_state=1, return_instances=True,
        **course,
    )
    return X, y, X_val, y_val, instances


#: the fixed-set fits of part 2: the defaults, fewer epochs, a time budget and narrower
#: networks (the choices for a CPU that trains in float32)
FIXED_SET_RUNS = [
    ("defaults", {}),
    ("``max_epochs=12``", {"max_epochs": 12}),
    ("``max_time=290``", {"max_time": 290}),
    ("``width=16``", {"width": 16}),
    ("``width=24, max_epochs=10``", {"width": 24, "max_epochs": 10}),
]


def machine_line(device="cpu"):
    """The device, the torch version and whether bfloat16 is native, above every table."""
    if device == "cpu":
        name = cpu_line()
    else:
        name = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    native = "native" if has_fast_bfloat16(device) else "emulated"
    return f"{name}, bfloat16 {native}"


def fixed_set(data_home):
    """Part 2: the defaults and :data:`FIXED_SET_RUNS` on one fixed set of images."""
    X, y, X_val, y_val, instances = course_sets(data_home)
    machine = machine_line()
    rows = []
    for label, params in FIXED_SET_RUNS:
        start = time.perf_counter()
        model = SegNetSegmenter(random_state=0, verbose=0, **params).fit(X, y)
        seconds = time.perf_counter() - start
        score = mean_iou(y_val, model.predict(X_val))
        rows.append([label, f"{seconds:.0f}", len(model.history), f"{score:.3f}"])
        print(" | ".join(map(str, rows[-1])), flush=True)
        if not params:
            defaults = model
    digits = digits_read(y_val, defaults.predict(X_val), instances)
    shifted = mean_iou(y_val, defaults.set_params(test_time_shifts=7).predict(X_val))
    rows.append(["defaults, predicting with ``test_time_shifts=7``", "-", "-", f"{shifted:.3f}"])
    where = (
        "``SegNetSegmenter(random_state=0, ...)`` fitted on 6,400 course-style images, "
        "scored on 1,000 images of held-out digits"
    )
    columns = ["setting", "fit (s)", "epochs", "validation mean IoU"]
    write_tables(TABLES / "segnet_fixed_set.rst", (f"{machine}; {where}:", columns, rows))
    errors = sum(row[2] for row in digits.values())
    rows = [
        [
            name,
            f"{n_digits:,}",
            percent(right, n_digits),
            percent(wrong, pixels),
            percent(wrong, errors, digits=0),
        ]
        for name, (n_digits, right, wrong, pixels) in digits.items()
    ]
    columns = [
        "held-out digits", "digits", "read right", "pixels wrong", "share of all wrong pixels"
    ]
    text = f"{machine}; the defaults' model of the table above:"
    write_tables(TABLES / "segnet_digits.rst", (text, columns, rows))


def throughput_tables(devices):
    """Part 1: training and inference rates, predict against the bare module, optimizers."""
    rates, predict, optimizers = [], [], []
    for device in devices:
        heading = f"{machine_line(device)}:"
        rows = []
        for top_block in ("unpool", "upsample"):
            for channels_last in (False, True):
                for bf16 in (False, True):
                    train_rate, infer_rate = throughput(channels_last, bf16, top_block, device)
                    rows.append(
                        [
                            top_block,
                            "channels-last" if channels_last else "contiguous",
                            "bf16 autocast" if bf16 else "float32",
                            f"{train_rate:.0f}",
                            f"{infer_rate:.0f}",
                        ]
                    )
                    print(" | ".join(rows[-1]), flush=True)
        columns = [
            "top block", "memory format", "precision", "training (img/s)", "inference (img/s)"
        ]
        rates.append((heading, columns, rows))
        estimator, bare = predict_against_bare_module(device)
        rows = [
            ["``SegNetSegmenter.predict``", f"{estimator:.0f}"],
            ["bare module, ``torch.inference_mode``", f"{bare:.0f}"],
        ]
        predict.append((heading, ["predict, batch 32", "images/s"], rows))
        rows = []
        for label, make_optimizer in OPTIMIZERS.items():
            passes, step = optimizer_step_times(make_optimizer, device)
            rows.append([label, f"{passes:.0f}", f"{step:.1f}"])
        columns = ["optimizer", "forward + backward, batch 16 (ms)", "optimizer step (ms)"]
        optimizers.append((heading, columns, rows))
    write_tables(TABLES / "segnet_throughput.rst", *rates)
    write_tables(TABLES / "segnet_predict.rst", *predict)
    write_tables(TABLES / "segnet_optimizers.rst", *optimizers)


def recipe_run(data_home):
    """Part 3: the ``skseg train-segnet`` recipe, every epoch's weights scored afterwards."""
    start = time.perf_counter()
    digits, labels, X_test, y_test = recipe_data(data_home)
    snapshots = EpochSnapshots()
    model = recipe_model(verbose=0, callbacks=[("snapshots", snapshots)])
    n_train, seconds = plan_training(model, digits, labels, X_test, y_test, start=start)
    fit_recipe(model, digits, labels, n_train=n_train, seconds=seconds)
    final = mean_iou(y_test, model.predict(X_test))  # the trained network: its last epoch
    whole_run = time.perf_counter() - start
    scores = []
    for weights in snapshots.weights_[:-1]:
        model.module_.load_state_dict(weights)
        scores.append(mean_iou(y_test, model.predict(X_test)))
    scores.append(final)
    sizes = model.history[:, "n_images"]
    rows = [
        [
            epoch + 1,
            f"{sum(sizes[: epoch + 1]):,}",
            f"{sum(model.history[: epoch + 1, 'dur']):.0f}",
            f"{score:.3f}",
        ]
        for epoch, score in enumerate(scores)
    ]
    text = (
        f"{machine_line()}; ``skseg train-segnet`` with its defaults: {len(sizes)} epochs of "
        f"fresh compositions, ``--n-train {','.join(map(str, sizes))}``, scored on "
        f"{len(X_test):,} images of held-out digits; whole run {whole_run:.0f} s (budget "
        f"{RECIPE['time_budget']:.0f} s):"
    )
    columns = ["epoch", "images so far", "training time (s)", "held-out mean IoU"]
    write_tables(TABLES / "segnet_recipe.rst", (text, columns, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-home", default=None, help="where the MNIST IDX files are")
    parser.add_argument("--throughput-only", action="store_true", help="part 1 only")
    parser.add_argument("--fixed-set", action="store_true", help="part 2 only")
    args = parser.parse_args()
    if not args.fixed_set:
        throughput_tables(["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if args.throughput_only:
        return
    # the 8 x 8 stand-in digits would write meaningless scores into the docs
    warnings.simplefilter("error", StandInWarning)
    try:
        fixed_set(args.data_home)
        if not args.fixed_set:
            recipe_run(args.data_home)
    except StandInWarning as warning:
        message = f"parts 2 and 3 need the MNIST files (--data-home): {warning}"
        raise SystemExit(message) from None


if __name__ == "__main__":
    main()
