"""The README's Python quick starts run as written (the SegNet one shortened)."""

import re
from pathlib import Path

import numpy as np
import pytest

from .test_datasets import SHARED_MNIST, needs_shared

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(marker):
    (block,) = [
        code for code in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if marker in code
    ]
    return block


def _replace_once(text, old, new):
    # a README edit that removes ``old`` must update this test, not silently skip a step
    assert text.count(old) == 1, f"the README quick start no longer contains {old!r}"
    return text.replace(old, new)


def test_mean_shift_quick_start_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(_block("MeanShiftSegmenter(bandwidth=2.5)"), names)
    assert names["label_map"].shape == (400, 600)
    assert names["panel"].shape == (400, 1800, 3)
    assert len(np.unique(names["label_map"])) > 10


@needs_shared
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_segnet_quick_start_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _block("SegNetSegmenter(random_state=0)")
    code = _replace_once(code, '"path/to/mnist"', repr(str(SHARED_MNIST)))
    code = _replace_once(code, "make_multidigit_mnist(6400,", "make_multidigit_mnist(64,")
    code = _replace_once(
        code,
        "SegNetSegmenter(random_state=0)",
        "SegNetSegmenter(random_state=0, max_epochs=1, verbose=0)",
    )
    names = {}
    exec(code, names)
    assert names["label_maps"].shape == (8, 64, 64)
    assert 0 <= names["model"].score(names["X"], names["y"]) <= 1
    assert (tmp_path / "segnet.pt").is_file()
