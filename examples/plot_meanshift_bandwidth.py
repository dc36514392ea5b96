"""
Choosing the bandwidth
======================

The bandwidth is the scale at which colours count as the same. Small bandwidths keep
many segments, large ones merge them. Without ground truth,
:class:`~sklearn.model_selection.GridSearchCV` can still pick one with the segmenter's
unsupervised :meth:`~skseg.MeanShiftSegmenter.score`: the silhouette of the segmentation
on a subsample.
"""

import matplotlib.pyplot as plt
from skimage import data, transform
from sklearn.model_selection import GridSearchCV

from skseg import MeanShiftSegmenter
from skseg.image import labels_to_image, rgb_to_features, segmentation_overview

image = transform.rescale(data.coffee(), 0.15, channel_axis=-1, anti_aliasing=True)
features = rgb_to_features(image)
bandwidths = [1.5, 2.5, 5.0, 10.0]

fig, axes = plt.subplots(len(bandwidths), 1, figsize=(7, 1.8 * len(bandwidths)))
for ax, bandwidth in zip(axes, bandwidths):
    segmenter = MeanShiftSegmenter(bandwidth=bandwidth).fit(features)
    label_map = labels_to_image(segmenter.labels_, image.shape)
    ax.imshow(segmentation_overview(image, label_map))
    ax.set_title(f"bandwidth {bandwidth}: {len(segmenter.cluster_centers_)} segments")
    ax.axis("off")
fig.tight_layout()

# %%
# Grid search over the bandwidth, scored by the silhouette on 2,000 pixels.
search = GridSearchCV(
    MeanShiftSegmenter(random_state=0), param_grid={"bandwidth": bandwidths}, cv=3
)
search.fit(features)
for bandwidth, score in zip(bandwidths, search.cv_results_["mean_test_score"]):
    print(f"bandwidth {bandwidth:>5}: silhouette {score:.3f}")
print("best:", search.best_params_)
plt.show()
