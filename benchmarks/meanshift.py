"""Mean-shift benchmark: skseg against the tools a user would otherwise pick.

Workload: scikit-image's ``coffee`` photo in CIELAB, rescaled by 0.25 (15,000 pixels) and
at full size (240,000 pixels); Gaussian blurring mean-shift, bandwidth 2.5, 20 steps.

Each method runs in its own process so that its peak memory (resident set growth over the
process after loading the data) is its own. The float64 reference for 15,000 pixels is the
straightforward chunked computation in float64, cached under ``benchmarks/results/``; at
240,000 pixels no reference is affordable, and skseg float32 is compared with skseg
float64 (which the test suite checks against the plain reference loop to 1e-9).

Usage::

    python benchmarks/meanshift.py            # the whole table (about 10 minutes on 2 cores)
    python benchmarks/meanshift.py --quick    # 15,000 pixels only
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BANDWIDTH, STEPS = 2.5, 20


def coffee_lab(scale):
    from skimage import color, data, transform

    image = data.coffee()
    if scale != 1:
        image = transform.rescale(image, scale, channel_axis=-1, anti_aliasing=True)
    return color.rgb2lab(image).reshape(-1, 3)


def per_point_loop(X):
    """The assignment's algorithm as written there: a Python loop over points."""
    points = X.copy()
    for _ in range(STEPS):
        new = np.empty_like(points)
        for i in range(len(points)):
            dist = np.sqrt(((points - points[i]) ** 2).sum(axis=1))
            weight = np.exp(-(dist**2) / (2 * BANDWIDTH**2))
            new[i] = (weight[:, None] * points).sum(axis=0) / weight.sum()
        points = new
    return points


def straightforward_torch(X, dtype="float32", chunk=1024):
    """Chunked torch: cdist -> exp -> matmul for every block of rows."""
    import torch

    points = torch.as_tensor(X, dtype=getattr(torch, dtype))
    for _ in range(STEPS):
        new = torch.empty_like(points)
        for start in range(0, len(points), chunk):
            dist = torch.cdist(points[start : start + chunk], points)
            weight = torch.exp(-(dist**2) / (2 * BANDWIDTH**2))
            new[start : start + chunk] = weight @ points / weight.sum(1, keepdim=True)
        points = new
    return points.numpy()


def run_method(method, scale, subsample):
    X = coffee_lab(scale)
    if subsample:
        X = X[np.random.default_rng(0).choice(len(X), subsample, replace=False)]
    import torch  # noqa: F401  (imports stay outside the timed region)

    from skseg import MeanShiftSegmenter

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if method == "loop":
        out = per_point_loop(X)
    elif method == "torch":
        out = straightforward_torch(X)
    elif method == "reference":
        out = straightforward_torch(X, dtype="float64", chunk=256)
    elif method == "sklearn":
        from sklearn.cluster import MeanShift

        MeanShift(bandwidth=BANDWIDTH, bin_seeding=True, max_iter=STEPS, n_jobs=2).fit(X)
        out = None
    else:
        device, dtype = method.split("-")[1:]
        out = (
            MeanShiftSegmenter(BANDWIDTH, max_iter=STEPS, device=device, dtype=dtype)
            .fit(X)
            .shifted_points_
        )
    seconds = time.perf_counter() - start
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    if method.startswith("skseg") and device == "cuda":
        import torch

        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    if out is not None:
        np.save(RESULTS / f"{method}-{scale}-{subsample}.npy", np.asarray(out, np.float64))
    return {"seconds": seconds, "peak_mb": peak_mb, "n": len(X)}


def measure(method, scale, subsample=0):
    cmd = [sys.executable, __file__, "--worker", method, str(scale), str(subsample)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def max_diff(method, scale, reference, subsample=0):
    a = np.load(RESULTS / f"{method}-{scale}-{subsample}.npy")
    b = np.load(RESULTS / f"{reference}-{scale}-{subsample}.npy")
    return float(np.abs(a - b).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="15,000 pixels only")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.worker:
        method, scale, subsample = args.worker
        print(json.dumps(run_method(method, float(scale), int(subsample))))
        return

    import torch

    cuda = torch.cuda.is_available()
    rows = []

    def add(name, n_label, stats, diff, note=""):
        rows.append((name, n_label, stats, diff, note))
        seconds = f"{stats['seconds']:.2f}" if stats else "-"
        print(f"  {name:<40} {n_label:>9} {seconds:>9} s", file=sys.stderr, flush=True)

    for scale in [0.25] if args.quick else [0.25, 1.0]:
        n = len(coffee_lab(scale))
        ref = "reference" if scale == 0.25 else "skseg-cpu-float64"
        if scale == 0.25 and not (RESULTS / "reference-0.25-0.npy").exists():
            print("computing the float64 reference (a few minutes) ...", file=sys.stderr)
            measure("reference", scale)
        sub = 1000
        stats = measure("loop", scale, sub)
        stats["seconds_full"] = stats["seconds"] * (n / sub) ** 2
        add(
            "per-point numpy loop (assignment)",
            f"{sub:,}",
            stats,
            None,
            f"{stats['seconds_full']:.0f} s extrapolated to {n:,} (x n^2)",
        )
        if scale == 0.25:
            stats = measure("torch", scale)
            add(
                "straightforward chunked torch, float32",
                f"{n:,}",
                stats,
                max_diff("torch", scale, ref),
            )
        else:
            add(
                "straightforward chunked torch, float32",
                f"{n:,}",
                None,
                None,
                "not run: about (16^2) x the 15,000-pixel time",
            )
        stats = measure("sklearn", scale)
        add(
            "sklearn MeanShift (flat kernel, bin seeding)",
            f"{n:,}",
            stats,
            None,
            "a different algorithm: no per-point answer to compare",
        )
        if scale != 0.25:
            measure("skseg-cpu-float64", scale)
        stats = measure("skseg-cpu-float32", scale)
        add(
            "skseg CPU, float32",
            f"{n:,}",
            stats,
            max_diff("skseg-cpu-float32", scale, ref),
            "vs float64 reference" if scale == 0.25 else "vs skseg float64",
        )
        if cuda:
            stats = measure("skseg-cuda-float32", scale)
            add("skseg CUDA, float32", f"{n:,}", stats, max_diff("skseg-cuda-float32", scale, ref))

    print()
    print(
        f"Gaussian blurring mean-shift, bandwidth {BANDWIDTH}, {STEPS} steps, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print()
    header = ("method", "pixels", "time (s)", "peak memory (MB)", "max abs. diff (Lab)", "note")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, n_label, stats, diff, note in rows:
        seconds = f"{stats['seconds']:.2f}" if stats else "-"
        memory = f"{stats['peak_mb']:.0f}" if stats else "-"
        diff_text = f"{diff:.1e}" if diff is not None else "-"
        print(f"| {name} | {n_label} | {seconds} | {memory} | {diff_text} | {note} |")


if __name__ == "__main__":
    main()
