import numpy as np
from skimage import data, io

from skseg.cli import main


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


def test_segment_reports_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert main(["segment", str(bad), "-o", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    grey = tmp_path / "grey.png"
    io.imsave(grey, np.zeros((8, 8), np.uint8), check_contrast=False)
    assert main(["segment", str(grey), "-o", str(tmp_path / "o.png")]) == 2
    assert "not an RGB image" in capsys.readouterr().err
