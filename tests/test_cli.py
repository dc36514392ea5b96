import re

import numpy as np
import pytest
from skimage import data, io, transform, util
from sklearn.metrics import adjusted_rand_score

from skseg import MeanShiftSegmenter, SegNetSegmenter
from skseg._device import has_fast_bfloat16
from skseg.cli import main
from skseg.datasets import StandInWarning
from skseg.image import rgb_to_features

from .test_datasets import SHARED_MNIST, needs_shared


def test_segment_default_image_writes_the_panel(tmp_path, capsys):
    out = tmp_path / "seg.png"
    assert main(["segment", "--scale", "0.1", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "coffee" in captured.out and "segments in" in captured.out
    assert "mean-shift" in captured.err  # the progress bar
    panel = io.imread(out)
    assert panel.shape == (40, 180, 3)


def test_segment_file_quietly(tmp_path, capsys):
    path = tmp_path / "in.png"
    io.imsave(path, data.astronaut()[::16, ::16])
    out = tmp_path / "out.png"
    assert main(["segment", str(path), "--scale", "1", "--quiet", "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert io.imread(out).shape == (32, 96, 3)
    # a greyscale photo segments by its grey levels: the photo and the segments are grey
    io.imsave(path, data.camera()[::16, ::16])
    assert main(["segment", str(path), "--scale", "1", "--quiet", "-o", str(out)]) == 0
    panel = io.imread(out)
    assert panel.shape == (32, 96, 3)
    grey_panels = panel[:, :64]
    assert (grey_panels == grey_panels[..., :1]).all()
    assert len(np.unique(grey_panels[:, 32:, 0])) > 1  # more than one segment
    # a one-pixel image: one segment after one step, counted in the singular
    io.imsave(path, data.astronaut()[:1, :1], check_contrast=False)
    capsys.readouterr()
    assert main(["segment", str(path), "--scale", "1", "--quiet", "-o", str(out)]) == 0
    assert "1 segment in" in capsys.readouterr().out


def test_segment_announces_a_compilation_while_it_runs(monkeypatch, tmp_path, capsys):
    import time

    import skseg.cli
    import skseg.meanshift

    def slow_compile():
        time.sleep(0.3)
        return 0.3

    monkeypatch.setattr(skseg.cli, "COMPILE_NOTICE_AFTER", 0.1)
    monkeypatch.setattr(skseg.meanshift, "compile_kernels", slow_compile)
    argv = ["segment", "--scale", "0.05", "--quiet", "--device", "cpu"]
    assert main([*argv, "-o", str(tmp_path / "a.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("compiling the mean-shift kernels")
    assert lines[1] == "compiled them in 0 s; numba caches them for later runs"
    monkeypatch.setattr(skseg.meanshift, "compile_kernels", lambda: 0.01)  # a cache load
    assert main([*argv, "-o", str(tmp_path / "b.png")]) == 0
    assert "compil" not in capsys.readouterr().out


def test_segment_grid_cell_reaches_the_estimator(monkeypatch, tmp_path):
    from skseg.meanshift import MeanShiftSegmenter

    seen = []
    fit = MeanShiftSegmenter.fit

    def spy(self, X, y=None, sample_weight=None):
        seen.append((self.algorithm, self.grid_cell))
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(MeanShiftSegmenter, "fit", spy)
    argv = ["segment", "--scale", "0.05", "--quiet", "--algorithm", "grid"]
    assert main([*argv, "--grid-cell", "0.25", "-o", str(tmp_path / "a.png")]) == 0
    assert main([*argv, "-o", str(tmp_path / "b.png")]) == 0
    assert seen == [("grid", 0.25), ("grid", MeanShiftSegmenter().grid_cell)]


def test_segment_reports_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert main(["segment", str(bad), "-o", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    stack = tmp_path / "stack.tif"
    io.imsave(stack, np.zeros((2, 8, 8, 3), np.uint8), check_contrast=False)
    assert main(["segment", str(stack), "-o", str(tmp_path / "o.png")]) == 2
    assert "neither an RGB nor a greyscale image" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "--bandwidth", "-1"], "--bandwidth: must be a finite number > 0, got -1"),
        (["segment", "--scale", "x"], "--scale: must be a finite number > 0, got x"),
        (["segment", "--max-iter", "-3"], "--max-iter: must be an integer >= 0, got -3"),
        (["segment", "--grid-cell", "0"], "--grid-cell: must be a finite number > 0, got 0"),
        (["train-segnet", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
        (["train-segnet", "--n-test", "0"], "--n-test: must be an integer >= 1, got 0"),
        (["train-segnet", "--n-train", "-5"], "--n-train: must be an integer >= 1, got -5"),
        (["train-segnet", "--n-train", "8,x"], "--n-train: must be an integer >= 1, got x"),
        (["train-segnet", "--width", "x"], "--width: must be an integer >= 1, got x"),
        (["train-segnet", "--validation-fraction", "1"], "must be a number in [0, 1), got 1"),
        (["train-segnet", "--train-max-digits", "0"], "--train-max-digits: must be an integer"),
        (["train-segnet", "--test-time-shifts", "-1"], "--test-time-shifts: must be an integer"),
    ],
)
def test_bad_arguments_are_rejected_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _train_args(data_home, out, size=("--n-train", "40")):
    return [
        "train-segnet",
        "--data-home",
        str(data_home),
        "-o",
        str(out),
        *size,
        "--n-test",
        "8",
        "--epochs",
        "2",
        "--width",
        "4",
        "--depth",
        "2",
        "--quiet",
    ]


def test_train_segnet_on_the_offline_standin(tmp_path, capsys, monkeypatch):
    import skseg._memory

    calls = []
    monkeypatch.setattr(skseg._memory, "keep_freed_memory", lambda: calls.append(True))
    out = tmp_path / "model.pt"
    with pytest.warns(StandInWarning):
        assert main(_train_args(tmp_path, out)) == 0
    assert calls == []  # the allocator setting is opt-in
    with pytest.warns(StandInWarning):
        assert main([*_train_args(tmp_path, out), "--keep-freed-memory"]) == 0
    assert calls == [True]
    printed = capsys.readouterr().out
    assert "held-out mean IoU" in printed and "per-class IoU" in printed
    assert SegNetSegmenter.load(out).predict(np.zeros((1, 64, 64))).shape == (1, 64, 64)


def test_train_segnet_plans_the_epochs_by_time(tmp_path, capsys):
    args = _train_args(tmp_path, tmp_path / "m.pt", size=("--time-budget", "1"))
    args.remove("--quiet")
    with pytest.warns(StandInWarning):
        assert main(args) == 0
    printed = capsys.readouterr().out
    assert "s to evaluate" in printed
    sizes = re.search(r"repeat with --n-train (\d+),(\d+)\)", printed).groups()
    precision = "bfloat16" if has_fast_bfloat16("cpu") else "float32"  # --precision auto
    assert f"training in {precision} on about {sizes[0]} fresh images per epoch" in printed
    # the printed sizes repeat the run's epochs
    with pytest.warns(StandInWarning):
        assert main(_train_args(tmp_path, tmp_path / "m.pt", ("--n-train", ",".join(sizes)))) == 0
    assert f"training in {precision} on {min(sizes, key=int)}-{max(sizes, key=int)} fresh" in (
        capsys.readouterr().out
    )


def test_train_segnet_wants_one_size_per_epoch(tmp_path, capsys):
    argv = _train_args(tmp_path, tmp_path / "m.pt", size=("--n-train", "8,8,8"))
    assert main(argv) == 2  # --epochs 2
    assert "--n-train gives the images of 3 epochs, --epochs asks for 2" in (
        capsys.readouterr().err
    )


@needs_shared
def test_train_segnet_reads_mnist(tmp_path, capsys):
    assert main(_train_args(SHARED_MNIST, tmp_path / "m.pt")) == 0
    assert "from 50000 digits" in capsys.readouterr().out  # 10,000 held out


def test_train_segnet_options_reach_the_recipe_model(monkeypatch):
    import skseg.cli
    import skseg.segnet
    from skseg.segnet import PRECISIONS, RECIPE

    # the command's defaults are the recipe's, in one place, and its help shows them
    parsed = skseg.cli.build_parser().parse_args(["train-segnet"])
    assert all(getattr(parsed, name) == value for name, value in RECIPE.items())
    train = skseg.cli.build_parser()._subparsers._group_actions[0].choices["train-segnet"]
    assert re.search(rf"--width WIDTH +default {RECIPE['width']}\n", train.format_help())
    precision = next(a for a in train._actions if a.dest == "precision")
    assert precision.choices == list(PRECISIONS)
    built = []
    monkeypatch.setattr(skseg.segnet, "recipe_model", lambda **kw: built.append(kw) or 1 / 0)
    monkeypatch.setattr(skseg.segnet, "recipe_data", lambda *a, **kw: (None,) * 4)
    argv = ["train-segnet", "--input-thresholds", "0", "--width", "8", "--quiet"]
    with pytest.raises(ZeroDivisionError):
        main(argv + ["--lr-schedule", "onecycle", "--top-block", "unpool", "--augment"])
    (options,) = built
    assert (options["input_thresholds"], options["width"], options["augment"]) == (0, 8, True)
    assert (options["lr_schedule"], options["top_block"], options["verbose"]) == (
        "onecycle", "unpool", 0
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["segment", "--help"],
        ["segment", "missing.png"],
        ["segment", "--bandwidth", "-1"],
        ["train-segnet", "--help"],
    ],
)
def test_help_and_argument_errors_import_no_estimator(argv):
    # answered before torch loads (seconds on a small machine); train-segnet's help reads
    # the recipe's defaults from the estimator, so it may import them
    import subprocess
    import sys

    script = (
        "import sys\nfrom skseg.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint(sorted({'torch', 'skorch', 'sklearn'} & "
        "set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True
    )
    imported = result.stdout.strip().splitlines()[-1]
    if argv[0] == "train-segnet":
        assert re.search(r"--width WIDTH +default \d+\n", result.stdout)
        assert "'torch'" in imported
    else:
        assert imported == "[]"


def test_recipe_takes_the_estimators_defaults():
    import inspect

    from skseg import SegNetSegmenter
    from skseg.segnet import RECIPE

    defaults = {k: p.default for k, p in inspect.signature(SegNetSegmenter).parameters.items()}
    for name in ("width", "input_thresholds", "top_block", "lr", "lr_schedule"):
        assert RECIPE[name] == defaults[name]
    assert RECIPE["depth"] == 4 and defaults["depth"] == 3
    assert (RECIPE["optimizer"], RECIPE["precision"]) == ("muon", "auto")
    assert RECIPE["augment"] is False and defaults["augment"] is True
    assert RECIPE["convs_per_block"] == 1 and defaults["convs_per_block"] is None


def test_recipe_model_builds_the_recipe():
    from skseg.segnet import Muon, recipe_model

    model = recipe_model()
    assert (model.input_thresholds, model.lr_schedule, model.top_block) == (4, "wsd", "upsample")
    assert model.optimizer is Muon and model.mixed_precision == "auto"
    assert recipe_model(optimizer="adamw", precision="float32").mixed_precision is False
    with pytest.raises(ValueError, match="optimizer must be one of"):
        recipe_model(optimizer="sgd")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "--scale", "inf"], "--scale: must be a finite number > 0, got inf"),
        (["segment", "--bandwidth", "nan"], "--bandwidth: must be a finite number > 0, got nan"),
        (["train-segnet", "--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
        (["train-segnet", "--time-budget", "inf"], "--time-budget: must be a finite number"),
    ],
)
def test_non_finite_numbers_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _no_work(monkeypatch):
    # any of these checks must fail before the estimators are built
    import skseg.meanshift
    import skseg.segnet

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(skseg.meanshift.MeanShiftSegmenter, "fit", refuse)
    monkeypatch.setattr(skseg.segnet.SegNetSegmenter, "fit", refuse)
    monkeypatch.setattr("skseg.segnet.recipe_data", refuse)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "-o", "{tmp}/missing/out.png"], "does not exist: create it first"),
        (["segment", "-o", "{tmp}/out.txt"], "must end in one of .png"),
        (["segment", "-o", "{tmp}"], "must end in one of"),
        (["segment", "-o", "{tmp}/o.png", "--labels", "{tmp}/l.jpg"], "one of .npy, .png"),
        (["segment", "-o", "{tmp}/o.png", "--labels", "{tmp}/x/l.npy"], "does not exist"),
        (["segment", "-o", "{tmp}/o.png", "--labels", "{tmp}/o.png"], "are the same file"),
        (["segment", "{tmp}/no-such-image.png", "-o", "{tmp}/o.png"], "does not exist"),
        (["segment", "--scale", "1e-6", "-o", "{tmp}/o.png"], "choose a scale"),
        (["segment", "--scale", "1000", "-o", "{tmp}/o.png"], "choose a scale"),
        (["train-segnet", "-o", "{tmp}/missing/m.pt"], "does not exist: create it first"),
        (["train-segnet", "-o", "{tmp}/m.txt"], "must end in one of .pt"),
        (["train-segnet", "--data-home", "{tmp}/typo", "-o", "{tmp}/m.pt"], "is not a folder"),
        (["train-segnet", "--device", "meta", "-o", "{tmp}/m.pt"], "--device must be cpu"),
        (["train-segnet", "--device", "cuda:x", "-o", "{tmp}/m.pt"], "or cuda:N, got 'cuda:x'"),
        (["segment", "--device", "gpu", "-o", "{tmp}/o.png"], "must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_user_errors_stop_before_any_work_without_a_traceback(
    argv, message, tmp_path, capsys, monkeypatch
):
    _no_work(monkeypatch)
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("skseg: error: ") and message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pt"))


def test_segment_writes_atomically_with_ordinary_permissions(tmp_path, capsys):
    out = tmp_path / "seg.png"
    out.write_bytes(b"old")
    assert main(["segment", "--scale", "0.05", "--quiet", "-o", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["seg.png"]  # no temporary file left
    assert io.imread(out).shape == (20, 90, 3)
    assert out.stat().st_mode & 0o044  # readable by others, as a plainly created file


def test_segment_warns_when_upsampling(tmp_path, capsys):
    path = tmp_path / "in.png"
    io.imsave(path, data.astronaut()[::64, ::64])
    out = tmp_path / "o.png"
    assert main(["segment", str(path), "--scale", "2", "--quiet", "-o", str(out)]) == 0
    assert "upsamples" in capsys.readouterr().err
    assert io.imread(tmp_path / "o.png").shape == (16, 48, 3)


def test_segment_panel_shows_the_image_and_clean_segments(tmp_path, capsys):
    out = tmp_path / "seg.png"
    argv = ["segment", "--scale", "0.25", "--quiet", "-o", str(out)]
    assert main([*argv, "--min-segment-size", "0"]) == 0
    speckled = io.imread(out)
    assert main(argv) == 0  # the default merges regions under 64 pixels
    panel = io.imread(out)
    assert panel.shape == (100, 450, 3)
    original, flat = panel[:, :150], panel[:, 150:300]
    expected = util.img_as_ubyte(
        transform.rescale(data.coffee(), 0.25, channel_axis=-1, anti_aliasing=True)
    )
    assert np.abs(original.astype(int) - expected).max() <= 1
    # every segment in mean colour: fewer colours than the photo, fewer after merging
    n_colours = len(np.unique(flat.reshape(-1, 3), axis=0))
    assert n_colours < len(np.unique(speckled[:, 150:300].reshape(-1, 3), axis=0))
    assert n_colours < len(np.unique(original.reshape(-1, 3), axis=0)) / 20


def test_segment_writes_the_label_map_it_draws(tmp_path, capsys):
    out, npy, png = tmp_path / "seg.png", tmp_path / "labels.npy", tmp_path / "labels.png"
    argv = ["segment", "--scale", "0.1", "--quiet", "-o", str(out)]
    assert main([*argv, "--labels", str(npy)]) == 0
    n_segments = int(re.search(r"(\d+) segments? in", capsys.readouterr().out).group(1))
    assert main([*argv, "--labels", str(png)]) == 0
    assert f"segments 0 to {n_segments - 1}" in capsys.readouterr().out
    labels = np.load(npy)
    assert labels.shape == (40, 60) and labels.dtype == np.int32
    np.testing.assert_array_equal(io.imread(png), labels)
    # numbered 0..k-1 in the order of first appearance, row by row
    _, first = np.unique(labels, return_index=True)
    np.testing.assert_array_equal(labels.ravel()[np.sort(first)], np.arange(n_segments))
    # every segment is one colour in the panel's middle (segments in mean colour)
    flat = io.imread(out)[:, 60:120].reshape(-1, 3)
    for label in range(n_segments):
        assert len(np.unique(flat[labels.ravel() == label], axis=0)) == 1


def test_segment_with_a_mask_fits_only_its_pixels(tmp_path, capsys):
    image = data.astronaut()[::8, ::8]  # 64 x 64
    photo, mask_file = tmp_path / "photo.png", tmp_path / "mask.png"
    io.imsave(photo, image)
    mask = np.zeros((64, 64, 4), np.uint8)  # RGBA: opaque, white on black
    mask[..., 3] = 255
    mask[8:40, 16:48, :3] = 255
    io.imsave(mask_file, mask)
    labels, out = tmp_path / "labels.npy", str(tmp_path / "o.png")
    argv = ["segment", str(photo), "--quiet", "--min-segment-size", "0", "-o", out]
    assert main([*argv, "--mask", str(mask_file), "--labels", str(labels)]) == 0
    inside = (mask[..., 0] > 0).ravel()
    direct = MeanShiftSegmenter().fit(rgb_to_features(image), sample_weight=inside).labels_
    # the same partition (the file numbers the segments by first appearance)
    assert adjusted_rand_score(np.load(labels).ravel(), direct) == 1.0
    # with --scale the mask is resized by nearest neighbour, and stays a mask
    assert main([*argv, "--mask", str(mask_file), "--scale", "0.5"]) == 0
    capsys.readouterr()
    io.imsave(tmp_path / "small.png", mask[:32])
    io.imsave(tmp_path / "black.png", np.zeros((64, 64), np.uint8), check_contrast=False)
    (tmp_path / "garbage.png").write_bytes(b"garbage")
    for name, message in [
        ("garbage.png", "cannot read"),
        ("small.png", "is 64 x 32 pixels, the image 64 x 64"),
        ("black.png", "black everywhere"),
        ("missing.png", "does not exist"),
    ]:
        assert main([*argv, "--mask", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err
