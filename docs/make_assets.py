"""Regenerate the pictures of the README and the SegNet model of the example gallery.

Writes, from the repository root:

- ``docs/_static/readme_meanshift.png``: ``skseg segment`` on half of scikit-image's
  ``coffee`` photo (original | segments in mean colour | boundaries);
- ``examples/data/segnet_mnist.pt``: ``skseg train-segnet``'s recipe trained on the MNIST
  training digits (about 10 minutes on 2 CPU cores), its weights stored in bfloat16 (half
  the size of float32) and its history without the per-batch records;
- ``docs/_static/readme_segnet.png``: that model on held-out compositions (image | truth |
  prediction).

Usage::

    python docs/make_assets.py --data-home ../shared/data/mnist
    python docs/make_assets.py --skip-training   # the pictures only
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "docs" / "_static"
MODEL = ROOT / "examples" / "data" / "segnet_mnist.pt"


def meanshift_panel():
    from skseg.cli import main

    main(["segment", "--scale", "0.5", "--quiet", "-o", str(STATIC / "readme_meanshift.png")])


def train_model(data_home):
    from skseg.cli import main

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "segnet.pt"
        status = main(["train-segnet", "--data-home", data_home, "-o", str(path), "--quiet"])
        if status:
            raise SystemExit(status)
        save_gallery_model(path)


def save_gallery_model(path):
    """The model file at ``path`` as the gallery's: weights in bfloat16, epochs' history
    without the per-batch records (a third of the file, which the gallery does not use)."""
    import torch

    from skseg import SegNetSegmenter

    model = SegNetSegmenter.load(path)
    for epoch in model.history:
        epoch["batches"] = []
    MODEL.parent.mkdir(exist_ok=True)
    model.save(MODEL, weights_dtype=torch.bfloat16)


def segnet_panel(data_home):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skseg import SegNetSegmenter
    from skseg.datasets import load_mnist, make_multidigit_mnist, split_digits

    digits, labels = load_mnist(data_home)
    _, held = split_digits(len(digits), held_out_fraction=1 / 6, random_state=0)
    X, y = make_multidigit_mnist(4, digits=digits[held], labels=labels[held], random_state=7)
    y_pred = SegNetSegmenter.load(MODEL, verbose=0).predict(X)
    cmap = plt.get_cmap("tab20", 11)
    fig, axes = plt.subplots(3, 4, figsize=(6, 4.5))
    for i in range(4):
        axes[0, i].imshow(X[i, 0], cmap="gray")
        axes[1, i].imshow(np.asarray(y[i]), cmap=cmap, vmin=0, vmax=10)
        axes[2, i].imshow(y_pred[i], cmap=cmap, vmin=0, vmax=10)
    for ax, title in zip(axes[:, 0], ["image", "truth", "prediction"]):
        ax.set_ylabel(title)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(STATIC / "readme_segnet.png", dpi=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-home", default="../shared/data/mnist", help="MNIST IDX files")
    parser.add_argument("--skip-training", action="store_true", help="keep the model file")
    args = parser.parse_args()
    STATIC.mkdir(exist_ok=True)
    meanshift_panel()
    if not args.skip_training:
        train_model(args.data_home)
    segnet_panel(args.data_home)


if __name__ == "__main__":
    main()
