import pytest
import torch
from hypothesis import settings
from skimage import color, data, transform

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# no per-example deadline: the suite runs in parallel workers on 2 cores, where the
# time of one example says more about the load than about the code
settings.register_profile("skseg", deadline=None)
settings.load_profile("skseg")


@pytest.fixture(scope="session")
def coffee_lab_small():
    """CIELAB pixels of scikit-image's coffee photo at 1/15 size (1,600 points)."""
    image = transform.rescale(data.coffee(), 1 / 15, channel_axis=-1, anti_aliasing=True)
    return color.rgb2lab(image).reshape(-1, 3)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU available")
    for item in items:
        if item.get_closest_marker("cuda") is not None:  # not a parameter id "cuda"
            item.add_marker(skip)
