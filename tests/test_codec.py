"""The codec end to end: decode(encode(x)) is palette[labels], sized by the formula."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import kmcodec
from kmcodec.errors import ImageInputError, ParameterError


@st.composite
def images(draw, max_side=12):
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    channels = draw(st.sampled_from([1, 3, 4]))
    colours = draw(st.integers(1, 40))
    palette = draw(hnp.arrays(np.uint8, (colours, channels)))
    index = draw(hnp.arrays(np.intp, (height, width), elements=st.integers(0, colours - 1)))
    return palette[index]


def nearest_labels(pixels, palette):
    d = ((pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(-1)
    return d.argmin(-1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), st.integers(1, 256))
def test_round_trip_is_palette_of_labels_and_sized_by_the_formula(pixels, k):
    data = kmcodec.encode(pixels, k, seed=0, n_init=1)
    image = kmcodec.decode(data)
    height, width, channels = pixels.shape
    assert (image.width, image.height, image.channels) == (width, height, channels)
    assert 1 <= image.k <= k
    assert image.labels.max() < image.k
    assert np.array_equal(image.to_array(), image.palette[image.labels])
    assert len(data) == kmcodec.size_formula(width, height, image.k, channels).total_bytes
    # the stored labels are the best for the stored palette
    best = ((pixels.astype(np.int64) - image.palette[nearest_labels(pixels, image.palette)]) ** 2).sum()
    assert ((pixels.astype(np.int64) - image.to_array()) ** 2).sum() == best


@settings(max_examples=100, deadline=None)
@given(images())
def test_image_with_at_most_k_colours_is_lossless_with_k_equal_to_its_colours(pixels):
    colours = len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0))
    image = kmcodec.decode(kmcodec.encode(pixels, colours + 3, seed=0, n_init=1))
    assert image.k == colours
    assert np.array_equal(image.to_array(), pixels)


@pytest.fixture(scope="module")
def many_colours():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)


@pytest.mark.parametrize("k", range(1, 257))
def test_every_k_from_1_to_256(many_colours, k):
    data = kmcodec.encode(many_colours, k, seed=1, n_init=1)
    image = kmcodec.decode(data)
    assert image.k == k  # 400 distinct colours: every requested entry is used
    assert image.bits_per_pixel == kmcodec.bits_for_k(k)
    assert len(data) == kmcodec.size_formula(20, 20, k).total_bytes


def test_same_seed_gives_identical_bytes(many_colours):
    assert kmcodec.encode(many_colours, 7, seed=3) == kmcodec.encode(many_colours, 7, seed=3)


def test_larger_k_than_256_uses_16_bit_labels():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)  # 900 colours, fewer than k
    image = kmcodec.decode(kmcodec.encode(pixels, 1000, n_init=1))
    assert image.labels.dtype == np.uint16
    assert image.k == len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert np.array_equal(image.to_array(), pixels)


def test_accepts_pillow_images_and_converts_modes():
    rgb = Image.new("RGB", (5, 4), (10, 20, 30))
    assert kmcodec.decode(kmcodec.encode(rgb, 4)).to_array().tolist() == np.asarray(rgb).tolist()
    grey = Image.new("L", (5, 4), 77)
    assert kmcodec.decode(kmcodec.encode(grey, 4)).channels == 1
    palette = rgb.convert("P")
    assert kmcodec.decode(kmcodec.encode(palette, 4)).channels == 3


@pytest.mark.parametrize("k", [0, -3, 65537, 2.5, "16", True])
def test_rejects_k_out_of_range_or_not_an_integer(k):
    with pytest.raises(ParameterError, match="k must"):
        kmcodec.encode(np.zeros((2, 2, 3), np.uint8), k)


@pytest.mark.parametrize(
    "array",
    [np.full((2, 2, 3), np.nan, np.float32), np.zeros((2, 2, 2), np.uint8), np.zeros((0, 3, 3), np.uint8), np.zeros(5, np.uint8)],
)
def test_rejects_arrays_that_are_not_images(array):
    with pytest.raises(ImageInputError):
        kmcodec.encode(array, 4)


def test_iter_rows_streams_the_same_pixels(many_colours):
    image = kmcodec.decode(kmcodec.encode(many_colours, 13, n_init=1))
    assert np.array_equal(np.concatenate(list(image.iter_rows(3))), image.to_array())


def test_mask_selects_one_cluster(many_colours):
    image = kmcodec.decode(kmcodec.encode(many_colours, 5, n_init=1))
    masks = [image.mask(i) for i in range(image.k)]
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones((20, 20), int))
    with pytest.raises(ParameterError):
        image.mask(image.k)
