"""
Segmenting a photo with mean-shift
==================================

Exact Gaussian blurring mean-shift on the CIELAB colours of scikit-image's whole
``coffee`` photo (400 x 600 pixels) with the reference settings (bandwidth 2.5, 20
steps), then :func:`~skseg.image.merge_small_regions` to fold specks of fewer than 64
pixels into their neighbours. The picture shows the original, every segment in its mean
colour, and the segment boundaries.
"""

import time

import matplotlib.pyplot as plt
from skimage import data

from skseg import MeanShiftSegmenter
from skseg.image import (
    labels_to_image,
    merge_small_regions,
    rgb_to_features,
    segmentation_overview,
)

image = data.coffee()
features = rgb_to_features(image)
print(f"{features.shape[0]} pixels, {features.shape[1]} features (L*, a*, b*)")

segmenter = MeanShiftSegmenter(bandwidth=2.5, max_iter=20)
start = time.perf_counter()
labels = segmenter.fit_predict(features)
print(f"{len(segmenter.cluster_centers_)} segments in {time.perf_counter() - start:.1f} s")

label_map = merge_small_regions(labels_to_image(labels, image.shape), min_size=64)
fig, ax = plt.subplots(figsize=(9, 2.2))
ax.imshow(segmentation_overview(image, label_map))
ax.set_title("original  |  segments in mean colour  |  boundaries")
ax.axis("off")
plt.show()
