import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from skimage import color, data, io, segmentation, util

from skseg.image import (
    labels_to_image,
    read_rgb_image,
    rgb_to_features,
    segmentation_overview,
)

from .reference import merge_small_regions_reference


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


@pytest.mark.parametrize("block", [1, 7, 12, 10**6])
@pytest.mark.parametrize("shape", [(5, 4), (3, 11), (1, 9), (9, 1)])
def test_features_are_converted_in_blocks_of_rows_with_the_same_result(monkeypatch, block, shape):
    import skseg.image

    monkeypatch.setattr(skseg.image, "FEATURE_BLOCK", block)
    image = data.astronaut()[: shape[0], : shape[1]]
    rows, cols = np.indices(shape)
    expected = np.hstack(
        [color.rgb2lab(image).reshape(-1, 3), np.stack([rows.ravel(), cols.ravel()], 1) * 0.3]
    )
    np.testing.assert_array_equal(rgb_to_features(image, spatial_scale=0.3), expected)
    np.testing.assert_array_equal(rgb_to_features(image), expected[:, :3])


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


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 3)),
    st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    st.sampled_from([(1, 0), (5, 2), (10**15, -(10**17))]),
    st.integers(0, 2**32 - 1),
)
def test_overview_against_scikit_image(label_map, dtype, spread, seed):
    # the reference: skimage's label2rgb (mean colours) and mark_boundaries, in float
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(*label_map.shape, 3), dtype=np.uint8)
    if dtype is np.uint16:
        image = image.astype(np.uint16) * 256 + rng.integers(0, 256, image.shape, np.uint16)
    elif dtype is not np.uint8:
        image = (image / 255.0).astype(dtype)
    label_map = label_map * spread[0] + spread[1]
    as_float = util.img_as_float(image)
    mean_colour = color.label2rgb(label_map, as_float, kind="avg", bg_label=label_map.min() - 1)
    boundaries = segmentation.mark_boundaries(as_float, label_map, color=(0.2, 0.4, 1.0))
    assert image.dtype == dtype
    panel = segmentation_overview(image, label_map, boundary_color=(0.2, 0.4, 1.0))
    width = label_map.shape[1]
    np.testing.assert_array_equal(panel[:, :width], util.img_as_ubyte(as_float))
    # a mean exactly between two grey levels may round either way
    np.testing.assert_allclose(panel[:, width : 2 * width], util.img_as_ubyte(mean_colour), atol=1)
    np.testing.assert_array_equal(panel[:, 2 * width :], util.img_as_ubyte(boundaries))


def test_overview_paints_every_label_in_its_mean_colour():
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    image[:, :2] = 100
    image[0, 0] = 120
    label_map = np.array([[-1, -1, 7, 7], [-1, -1, 7, 7]])
    middle = segmentation_overview(image, label_map)[:, 4:8]
    np.testing.assert_array_equal(middle[:, :2], 105)
    np.testing.assert_array_equal(middle[:, 2:], 0)
    with pytest.raises(ValueError, match="integer labels"):
        segmentation_overview(image, label_map.astype(float))


def test_read_rgb_image(tmp_path):
    rgb = data.astronaut()[:10, :12]
    io.imsave(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_rgb_image(tmp_path / "rgb.png"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    io.imsave(tmp_path / "rgba.png", rgba)
    np.testing.assert_allclose(read_rgb_image(tmp_path / "rgba.png"), rgb / 255.0)
    grey = rgb[..., 0]
    io.imsave(tmp_path / "grey.png", grey)
    np.testing.assert_array_equal(read_rgb_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    alpha = np.arange(grey.size, dtype=np.uint8).reshape(grey.shape)
    io.imsave(tmp_path / "grey_alpha.png", np.dstack([grey, alpha]))
    on_white = (grey * (alpha / 255.0) + 255.0 * (1 - alpha / 255.0)) / 255.0
    np.testing.assert_allclose(
        read_rgb_image(tmp_path / "grey_alpha.png"), np.dstack([on_white] * 3), atol=1e-12
    )
    io.imsave(tmp_path / "stack.tif", np.stack([rgb, rgb]))
    with pytest.raises(ValueError, match=r"neither an RGB nor a greyscale image.*\(2, 10, 12, 3\)"):
        read_rgb_image(tmp_path / "stack.tif")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        read_rgb_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match="cannot read"):
        read_rgb_image(tmp_path / "missing.png")


def _regions(label_map):
    from skimage import measure

    return measure.label(label_map, connectivity=1, background=-1)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 3)),
    st.integers(0, 6),
)
def test_merge_small_regions_properties(label_map, min_size):
    from skseg.image import merge_small_regions

    merged = merge_small_regions(label_map, min_size)
    regions = _regions(label_map)
    sizes = np.bincount(regions.ravel())
    for region in np.unique(regions):
        inside = regions == region
        if sizes[region] >= min_size or min_size <= 1:
            # large regions keep their label
            np.testing.assert_array_equal(merged[inside], label_map[inside])
        else:
            # a small region takes one label: one that a pixel next to it had before or
            # after the merge (or keeps its own when it has no neighbour)
            (value,) = np.unique(merged[inside])
            ring = ndimage.binary_dilation(inside) & ~inside
            if ring.any():
                assert value in np.r_[label_map[ring], merged[ring]]
            else:
                assert value == label_map[inside][0]


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(0, 4)),
    st.sampled_from([np.int64, np.uint8, np.int16, np.bool_, "spread"]),
    st.integers(0, 8),
)
def test_merge_small_regions_against_reference(label_map, dtype, min_size):
    from skseg.image import merge_small_regions

    if dtype == "spread":  # negative labels, and a range wider than the pixel count
        label_map = label_map * 10**15 - 10**17
    else:
        label_map = (label_map % 2 if dtype is np.bool_ else label_map).astype(dtype)
    merged = merge_small_regions(label_map, min_size)
    assert merged.dtype == label_map.dtype
    np.testing.assert_array_equal(merged, merge_small_regions_reference(label_map, min_size))


def test_merge_small_regions_takes_the_longest_border_and_checks_input():
    from skseg.image import merge_small_regions

    label_map = np.array(
        [
            [0, 0, 0, 0],
            [0, 5, 5, 1],
            [1, 1, 1, 1],
        ]
    )
    # the 2-pixel region of 5 touches three pixels of 0 and three of 1: a tie goes to the
    # smaller label
    np.testing.assert_array_equal(merge_small_regions(label_map, 3)[1], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="2-D array of integer labels"):
        merge_small_regions(np.zeros((2, 2, 2), int), 3)
    with pytest.raises(ValueError, match="integer labels"):
        merge_small_regions(np.zeros((2, 2)), 3)
