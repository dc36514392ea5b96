import numpy as np
import pytest
from skimage import color, data, io

from skseg.image import (
    labels_to_image,
    read_rgb_image,
    rgb_to_features,
    segmentation_overview,
)


def test_rgb_to_features_is_lab_per_pixel():
    image = data.astronaut()[:8, :5]
    features = rgb_to_features(image)
    lab = color.rgb2lab(image)
    assert features.shape == (40, 3)
    np.testing.assert_allclose(features[7], lab[1, 2])


def test_spatial_features_scale_the_coordinates():
    image = data.astronaut()[:4, :6]
    features = rgb_to_features(image, spatial_scale=0.5)
    np.testing.assert_allclose(features[6 * 3 + 4, 3:], [1.5, 2.0])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 4)), "RGB image of shape"),
        (np.zeros((4, 4, 4)), "RGB image of shape"),
        (np.full((2, 2, 3), np.nan), "NaN"),
        (np.full((2, 2, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((0, 4, 3)), "empty"),
        (np.full((2, 2, 3), "a"), "numeric"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises(ValueError, match=message):
        rgb_to_features(image)


def test_labels_to_image_checks_the_count():
    assert labels_to_image(np.arange(6), (2, 3, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="expected 6 labels"):
        labels_to_image(np.arange(5), (2, 3))


def test_overview_panels():
    image = np.zeros((4, 4, 3))
    image[:, 2:] = [1.0, 0.0, 0.0]
    image[0, 0] = [0.5, 0.5, 0.5]
    label_map = np.repeat([[0, 0, 1, 1]], 4, axis=0)
    panel = segmentation_overview(image, label_map)
    assert panel.shape == (4, 12, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :4], (image * 255).round())
    # middle panel: each segment in its mean colour
    np.testing.assert_allclose(panel[0, 4], [255 * 0.5 / 8] * 3, atol=1)
    np.testing.assert_array_equal(panel[0, 7], [255, 0, 0])
    with pytest.raises(ValueError, match="does not match"):
        segmentation_overview(image, label_map[:2])


def test_read_rgb_image(tmp_path):
    rgb = data.astronaut()[:10, :12]
    io.imsave(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_rgb_image(tmp_path / "rgb.png"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    io.imsave(tmp_path / "rgba.png", rgba)
    np.testing.assert_allclose(read_rgb_image(tmp_path / "rgba.png"), rgb / 255.0)
    io.imsave(tmp_path / "grey.png", rgb[..., 0])
    with pytest.raises(ValueError, match="not an RGB image"):
        read_rgb_image(tmp_path / "grey.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        read_rgb_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match="cannot read"):
        read_rgb_image(tmp_path / "missing.png")
