"""Shared palettes: the mergeable histogram, the fit on it, and encoding against a given palette."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import kmcodec
from kmcodec import ColourHistogram, fit_histogram, fit_shared_palette
from kmcodec import shared
from kmcodec.palette import fit_palette


def images(n=6, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        # Few levels per channel, so colours repeat within and across images.
        levels = rng.integers(0, 8, size=(10 + i, 12, channels)) * 32 + i % 2
        out.append(levels.astype(np.uint8))
    return out


SET = images()
HISTS = [ColourHistogram.from_image(x) for x in SET]


def test_merge_is_the_histogram_of_the_pooled_pixels():
    pooled = np.concatenate([x.reshape(-1, 1, 3) for x in SET])
    assert sum(HISTS) == ColourHistogram.from_image(pooled)
    assert sum(HISTS).n_pixels == sum(x.shape[0] * x.shape[1] for x in SET)


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(len(SET))), st.lists(st.integers(1, len(SET) - 1), max_size=4))
def test_any_split_and_order_gives_the_same_palette(order, cuts):
    cuts = sorted(set(cuts))
    parts = [list(order[a:b]) for a, b in zip([0] + cuts, cuts + [len(order)])]
    # Merge each part in its own order, then the parts right to left.
    merged = [ColourHistogram.merge([HISTS[i] for i in part]) for part in parts]
    total = merged[-1]
    for h in reversed(merged[:-1]):
        total = h + total
    assert total == sum(HISTS)
    assert fit_histogram(total, 5).palette.tobytes() == fit_histogram(sum(HISTS), 5).palette.tobytes()


def test_histogram_pickles():
    h = sum(HISTS)
    again = pickle.loads(pickle.dumps(h))
    assert again == h and again.channels == 3


def test_fit_cost_is_the_total_cost_over_the_images():
    fit = fit_histogram(sum(HISTS), 6)
    total = sum(kmcodec.encode_detailed(x, palette=fit.palette).fit.cost for x in SET)
    assert fit.cost == total > 0


def test_shared_fit_equals_a_fit_on_the_pooled_pixels():
    pooled = np.concatenate([x.reshape(-1, 1, 3) for x in SET])
    assert fit_shared_palette(SET, 7).tobytes() == fit_palette(pooled, 7).palette.tobytes()


def test_fit_shared_palette_consumes_an_iterable_once(monkeypatch):
    monkeypatch.setattr(shared, "MIN_MERGE_COLOURS", 50)  # merge the buffer several times
    seen = []

    def one_at_a_time():
        for x in SET:
            seen.append(1)
            yield x

    palette = fit_shared_palette(one_at_a_time(), 5, seed=3)
    assert len(seen) == len(SET)
    assert palette.tobytes() == fit_histogram(sum(HISTS), 5, seed=3).palette.tobytes()


def test_fit_shared_palette_takes_pillow_images_and_paths(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(SET[0]).save(path)
    got = fit_shared_palette([path, Image.fromarray(SET[1]), SET[2]], 4)
    assert got.tobytes() == fit_shared_palette(SET[:3], 4).tobytes()


def test_grey_and_rgb_merge_by_widening_grey():
    grey = images(2, seed=1, channels=1)
    h = ColourHistogram.from_image(grey[0]) + HISTS[0]
    widened = ColourHistogram.from_image(np.repeat(grey[0], 3, axis=2)) + HISTS[0]
    assert h == widened and h.channels == 3


@pytest.mark.parametrize(
    "narrow",
    [lambda: shared.widen_pixels(SET[0], 1), lambda: HISTS[0].widened(1)],
    ids=["pixels", "histogram"],
)
def test_rejects_a_channel_change_that_is_not_a_widening(narrow):
    with pytest.raises(kmcodec.ParameterError, match=r"^cannot widen 3 \(RGB\) channels to 1 \(grey\)$"):
        narrow()


def test_empty_set_is_refused():
    with pytest.raises(kmcodec.ImageInputError, match="none given"):
        fit_shared_palette([], 4)


# ---------------------------------------------------------------- a given palette

PALETTE = np.array([[0, 0, 0], [250, 10, 10], [10, 250, 10], [0, 0, 0], [255, 255, 255], [9, 9, 200]], np.uint8)


def brute_labels(pixels, palette):
    d = ((pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(axis=3)
    return np.argmin(d, axis=2)  # first minimum: ties to the lowest index


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_palette_labels_are_the_exact_nearest_entries(seed, k):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    palette[-1] = palette[0]  # a repeated entry: the lower index wins
    img = kmcodec.decode(kmcodec.encode(pixels, palette=palette))
    assert np.array_equal(img.labels, brute_labels(pixels, palette))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_palette_labels_are_exact_for_every_channel_count_and_leave_the_palette_writable(channels):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, (9, 7, channels), dtype=np.uint8)
    palette = rng.integers(0, 256, (5, channels), dtype=np.uint8)
    img = kmcodec.decode(kmcodec.encode(pixels, palette=palette))
    assert np.array_equal(img.labels, brute_labels(pixels, palette))
    palette[0] = 0  # the caller's array is still theirs to change


def test_unused_and_repeated_entries_are_kept():
    pixels = np.full((3, 4, 3), 240, np.uint8)
    img = kmcodec.decode(kmcodec.encode(pixels, palette=PALETTE))
    assert img.k == len(PALETTE)
    assert np.array_equal(img.palette, PALETTE)
    assert (img.labels == 4).all()


def test_write_and_pillow_save_take_a_palette(tmp_path):
    x = SET[0]
    expected = kmcodec.encode(x, palette=PALETTE)
    assert kmcodec.write(tmp_path / "a.kmq", x, palette=PALETTE) == expected
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="KMQ", palette=PALETTE)
    assert buffer.getvalue() == expected


def test_grey_image_is_widened_to_an_rgb_palette():
    grey = images(1, channels=1)[0]
    got = kmcodec.decode(kmcodec.encode(grey, palette=PALETTE))
    want = brute_labels(np.repeat(grey, 3, axis=2), PALETTE)
    assert np.array_equal(got.labels, want)


def test_rgba_image_against_rgb_palette_names_both_channel_counts():
    rgba = images(1, channels=4)[0]
    with pytest.raises(kmcodec.ParameterError, match=r"3 \(RGB\) channels but the image has 4 \(RGBA\)"):
        kmcodec.encode(rgba, palette=PALETTE)


@pytest.mark.parametrize(
    "palette, message",
    [
        (np.zeros((0, 3), np.uint8), "0 entries, allowed 1..65536"),
        (np.zeros((65537, 3), np.uint8), "65537 entries, allowed 1..65536"),
        (np.array([[0, 300, 0]]), "entry 0 channel 1 is 300, allowed 0..255"),
        (np.zeros((4, 2), np.uint8), r"shape \(4, 2\)"),
    ],
)
def test_bad_palettes_are_refused(palette, message):
    with pytest.raises(kmcodec.ParameterError, match=message):
        kmcodec.encode(SET[0], palette=palette)


def test_k_and_palette_together_are_refused():
    with pytest.raises(kmcodec.ParameterError, match="not both"):
        kmcodec.encode(SET[0], 4, palette=PALETTE)
