"""
Semantic segmentation of multi-digit MNIST with SegNet
======================================================

Every 64 x 64 image holds one to three handwritten digits; its label map gives every
pixel the class of the digit whose ink covers it, or 10 (background). This example loads
a :class:`~skseg.SegNetSegmenter` trained by ``skseg train-segnet`` (the project's
recipe, about 10 minutes on 2 CPU cores; ``docs/make_assets.py`` makes the file) and
checks it on images composed from digits it never saw.

The file is read with :meth:`~skseg.SegNetSegmenter.load`, which runs no code from it.
The MNIST files are read from ``$SKSEG_DATA`` (or ``~/skseg_data``); without them,
scikit-learn's 8 x 8 digits stand in, and a warning says so (the model was not trained
on those, so its scores are then much lower).
"""

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skseg import SegNetSegmenter
from skseg.datasets import StandInWarning, load_default_digits, make_multidigit_mnist, split_digits
from skseg.metrics import iou_per_class

model = SegNetSegmenter.load(Path("data") / "segnet_mnist.pt", verbose=0)
print(f"classes: {model.classes_.tolist()}, trained on images {model.image_shape_}")

with warnings.catch_warnings():
    warnings.simplefilter("always", StandInWarning)
    digits, labels = load_default_digits()
# the digits train-segnet held out of training (its default split, seed 0)
_, held_out = split_digits(len(digits), held_out_fraction=1 / 6, random_state=0)
X_test, y_test = make_multidigit_mnist(
    500, digits=digits[held_out], labels=labels[held_out], random_state=1
)

# %%
# Predictions on held-out images: image, true labels, predicted labels.
y_pred = model.predict(X_test)
cmap = plt.get_cmap("tab20", 11)
fig, axes = plt.subplots(3, 4, figsize=(8, 6))
for i in range(4):
    axes[0, i].imshow(X_test[i, 0], cmap="gray")
    axes[1, i].imshow(y_test[i], cmap=cmap, vmin=0, vmax=10)
    axes[2, i].imshow(y_pred[i], cmap=cmap, vmin=0, vmax=10)
for ax, title in zip(axes[:, 0], ["image", "truth", "prediction"]):
    ax.set_ylabel(title)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Per-class IoU over the 500 held-out images (10 is the background).
classes, iou = iou_per_class(y_test, y_pred)
print(f"held-out mean IoU: {np.nanmean(iou):.3f}")
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([str(c) if c < 10 else "bg" for c in classes], iou)
ax.set_xlabel("class")
ax.set_ylabel("IoU")
ax.set_ylim(0, 1)
fig.tight_layout()
plt.show()
