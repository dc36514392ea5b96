"""Mean-shift benchmark: skseg against the tools a user would otherwise pick, in one run.

Workload: the CIELAB pixels of scikit-image's ``coffee`` photo rescaled by 0.25, 0.5, 1
and 2 (15,000, 60,000, 240,000 and 960,000 pixels). Methods:

- skseg ``MeanShiftSegmenter`` exact (Gaussian blurring mean-shift, bandwidth 2.5,
  20 steps, float32) and ``algorithm="grid"`` (approximate);
- skseg exact in float64 (the reference the float32 rows are compared with; the test
  suite checks float64 against a plain per-point loop of the algorithm);
- skseg exact and grid (at the default cells and at ``grid_cell=0.5``) on joint
  spatial-range features (``rgb_to_features(image, spatial_scale=0.1)``: CIELAB and
  pixel position, 5-D);
- scikit-learn ``MeanShift(bandwidth=2.5, bin_seeding=True, max_iter=20, n_jobs=2)``
  (flat kernel);
- OpenCV ``pyrMeanShiftFiltering(sp=10, sr=10)`` on the RGB photo, when ``cv2`` is
  installed (``pip install opencv-python-headless``; a benchmark-only extra).

A second table runs the same methods on other photos bundled with scikit-image
(``astronaut``, ``chelsea``, ``rocket``, ``immunohistochemistry``, ``colorwheel``,
``retina`` downscaled to 244,000 pixels, the left view of ``stereo_motorcycle`` and
``astronaut`` upscaled by 2 to a megapixel, and ``astronaut`` with Gaussian noise of
standard deviation 5 grey levels, as a camera's sensor adds), with float64 references up
to 400,000 pixels.

Every method runs in a fresh process, so its peak memory (growth of the resident set
while it runs) is its own; a time is the fastest of three runs where one takes under
15 s, so that a busy moment of a shared machine does not decide it. The script writes
``docs/generated_benchmarks/meanshift.rst`` and
``docs/generated_benchmarks/meanshift_photos.rst`` (the tables the docs include, headed
by the CPU and torch version) and ``docs/_static/meanshift_scaling.png`` (time against
pixels, log-log).

Usage::

    python benchmarks/meanshift.py            # both tables (about 20 minutes on 2 cores)
    python benchmarks/meanshift.py --fresh    # the same, recomputing the cached float64 references
    python benchmarks/meanshift.py --quick    # coffee at 15,000 and 60,000 pixels only
    python benchmarks/meanshift.py --photos   # the second table only
"""

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _report import TABLES, cpu_line, write_tables

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TABLE = TABLES / "meanshift.rst"
PHOTOS_TABLE = TABLE.with_name("meanshift_photos.rst")
PLOT = ROOT / "docs" / "_static" / "meanshift_scaling.png"
BANDWIDTH, STEPS = 2.5, 20
SCALES = {15_000: 0.25, 60_000: 0.5, 240_000: 1.0, 960_000: 2.0}
#: float64 runs beyond this many pixels are skipped (minutes each on 2 cores)
FLOAT64_UP_TO = 240_000
#: the 5-D float64 references stop here
FIVE_D_FLOAT64_UP_TO = 60_000
SPATIAL_SCALE = 0.1
WITHIN = 5e-2
#: scikit-image photos (bundled, no download) and the factor each is rescaled by
PHOTOS = {
    "astronaut": 1,
    "chelsea": 1,
    "rocket": 1,
    "immunohistochemistry": 1,
    "colorwheel": 1,
    "retina@0.35": 0.35,
    "stereo_motorcycle": 1,
    "astronaut@2": 2,
    "astronaut+noise": 1,
}
#: standard deviation, in grey levels, of the Gaussian noise a ``+noise`` photo gets
#: (fixed seed): a camera's sensor noise, which makes most pixels' colours distinct
NOISE = 5.0
PHOTOS_FLOAT64_UP_TO = 400_000
#: runs per method and image (the fastest counts) where the first run takes less than
#: REPEAT_BELOW_S seconds; the float64 references run once
REPEATS, REPEAT_BELOW_S = 3, 15.0


def coffee_rgb(scale):
    from skimage import data, transform, util

    image = data.coffee()
    if scale != 1:
        image = util.img_as_ubyte(
            transform.rescale(image, scale, channel_axis=-1, anti_aliasing=scale < 1)
        )
    return image


def photo_rgb(target):
    """``coffee`` for a pixel count of :data:`SCALES`, else a photo of :data:`PHOTOS`."""
    if target.isdigit():
        return coffee_rgb(SCALES[int(target)])
    from skimage import data, transform, util

    name, noisy = target.split("@")[0].removesuffix("+noise"), target.endswith("+noise")
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: the left view
        image = image[0]
    image = image[..., :3]
    if PHOTOS[target] != 1:
        image = util.img_as_ubyte(transform.rescale(image, PHOTOS[target], channel_axis=-1))
    if noisy:
        noise = np.random.default_rng(0).normal(0.0, NOISE, image.shape)
        image = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)
    return image


def run_method(method, target):
    from skimage import color

    image = photo_rgb(target)
    import torch  # noqa: F401  (imports stay outside the timed region)

    from skseg import MeanShiftSegmenter
    from skseg.image import rgb_to_features
    from skseg.meanshift import compile_kernels

    if method.startswith("skseg"):
        # e.g. "skseg-grid5-float32" (5-D features), "skseg-grid@0.5-float32" (grid_cell)
        _, algorithm, dtype = method.split("-")
        algorithm, _, cell = algorithm.partition("@")
    if method.startswith("skseg") and algorithm.endswith("5"):
        X = rgb_to_features(image, spatial_scale=SPATIAL_SCALE).reshape(-1, 5)
    else:
        X = color.rgb2lab(image).reshape(-1, 3)
    if method.startswith("skseg"):  # compile (or load) the kernels outside the timed region
        compile_kernels((dtype,))

    def run_once():
        out, n_segments, ms = None, None, None
        if method == "sklearn":
            from sklearn.cluster import MeanShift

            flat = MeanShift(bandwidth=BANDWIDTH, bin_seeding=True, max_iter=STEPS, n_jobs=2)
            n_segments = len(flat.fit(X).cluster_centers_)
        elif method == "opencv":
            import cv2

            cv2.setNumThreads(2)
            cv2.pyrMeanShiftFiltering(np.ascontiguousarray(image[..., ::-1]), 10, 10)
        else:
            ms = MeanShiftSegmenter(
                BANDWIDTH,
                max_iter=STEPS,
                algorithm=algorithm.rstrip("5"),
                dtype=dtype,
                **({"grid_cell": float(cell)} if cell else {}),
            )
            ms.fit(X)
            out, n_segments = ms.shifted_points_, len(ms.cluster_centers_)
        return out, n_segments, ms

    # the best of up to REPEATS runs, as timeit reports, so that a busy moment of a
    # shared machine does not decide a cell; peak memory is that of the first run
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out, n_segments, ms = run_once()
    seconds = time.perf_counter() - start
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    repeat = seconds < REPEAT_BELOW_S and not method.endswith("float64")
    for _ in range(REPEATS - 1 if repeat else 0):
        start = time.perf_counter()
        run_once()
        seconds = min(seconds, time.perf_counter() - start)
    if out is not None:
        np.save(RESULTS / f"{method}-{target}.npy", np.asarray(out, np.float64))
        np.save(RESULTS / f"{method}-{target}-labels.npy", ms.labels_)
    colours = len(np.unique(X, axis=0))
    return {"seconds": seconds, "peak_mb": peak_mb, "segments": n_segments, "colours": colours}


def measure(method, target):
    cmd = [sys.executable, __file__, "--worker", method, str(target)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(method, target):
    """Largest deviation from skseg float64, and the share of points within ``WITHIN``."""
    reference = RESULTS / f"{method.replace('float32', 'float64')}-{target}.npy"
    if not reference.exists():
        return None, None
    diff = np.abs(np.load(RESULTS / f"{method}-{target}.npy") - np.load(reference)).max(axis=1)
    return float(diff.max()), float((diff <= WITHIN).mean())


def rand_index_to_exact(method, target):
    """Adjusted Rand index of a grid run's segments against the exact run's."""
    from sklearn.metrics import adjusted_rand_score

    exact, grid = (
        np.load(RESULTS / f"{name}-{target}-labels.npy")
        for name in (re.sub("@[^-]*", "", method.replace("grid", "blurring")), method)
    )
    return adjusted_rand_score(exact, grid)


def machine_line():
    return (
        f"{cpu_line()}, Python {platform.python_version()}; Gaussian mean-shift with "
        f"bandwidth {BANDWIDTH} and {STEPS} steps"
    )


def photo_name(target):
    """How the photos table names a key of :data:`PHOTOS`."""
    return target.replace("@", " x").replace("+noise", f" with noise (sd {NOISE:g})")


def photos_table(others, *, fresh):
    """Time every method on :data:`PHOTOS`; exact mode against float64 where affordable."""
    methods = {
        "exact": "skseg-blurring-float32",
        "grid": "skseg-grid-float32",
        "coarse grid": "skseg-grid@0.5-float32",
        **others,
    }
    rows = []
    for target in PHOTOS:
        image = photo_rgb(target)
        pixels = image.shape[0] * image.shape[1]
        cached = (RESULTS / f"skseg-blurring-float64-{target}.npy").exists()
        if pixels <= PHOTOS_FLOAT64_UP_TO and (fresh or not cached):
            measure("skseg-blurring-float64", target)
        stats = {name: measure(method, target) for name, method in methods.items()}
        for name, s in stats.items():
            seconds = s["seconds"] if s else float("nan")
            print(f"  {name:<45} {target:>22} {seconds:8.2f} s", file=sys.stderr, flush=True)
        exact = stats["exact"]
        if exact is None:
            rows.append([target, "failed"] + ["-"] * (2 + 2 * len(others)))
            continue
        worst, share = agreement(methods["exact"], target)
        row = [
            f"{photo_name(target)} ({pixels:,} px, {exact['colours']:,} colours)",
            f"{exact['seconds']:.2f} s, {exact['segments']} segments"
            + (f", {100 * share:.3f} % within {WITHIN:g}" if worst is not None else ""),
            *(
                f"{stats[grid]['seconds']:.2f} s, adjusted Rand index "
                f"{rand_index_to_exact(methods[grid], target):.3f}"
                if stats[grid]
                else "failed"
                for grid in ("grid", "coarse grid")
            ),
        ]
        row += [f"{stats[name]['seconds']:.2f} s" if stats[name] else "failed" for name in others]
        row += [
            f"{stats[name]['seconds'] / exact['seconds']:.2f}" if stats[name] else "-"
            for name in others
        ]
        rows.append(row)
    columns = ["photo", "skseg exact, float32", "skseg grid (approximate)"]
    columns += ["skseg grid, grid_cell=0.5", *others]
    columns += [f"{name} / skseg exact" for name in others]
    header = (
        f"{machine_line()} on the CIELAB pixels of scikit-image photos. Agreement is with "
        "skseg's float64 mode (computed up to "
        f"{PHOTOS_FLOAT64_UP_TO:,} pixels), per pixel; the grid mode's segments are "
        "compared with the exact mode's."
    )
    write_tables(PHOTOS_TABLE, (header, columns, rows))


def plot(times, sizes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, seconds in times.items():
        xs = [n for n in sizes if seconds.get(n)]
        ax.loglog(xs, [seconds[n] for n in xs], "o-", label=name)
    ax.set_xlabel("pixels")
    ax.set_ylabel("seconds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="15,000 and 60,000 pixels only")
    parser.add_argument("--photos", action="store_true", help="the photos table only")
    parser.add_argument(
        "--fresh", action="store_true", help="recompute the cached float64 references"
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.worker:
        print(json.dumps(run_method(*args.worker)))
        return

    try:
        import cv2  # noqa: F401

        opencv = True
    except ImportError:
        opencv = False
    others = {"scikit-learn MeanShift (flat, bin seeding)": "sklearn"}
    if opencv:
        others["OpenCV pyrMeanShiftFiltering(10, 10)"] = "opencv"
    if not args.photos:
        coffee_table(others, quick=args.quick, fresh=args.fresh)
    if not args.quick:
        others = {name.split(" ")[0]: method for name, method in others.items()}
        photos_table(others, fresh=args.fresh)


def coffee_table(others, *, quick, fresh):
    """Time every method on ``coffee`` at the sizes of :data:`SCALES`; write the plot."""
    sizes = list(SCALES)[:2] if quick else list(SCALES)
    methods = {
        "skseg exact, float32": "skseg-blurring-float32",
        "skseg grid (approximate)": "skseg-grid-float32",
        "skseg exact, 5-D (colour and position)": "skseg-blurring5-float32",
        "skseg grid, 5-D": "skseg-grid5-float32",
        "skseg grid, 5-D, grid_cell=0.5": "skseg-grid5@0.5-float32",
        **others,
    }
    stats = {name: {} for name in methods}
    for n in sizes:
        references = [("skseg-blurring-float64", FLOAT64_UP_TO),
                      ("skseg-blurring5-float64", FIVE_D_FLOAT64_UP_TO)]
        for reference, up_to in references:  # kept between runs
            cached = (RESULTS / f"{reference}-{n}.npy").exists()
            if n <= up_to and (fresh or not cached):
                measure(reference, str(n))
        for name, method in methods.items():
            stats[name][n] = measure(method, str(n))
            seconds = stats[name][n]["seconds"] if stats[name][n] else float("nan")
            print(f"  {name:<45} {n:>9,} px {seconds:8.2f} s", file=sys.stderr, flush=True)

    def cell(name, n):
        s = stats[name][n]
        if s is None:
            return "failed"
        text = f"{s['seconds']:.2f} s, {s['peak_mb']:.0f} MB"
        if s["segments"] is not None:
            text += f", {s['segments']} segments"
        if name.startswith("skseg exact"):
            worst, share = agreement(methods[name], n)
            if worst is not None:
                text += f", max diff {worst:.1e}, {100 * share:.3f} % within {WITHIN:g}"
        elif name.startswith("skseg grid"):
            text += f", adjusted Rand index vs exact {rand_index_to_exact(methods[name], n):.3f}"
        return text

    rows = [[name, *(cell(name, n) for n in sizes)] for name in methods]
    exact = "skseg exact, float32"
    for other in others:
        rows.append(
            [
                f"{other.split(' ')[0]} time / skseg exact time",
                *(
                    f"{stats[other][n]['seconds'] / stats[exact][n]['seconds']:.2f}"
                    if stats[other][n] and stats[exact][n]
                    else "-"
                    for n in sizes
                ),
            ]
        )
    header = (
        f"{machine_line()} on the CIELAB pixels of ``coffee`` (rescaled), and on its 5-D "
        f"joint spatial-range features (``rgb_to_features(image, spatial_scale="
        f"{SPATIAL_SCALE})``). Agreement is with skseg's float64 mode, per pixel (largest "
        "coordinate difference); the grid mode's segments are compared with the exact "
        "mode's."
    )
    columns = ["method", *(f"{n:,} px" for n in sizes)]
    write_tables(TABLE, (header, columns, rows))
    plot(
        {
            name: {n: s["seconds"] for n, s in stats[name].items() if s}
            for name in methods
        },
        sizes,
    )


if __name__ == "__main__":
    main()
