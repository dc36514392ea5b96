"""
From an RGB image to segments in one Pipeline
=============================================

A :class:`~sklearn.pipeline.Pipeline` whose first step turns an RGB image into per-pixel
CIELAB features (with scaled pixel coordinates, for spatially coherent segments) and whose
second step segments them. ``fit_predict`` takes the image itself.
"""

import matplotlib.pyplot as plt
from skimage import data, transform
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skseg import MeanShiftSegmenter
from skseg.image import labels_to_image, rgb_to_features, segmentation_overview

image = transform.rescale(data.astronaut(), 0.2, channel_axis=-1, anti_aliasing=True)

pipeline = Pipeline(
    [
        (
            "features",
            FunctionTransformer(rgb_to_features, kw_args={"spatial_scale": 0.25}),
        ),
        ("segment", MeanShiftSegmenter(bandwidth=4.0)),
    ]
)
labels = pipeline.fit_predict(image)
print(f"{labels.max() + 1} segments for {labels.size} pixels")

fig, ax = plt.subplots(figsize=(9, 3))
ax.imshow(segmentation_overview(image, labels_to_image(labels, image.shape)))
ax.axis("off")
plt.show()
