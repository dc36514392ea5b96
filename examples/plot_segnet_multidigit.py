"""
Semantic segmentation of multi-digit MNIST with SegNet
======================================================

Compose 64 x 64 images of one to three handwritten digits with a per-pixel label map
(the digit's class where its ink is at least 0.5, background elsewhere), train a small
:class:`~skseg.SegNetSegmenter` for a few epochs and look at its predictions on images
composed from digits it never saw.

The MNIST files are read from ``$SKSEG_DATA`` (or ``~/skseg_data``); without them,
scikit-learn's 8 x 8 digits stand in, and a warning says so.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from skseg import SegNetSegmenter
from skseg.datasets import StandInWarning, load_default_digits, make_multidigit_mnist
from skseg.metrics import iou_per_class

with warnings.catch_warnings():
    warnings.simplefilter("always", StandInWarning)
    digits, labels = load_default_digits()
held_out = np.arange(len(digits)) % 6 == 0  # every sixth digit is kept for testing
X, y = make_multidigit_mnist(
    2000, digits=digits[~held_out], labels=labels[~held_out], random_state=0
)
X_test, y_test = make_multidigit_mnist(
    300, digits=digits[held_out], labels=labels[held_out], random_state=1
)

model = SegNetSegmenter(
    width=16, max_epochs=3, lr=5e-3, mixed_precision="auto", random_state=0, verbose=1
)
model.fit(X, y)

# %%
# Predictions on held-out images: image, true labels, predicted labels.
y_pred = model.predict(X_test[:4])
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
# Per-class IoU over the held-out set (10 is the background).
classes, iou = iou_per_class(y_test, model.predict(X_test))
print(f"held-out mean IoU: {np.nanmean(iou):.3f}")
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([str(c) for c in classes], iou)
ax.set_xlabel("class")
ax.set_ylabel("IoU")
ax.set_ylim(0, 1)
fig.tight_layout()
plt.show()
