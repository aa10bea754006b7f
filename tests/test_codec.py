"""The codec end to end: decode(encode(x)) is palette[labels], sized by the formula."""

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import kmcodec
from kmcodec import bitpack, codec, layout
from kmcodec.errors import ImageInputError, ParameterError


@st.composite
def images(draw, max_side=24):
    """Images of many colours more often than few: noise, gradients, blocks of a random palette, or a small palette.

    Sides are mostly 6 or more, so k-means runs in most round trips (see the
    events with --hypothesis-show-statistics); 1-3 keeps thin images in play.
    """
    sides = st.sampled_from([1, 2, 3, *range(6, max_side + 1)])
    height = draw(sides)
    width = draw(sides)
    channels = draw(st.sampled_from([1, 3, 4]))
    kind = draw(st.sampled_from(["noise", "gradient", "blocks", "palette"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        pixels = rng.integers(0, 256, (height, width, channels))
    elif kind == "gradient":
        yy, xx = np.mgrid[0:height, 0:width]
        slopes = rng.uniform(-40, 40, (2, channels))
        pixels = rng.uniform(0, 255, channels) + yy[..., None] * slopes[0] + xx[..., None] * slopes[1]
        pixels = pixels + rng.normal(0, draw(st.sampled_from([0, 2, 8])), pixels.shape)
    elif kind == "blocks":
        colours = rng.integers(0, 256, (rng.integers(2, 65), channels))
        block = draw(st.integers(1, 4))
        cells = rng.integers(0, len(colours), (-(-height // block), -(-width // block)))
        pixels = colours[np.kron(cells, np.ones((block, block), int))[:height, :width]]
    else:
        colours = draw(hnp.arrays(np.uint8, (draw(st.integers(1, 40)), channels)))
        pixels = colours[draw(hnp.arrays(np.intp, (height, width), elements=st.integers(0, len(colours) - 1)))]
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    event(f"{kind}: {'over' if distinct_colours(pixels) > 16 else 'at most'} 16 colours")
    return pixels


def distinct_colours(pixels):
    return len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0))


def spec_file_size(width, height, k, channels):
    """spec §6, written out here: 28 + C*K + ceil(W*H*b / 8) bytes, b = ceil(log2 K)."""
    b = math.ceil(math.log2(k)) if k > 1 else 0
    return 28 + channels * k + math.ceil(width * height * b / 8)


def nearest_labels(pixels, palette):
    d = ((pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(-1)
    return d.argmin(-1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), st.data())
def test_round_trip_is_palette_of_labels_and_sized_by_the_formula(pixels, data):
    colours = distinct_colours(pixels)
    k = data.draw(st.one_of(st.integers(1, max(1, colours - 1)), st.integers(1, 256)), label="k")
    event("k-means ran" if colours > k else "image has at most k colours")
    encoded = kmcodec.encode(pixels, k, seed=0, n_init=1)
    image = kmcodec.decode(encoded)
    height, width, channels = pixels.shape
    assert (image.width, image.height, image.channels) == (width, height, channels)
    assert 1 <= image.k <= k
    assert image.labels.max() < image.k
    assert np.array_equal(image.to_array(), image.palette[image.labels])
    assert len(encoded) == spec_file_size(width, height, image.k, channels)
    # the stored labels are the best for the stored palette
    best = ((pixels.astype(np.int64) - image.palette[nearest_labels(pixels, image.palette)]) ** 2).sum()
    assert ((pixels.astype(np.int64) - image.to_array()) ** 2).sum() == best


@settings(max_examples=100, deadline=None)
@given(images())
def test_image_with_at_most_k_colours_is_lossless_with_k_equal_to_its_colours(pixels):
    colours = distinct_colours(pixels)
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
    assert len(data) == spec_file_size(20, 20, k, 3)


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


# --------------------------------------------------------------------------- large payloads
# decode switches paths on payload size: a two-byte table from codec.PAIR_MIN_BYTES
# of labels, a threaded gather from two codec.GATHER_CHUNK items, label checks in
# chunks of bitpack.CHUNK pixels. Lowering the thresholds makes small files take
# the large-file paths; one real payload over each threshold checks the defaults.


def random_file(k, channels, width, height, seed=0):
    """A file of random labels, and the pixels it must decode to (computed without the decoder)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(1, 256, (k, channels), dtype=np.uint8)  # no zero entry: unwritten output shows
    labels = rng.integers(0, k, (height, width)).astype(bitpack.label_dtype(k))
    return kmcodec.pack(palette, labels), palette[labels]


@pytest.fixture
def large_paths(monkeypatch):
    """Every large-file path at small sizes, with threads even on one CPU."""
    monkeypatch.setattr(codec, "PAIR_MIN_BYTES", 2)
    monkeypatch.setattr(codec, "GATHER_CHUNK", 64)
    monkeypatch.setattr(codec, "GATHER_THREADS", 3)
    monkeypatch.setattr(bitpack, "CHUNK", 256)


# b = 1, 2, 3, 4, 5, 8, 8, 9, 12, 16; odd payload lengths leave a byte after the pairs.
LARGE_K = [2, 3, 7, 16, 17, 200, 256, 300, 3000, 65536]


@pytest.mark.parametrize("k", LARGE_K)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_large_file_paths_decode_every_pixel_to_its_palette_entry(large_paths, k, channels):
    for width, height in [(61, 37), (40, 41)]:
        data, expected = random_file(k, channels, width, height, seed=k + width)
        image = kmcodec.decode(data)
        assert np.array_equal(image.to_array(), expected)
        assert np.array_equal(np.concatenate(list(image.iter_rows(5))), expected)


def test_real_payload_over_the_pair_threshold_decodes_every_pixel():
    side = math.isqrt(codec.PAIR_MIN_BYTES) + 1  # b = 8: one byte per pixel
    data, expected = random_file(200, 3, side, side + 1)
    assert len(data) - layout.OVERHEAD - 600 >= codec.PAIR_MIN_BYTES > 2 * codec.GATHER_CHUNK
    assert np.array_equal(kmcodec.decode(data).to_array(), expected)


def test_decode_copies_a_mutable_buffer():
    data, expected = random_file(5, 3, 9, 7)
    for buffer in (bytearray(data), memoryview(bytearray(data))):
        image = kmcodec.decode(buffer)
        buffer[-20:-4] = bytes(16)  # the caller reuses its buffer
        assert np.array_equal(image.to_array(), expected)


def test_threads_decoding_one_large_image_match_a_serial_run(large_paths):
    data, expected = random_file(7, 3, 300, 200)
    image = kmcodec.decode(data)
    barrier = threading.Barrier(4)

    def decode_again(_):
        barrier.wait(timeout=10)
        return image.to_array(), kmcodec.decode(data).to_array(), np.concatenate(list(image.iter_rows(9)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for arrays in pool.map(decode_again, range(8)):
            for array in arrays:
                assert np.array_equal(array, expected)


# --------------------------------------------------------------------------- pack's own rules


@pytest.mark.parametrize(("k", "bad"), [(3, 3), (5, 7), (200, 255), (300, 300), (1, 1)])
def test_pack_rejects_a_label_not_below_k(k, bad):
    labels = np.zeros((2, 3), bitpack.label_dtype(max(k, bad + 1)))
    labels[1, 2] = bad
    with pytest.raises(ImageInputError, match=f"labels must lie in 0..{k - 1}"):
        kmcodec.pack(np.zeros((k, 3), np.uint8), labels)


def test_pack_rejects_a_negative_label():
    with pytest.raises(ImageInputError, match="labels must lie in"):
        kmcodec.pack(np.zeros((4, 3), np.uint8), np.array([[0, -1]]))
