"""
Segmenting a photo with mean-shift
==================================

Gaussian blurring mean-shift on the CIELAB colours of scikit-image's ``coffee`` photo,
with the reference settings (bandwidth 2.5, 20 steps). The picture shows the original,
every segment in its mean colour, and the segment boundaries.
"""

import time

import matplotlib.pyplot as plt
from skimage import data, transform

from skseg import MeanShiftSegmenter
from skseg.image import labels_to_image, rgb_to_features, segmentation_overview

image = transform.rescale(data.coffee(), 0.25, channel_axis=-1, anti_aliasing=True)
features = rgb_to_features(image)
print(f"{features.shape[0]} pixels, {features.shape[1]} features (L*, a*, b*)")

segmenter = MeanShiftSegmenter(bandwidth=2.5, max_iter=20)
start = time.perf_counter()
labels = segmenter.fit_predict(features)
print(f"{len(segmenter.cluster_centers_)} segments in {time.perf_counter() - start:.2f} s")

panel = segmentation_overview(image, labels_to_image(labels, image.shape))
fig, ax = plt.subplots(figsize=(9, 2.4))
ax.imshow(panel)
ax.set_title("original  |  segments in mean colour  |  boundaries")
ax.axis("off")
plt.show()
