"""
Joint spatial-range mean-shift
==============================

With colour features alone, pixels of one colour form one segment wherever they lie.
``rgb_to_features(image, spatial_scale=s)`` appends each pixel's ``(row, column) * s``
to its CIELAB colour, so that mean-shift groups pixels that are close in colour *and*
in the image (Comaniciu and Meer's joint spatial-range domain). A larger ``s`` splits
segments that are far apart; ``algorithm="grid"`` keeps this fast on 5 features.
"""

import matplotlib.pyplot as plt
from skimage import data, transform

from skseg import MeanShiftSegmenter
from skseg.image import labels_to_image, rgb_to_features, segmentation_overview

image = transform.rescale(data.astronaut(), 0.5, channel_axis=-1, anti_aliasing=True)
fig, axes = plt.subplots(2, 1, figsize=(9, 6))
for ax, scale in zip(axes, [None, 0.2]):
    features = rgb_to_features(image, spatial_scale=scale)
    labels = MeanShiftSegmenter(bandwidth=4.0, algorithm="grid").fit_predict(features)
    n_segments = len(set(labels))
    ax.imshow(segmentation_overview(image, labels_to_image(labels, image.shape)))
    name = "colour only" if scale is None else f"colour and position, spatial_scale={scale}"
    ax.set_title(f"{name}: {n_segments} segments")
    ax.axis("off")
fig.tight_layout()
plt.show()
