"""SegNet benchmark: training and inference throughput, and held-out mIoU over time.

Part 1 times training steps and inference of SegNetLite (width 32, depth 4, 64 x 64
images, batch 32) with SegNet's top decoder block and with upsampled class scores
(``top_block``), in float32 and bf16 autocast, with and without channels-last, on the
CPU and, when torch sees one, on the CUDA GPU; ``SegNetSegmenter.predict`` beside its
bare module under ``torch.inference_mode`` (same batch and precision); then the
optimizer steps of AdamW and
Muon (its Newton-Schulz iterations in float32 and in bfloat16) against the forward and
backward pass of a batch of 16 (float32, channels-last).
Part 2 runs the ``skseg train-segnet`` recipe as the command does (epochs sized by time),
keeps the weights of every epoch, and afterwards scores each on images composed from
held-out digits, against the images and training time so far.
Part 3 (``--fixed-set``) fits ``SegNetSegmenter(random_state=0)`` with its defaults
(three levels, one convolution at the top level and two below, 16 epochs, every
training image trained on), with 12 epochs, with a tenth of the images held out for
validation, and with a fourth level at 12 epochs; then, with four levels, 12 epochs and
a tenth held out, with two convolutions at every level and with one per block: with all
of the training augmentation, with its affine part only and without it. All fit one
fixed set of 6,400 course-style images (every pixel with ink labelled,
``ink_threshold=1``) and score 1,000 images composed from held-out digits; for the
defaults it also scores the prediction with 7 test-time shifts and counts the held-out
digits read right, apart from and touching others.
Part 4 (``--five-minutes``) fits the same set with settings whose fit ends in about five
minutes on 2 cores of a CPU without native bfloat16 (``max_time=290``, ``width=16``,
``width=24, max_epochs=10``), beside the defaults.

Usage::

    python benchmarks/segnet.py --data-home ../shared/data/mnist   # about 20 minutes
    python benchmarks/segnet.py --throughput-only
    python benchmarks/segnet.py --data-home ../shared/data/mnist --fixed-set  # 1 hour
    python benchmarks/segnet.py --data-home ../shared/data/mnist --five-minutes  # 35 min
"""

import argparse
import time

import numpy as np
import torch
from _machine import cpu_name
from skorch.callbacks import Callback

from skseg._device import has_fast_bfloat16
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


def fit_table(runs, X, y, X_val, y_val):
    """Fit ``SegNetSegmenter(random_state=0, **params)`` for every run, print a table row
    each, and return the fitted models."""
    native = "native" if has_fast_bfloat16("cpu") else "emulated"
    print(
        f"\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"bfloat16 {native}\n"
    )
    print("| SegNetSegmenter(random_state=0, ...) | fit (s) | epochs | validation mIoU |")
    print("|---|---|---|---|")
    models = []
    for label, params in runs:
        start = time.perf_counter()
        model = SegNetSegmenter(random_state=0, verbose=0, **params).fit(X, y)
        seconds = time.perf_counter() - start
        score = mean_iou(y_val, model.predict(X_val))
        print(f"| {label} | {seconds:.0f} | {len(model.history)} | {score:.3f} |", flush=True)
        models.append(model)
    return models


def five_minute_fits(data_home):
    """Settings whose fit ends in about five minutes on 2 cores without native bfloat16,
    beside the defaults."""
    X, y, X_val, y_val, _ = course_sets(data_home)
    runs = [
        ("defaults", {}),
        ("max_time=290", {"max_time": 290}),
        ("width=16", {"width": 16}),
        ("width=24, max_epochs=10", {"width": 24, "max_epochs": 10}),
    ]
    fit_table(runs, X, y, X_val, y_val)


def fixed_set(data_home):
    """SegNetSegmenter's defaults, then other convolutions and augmentations, on one set."""
    X, y, X_val, y_val, instances = course_sets(data_home)
    deeper = {"depth": 4, "max_epochs": 12}
    held_out = {**deeper, "validation_fraction": 0.1}
    one = {**held_out, "convs_per_block": 1}
    runs = [
        ("defaults", {}),
        ("max_epochs=12", {"max_epochs": 12}),
        ("validation_fraction=0.1", {"validation_fraction": 0.1}),
        ("depth=4, max_epochs=12", deeper),
        ("depth=4, max_epochs=12, validation_fraction=0.1", held_out),
        ("the same, convs_per_block=2", {**held_out, "convs_per_block": 2}),
        ("the same, convs_per_block=1", one),
        ('the same, convs_per_block=1, augment="affine"', {**one, "augment": "affine"}),
        ("the same, convs_per_block=1, augment=False", {**one, "augment": False}),
    ]
    defaults = fit_table(runs, X, y, X_val, y_val)[0]
    rows = digits_read(y_val, defaults.predict(X_val), instances)
    shifted = defaults.set_params(test_time_shifts=7).predict(X_val)
    print(f"\nDefaults with test_time_shifts=7: validation mIoU {mean_iou(y_val, shifted):.3f}")
    errors = sum(row[2] for row in rows.values())
    print(
        "\n| held-out digits, defaults | digits | read right | pixels wrong "
        "| share of all wrong pixels |"
    )
    print("|---|---|---|---|---|")
    for name, (n_digits, right, wrong, pixels) in rows.items():
        print(
            f"| {name} | {n_digits} | {100 * right / n_digits:.1f} % | "
            f"{100 * wrong / pixels:.1f} % | {100 * wrong / errors:.0f} % |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--fixed-set", action="store_true", help="part 3 only")
    parser.add_argument("--five-minutes", action="store_true", help="part 4 only")
    args = parser.parse_args()
    if args.fixed_set:
        fixed_set(args.data_home)
        return
    if args.five_minutes:
        five_minute_fits(args.data_home)
        return

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if device == "cpu":
            name = f"CPU, {torch.get_num_threads()} threads"
        else:
            name = torch.cuda.get_device_name()
        native = "native" if has_fast_bfloat16(device) else "emulated"
        print(f"{name}, torch {torch.__version__}, bfloat16 {native}\n")
        print("| top block | memory format | precision | training (img/s) | inference (img/s) |")
        print("|---|---|---|---|---|")
        for top_block in ("unpool", "upsample"):
            for channels_last in (False, True):
                for bf16 in (False, True):
                    train_rate, infer_rate = throughput(channels_last, bf16, top_block, device)
                    print(
                        f"| {top_block} | {'channels-last' if channels_last else 'contiguous'} "
                        f"| {'bf16 autocast' if bf16 else 'float32'} | {train_rate:.0f} | "
                        f"{infer_rate:.0f} |",
                        flush=True,
                    )
        print()
        estimator, bare = predict_against_bare_module(device)
        print("| predict, batch 32 | images/s |")
        print("|---|---|")
        print(f"| SegNetSegmenter.predict | {estimator:.0f} |")
        print(f"| bare module, torch.inference_mode | {bare:.0f} |", flush=True)
        print()
        print("| optimizer | forward + backward, batch 16 (ms) | optimizer step (ms) |")
        print("|---|---|---|")
        for label, make_optimizer in OPTIMIZERS.items():
            passes, step = optimizer_step_times(make_optimizer, device)
            print(f"| {label} | {passes:.0f} | {step:.1f} |", flush=True)
        print()
    if args.throughput_only:
        return

    # the run of ``skseg train-segnet`` with its defaults, epochs sized as it trains
    start = time.perf_counter()
    digits, labels, X_test, y_test = recipe_data(args.data_home)
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
    model.module_.load_state_dict(snapshots.weights_[-1])
    sizes = model.history[:, "n_images"]
    print(
        f"\nrecipe: {RECIPE['epochs']} epochs, {sum(sizes)} fresh images in all (--n-train "
        f"{','.join(map(str, sizes))}), {len(X_test)} images of held-out digits; whole "
        f"run {whole_run:.0f} s (budget {RECIPE['time_budget']:.0f} s)\n"
    )
    print("| epoch | images so far | training time (s) | held-out mIoU |")
    print("|---|---|---|---|")
    for epoch, score in enumerate(scores):
        images = sum(sizes[: epoch + 1])
        seconds_so_far = sum(model.history[: epoch + 1, "dur"])
        print(f"| {epoch + 1} | {images} | {seconds_so_far:.0f} | {score:.4f} |")


if __name__ == "__main__":
    main()
