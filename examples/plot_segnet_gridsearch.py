"""
Grid search over the SegNet width
=================================

:class:`~skseg.SegNetSegmenter` is a scikit-learn estimator, so
:class:`~sklearn.model_selection.GridSearchCV` tunes it like any other. The
:data:`~skseg.metrics.iou_scorer` scores every candidate by mean IoU on the held-out fold.
Tiny budgets keep this example fast; the ranking, not the absolute score, is the point.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.model_selection import GridSearchCV

from skseg import SegNetSegmenter
from skseg.datasets import StandInWarning, load_default_digits, make_multidigit_mnist
from skseg.metrics import iou_scorer

with warnings.catch_warnings():
    warnings.simplefilter("always", StandInWarning)
    digits, labels = load_default_digits()
X, y = make_multidigit_mnist(
    600, digits=digits, labels=labels, image_size=32, max_digits=1, random_state=0
)

search = GridSearchCV(
    SegNetSegmenter(max_epochs=3, validation_fraction=0, random_state=0, verbose=0),
    param_grid={"width": [4, 8, 16]},
    scoring=iou_scorer,
    cv=2,
)
search.fit(X, y)
widths = search.cv_results_["param_width"].tolist()
scores = search.cv_results_["mean_test_score"]
for width, score in zip(widths, scores):
    print(f"width {width:>2}: mean IoU {score:.3f}")
print("best:", search.best_params_)

fig, ax = plt.subplots(figsize=(4, 3))
ax.plot(widths, scores, "o-")
ax.set_xlabel("width (channels of the first block)")
ax.set_ylabel("cross-validated mean IoU")
fig.tight_layout()
plt.show()
