"""
Segmenting one object: a mask as sample weights
===============================================

Mean-shift lets every pixel pull on every other, so a large background shapes the
segments of a small object too. ``fit(X, sample_weight=mask)`` gives the pixels outside
the mask weight 0: they take no part in the mean-shift, as if they had been cut out,
and are then labelled with their nearest segment centre, like ``predict`` would label
them. Here only the cup of the ``coffee`` photo is segmented.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import color, data, draw, transform

from skseg import MeanShiftSegmenter
from skseg.image import labels_to_image, rgb_to_features

image = transform.rescale(data.coffee(), 0.5, channel_axis=-1, anti_aliasing=True)
mask = np.zeros(image.shape[:2], dtype=bool)
mask[draw.ellipse(62, 140, 55, 75, shape=mask.shape)] = True  # the cup

features = rgb_to_features(image)
whole = MeanShiftSegmenter().fit(features)
masked = MeanShiftSegmenter().fit(features, sample_weight=mask.ravel())

fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
axes[0].imshow(image)
axes[0].contour(mask, [0.5], colors="yellow")
axes[0].set_title("photo\nand mask")
for ax, model, name in zip(axes[1:], [whole, masked], ["whole photo", "mask only"]):
    label_map = labels_to_image(model.labels_, image.shape)
    mean_colours = color.label2rgb(label_map, image, kind="avg", bg_label=-1)
    mean_colours[~mask] = 0.5  # grey outside the cup
    ax.imshow(mean_colours)
    ax.set_title(f"{name}\n{len(np.unique(label_map[mask]))} segments in the mask")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()
