"""
How the speed scales with the number of pixels
==============================================

Time for 20 steps of Gaussian blurring mean-shift (bandwidth 2.5) on CIELAB pixels of the
``coffee`` photo: the assignment's per-point numpy loop, the straightforward chunked torch
version (cdist, exp, matmul) and skseg. The loop and the straightforward version grow as
:math:`N^2`; skseg merges collapsed points and skips negligible pairs, so it grows much
more slowly. The :doc:`../benchmarks` page has the full-size numbers.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import color, data

from skseg import MeanShiftSegmenter
from skseg.meanshift import compile_kernels

# skseg's CPU kernels are compiled on their first use (then cached): do it before timing
compile_kernels()
lab = color.rgb2lab(data.coffee()).reshape(-1, 3)
rng = np.random.default_rng(0)
bandwidth, steps = 2.5, 20


def per_point_loop(X):
    points = X.copy()
    for _ in range(steps):
        new = np.empty_like(points)
        for i in range(len(points)):
            weight = np.exp(-((points - points[i]) ** 2).sum(1) / (2 * bandwidth**2))
            new[i] = weight @ points / weight.sum()
        points = new
    return points


def straightforward(X, chunk=1024):
    points = torch.as_tensor(X, dtype=torch.float32)
    for _ in range(steps):
        new = torch.empty_like(points)
        for s in range(0, len(points), chunk):
            weight = torch.exp(
                -(torch.cdist(points[s : s + chunk], points) ** 2) / (2 * bandwidth**2)
            )
            new[s : s + chunk] = weight @ points / weight.sum(1, keepdim=True)
        points = new
    return points


def seconds(fn, X):
    start = time.perf_counter()
    fn(X)
    return time.perf_counter() - start


sizes = [250, 500, 1000, 2000, 4000, 8000]
methods = {
    "per-point numpy loop": (per_point_loop, 1000),
    "straightforward torch": (straightforward, 8000),
    "skseg": (lambda X: MeanShiftSegmenter(bandwidth, max_iter=steps).fit(X), 8000),
}
fig, ax = plt.subplots(figsize=(5, 4))
for name, (fn, largest) in methods.items():
    ns = [n for n in sizes if n <= largest]
    times = [seconds(fn, lab[rng.choice(len(lab), n, replace=False)]) for n in ns]
    ax.loglog(ns, times, "o-", label=name)
    print(name, ", ".join(f"{n}: {t:.2f} s" for n, t in zip(ns, times)))
ax.set_xlabel("pixels")
ax.set_ylabel("seconds for 20 steps")
ax.legend()
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
plt.show()
