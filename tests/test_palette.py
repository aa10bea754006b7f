"""The palette stage (kmcodec/palette.py): k-means on the colour histogram, exact labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmcodec._histogram import pack_keys
from kmcodec import _nearest
from kmcodec._nearest import _nearest_brute, _nearest_grid, nearest_few
from kmcodec.errors import ImageInputError, ParameterError
from kmcodec.palette import (
    ImageHistogram,
    PaletteFit,
    assign_labels,
    colour_histogram,
    fit_palette,
    kmeans_plusplus,
    lloyd,
    sort_palette,
)

# --------------------------------------------------------------------------- helpers


def brute_nearest(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: int64 distances to every entry, first minimum wins."""
    x = pixels.reshape(-1, palette.shape[1]).astype(np.int64)
    d = ((x[:, None, :] - palette[None, :, :].astype(np.int64)) ** 2).sum(axis=2)
    return d.argmin(axis=1), d.min(axis=1)


def pixel_cost(pixels: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> int:
    x = pixels.reshape(-1, palette.shape[1]).astype(np.int64)
    return int(((x - palette[labels.reshape(-1)].astype(np.int64)) ** 2).sum())


def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients, a few soft blobs and grain: a synthetic photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(a * xx / w * 6 + b * yy / h * 6 + p * 3)
    for _ in range(6):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.1, 0.3) * min(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 3, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def check_fit(pixels: np.ndarray, fit: PaletteFit, k: int) -> None:
    """Every rule of PaletteFit, checked against brute force."""
    c = pixels.shape[2]
    assert fit.palette.dtype == np.uint8 and fit.palette.shape[1] == c
    assert 1 <= fit.k <= k
    assert fit.labels.shape == pixels.shape[:2]
    assert fit.labels.dtype == (np.uint8 if fit.k <= 256 else np.uint16)
    assert np.unique(pack_keys(fit.palette)).size == fit.k, "entries not distinct"
    assert np.array_equal(np.unique(fit.labels), np.arange(fit.k)), "an entry is unused"
    assert np.array_equal(fit.palette, sort_palette(fit.palette)), "not in PALETTE_ORDER"
    ref, _ = brute_nearest(pixels, fit.palette)
    assert np.array_equal(fit.labels.reshape(-1), ref), "labels not the exact nearest"
    assert fit.cost == pixel_cost(pixels, fit.palette, fit.labels)
    assert fit.mse == pytest.approx(fit.cost / pixels.size)


# --------------------------------------------------------------------------- histogram


def test_histogram_counts_every_pixel_once():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4, (30, 20, 3), dtype=np.uint8) * 60
    hist = colour_histogram(img)
    keys, counts = np.unique(pack_keys(img), return_counts=True)
    assert np.array_equal(hist.keys, keys)
    assert np.array_equal(hist.counts, counts)
    assert np.array_equal(hist.weights, counts)
    assert not hist.is_reduced


def test_histogram_cost_of_centres_equals_pixel_cost():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 8, (40, 30, 3), dtype=np.uint8) * 30
    palette = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    hist = colour_histogram(img)
    labels, sq = brute_nearest(hist.colours, palette)
    from_hist = int(hist.counts @ sq)
    assert from_hist == pixel_cost(img, palette, brute_nearest(img, palette)[0])


def test_weighted_lloyd_step_equals_lloyd_step_on_pixels():
    img = photo_like(40, 50, seed=2)
    hist = colour_histogram(img, max_points=None)
    start = img.reshape(-1, 3)[[0, 500, 1000, 1500, 1999]].astype(np.float64)
    centres, _, _, n_iter = lloyd(hist.points, hist.weights, hist.sums, start, max_iter=1, tol=0.0)
    x = img.reshape(-1, 3).astype(np.float64)
    lab = ((x[:, None, :] - start[None]) ** 2).sum(axis=2).argmin(axis=1)
    expected = np.stack([x[lab == j].mean(axis=0) for j in range(start.shape[0])])
    assert n_iter == 1
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)


def test_fit_from_histogram_equals_fit_from_pixels():
    img = photo_like(30, 40, seed=3)
    hist = colour_histogram(img)
    for k in (2, 5, 9):
        a, b = fit_palette(img, k, seed=4), fit_palette(hist, k, seed=4)
        assert np.array_equal(a.palette, b.palette)
        assert np.array_equal(a.labels, b.labels)
        assert a.cost == b.cost


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [8, 32, 64])
def test_reduction_costs_under_one_percent(seed, k):
    # k-means lands in different local optima from different inputs, so the
    # rule is one-sided: clustering the 6-bit grid cells instead of the exact
    # colours may not make the result more than 1% worse.
    img = photo_like(150, 200, seed=seed)
    exact = colour_histogram(img, max_points=None)
    reduced = colour_histogram(img, max_points=exact.n_colours - 1)
    assert reduced.bits == 6 and reduced.points.shape[0] < exact.n_colours
    a = fit_palette(exact, k, seed=seed)
    b = fit_palette(reduced, k, seed=seed)
    check_fit(img, b, k)
    assert b.cost < 1.01 * a.cost


def test_reduced_histogram_keeps_exact_labels():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    hist = colour_histogram(img, max_points=200)
    assert hist.is_reduced
    check_fit(img, fit_palette(hist, 40, seed=0), 40)


def test_uncounted_colours_still_get_exact_labels_and_cost(monkeypatch):
    # Millions of distinct colours are not counted (memory); scaled down here.
    import kmcodec._histogram

    monkeypatch.setattr(kmcodec._histogram, "MAX_COUNTED", 100)
    rng = np.random.default_rng(15)
    img = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    hist = colour_histogram(img, max_points=300)
    assert hist.counts is None and hist.is_reduced
    for k in (1, 7, 64, 300):
        check_fit(img, fit_palette(hist, k, seed=2), k)


# --------------------------------------------------------------------------- fit rules


def test_few_colours_give_exactly_those_colours_and_zero_cost():
    rng = np.random.default_rng(6)
    colours = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    img = colours[rng.integers(0, 5, (20, 25))]
    for k in (5, 6, 256, 65536):
        fit = fit_palette(img, k)
        assert fit.cost == 0 and fit.mse == 0
        assert np.array_equal(fit.palette, sort_palette(colours))
        assert np.array_equal(fit.palette[fit.labels], img)


def test_palette_is_sorted_by_luma_then_channels():
    palette = np.array([[0, 0, 255], [255, 0, 0], [0, 0, 0], [0, 10, 0], [1, 0, 0]], np.uint8)
    expected = np.array([[0, 0, 0], [1, 0, 0], [0, 10, 0], [0, 0, 255], [255, 0, 0]], np.uint8)
    assert np.array_equal(sort_palette(palette), expected)


@pytest.mark.parametrize("k", [1, 2, 16, 100])
def test_fit_obeys_every_rule_on_a_photo(k):
    img = photo_like(48, 64, seed=7)
    check_fit(img, fit_palette(img, k, seed=1), k)


def test_k_one_is_the_rounded_mean():
    img = photo_like(20, 30, seed=8)
    fit = fit_palette(img, 1)
    assert fit.k == 1
    assert np.array_equal(fit.palette[0], np.rint(img.reshape(-1, 3).mean(axis=0)).astype(np.uint8))
    assert not fit.labels.any()
    check_fit(img, fit, 1)


def test_same_seed_gives_identical_output():
    img = photo_like(60, 80, seed=9)
    a = fit_palette(img, 12, seed=123)
    b = fit_palette(img, 12, seed=123)
    assert a.palette.tobytes() == b.palette.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.cost == b.cost


def test_restart_with_the_lowest_coarse_cost_is_refined(monkeypatch):
    """Of n_init restarts on the coarse set, the one of least SSE there goes on to the full set."""
    from kmcodec import palette

    calls = []

    def recording_lloyd(points, weights, sums, centres, **kwargs):
        result = real_lloyd(points, weights, sums, centres, **kwargs)
        calls.append((points.shape[0], centres, result))
        return result

    real_lloyd = palette.lloyd
    monkeypatch.setattr(palette, "lloyd", recording_lloyd)
    monkeypatch.setattr(palette, "MAX_REFINE", 1)
    img = photo_like(60, 80, seed=10)
    n_init = 6
    check_fit(img, fit_palette(img, 10, seed=0, n_init=n_init), 10)
    coarse, refine = calls[:n_init], calls[n_init]
    assert refine[0] > coarse[0][0], "no coarse set: nothing was ranked"
    inertias = [result[2] for _, _, result in coarse]
    assert len(set(inertias)) > 1, "every restart cost the same: the ranking proves nothing"
    best = coarse[int(np.argmin(inertias))][2][0]
    assert np.array_equal(refine[1], best)


def test_many_entries_use_uint16_labels():
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    fit = fit_palette(img, 1000, n_init=1, max_iter=5)
    assert fit.k > 256 and fit.labels.dtype == np.uint16
    check_fit(img, fit, 1000)


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_rgba_work(channels):
    rng = np.random.default_rng(12)
    img = photo_like(30, 40, seed=12)
    if channels == 1:
        img = img[..., :1]
    else:
        alpha = rng.integers(0, 4, img.shape[:2] + (1,), dtype=np.uint8) * 85
        img = np.concatenate([img, alpha], axis=2)
    for k in (1, 3, 16):
        check_fit(img, fit_palette(img, k), k)


def test_grey_accepts_two_dimensional_pixels():
    img = photo_like(10, 12, seed=13)[..., 0]
    fit = fit_palette(img, 4)
    assert fit.palette.shape[1] == 1 and fit.labels.shape == img.shape


@settings(max_examples=60, deadline=None)
@given(
    channels=st.sampled_from([1, 3, 4]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    levels=st.integers(2, 256),
    k=st.integers(1, 256),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_k_gives_valid_exact_fit(channels, h, w, levels, k, seed):
    rng = np.random.default_rng(seed)
    # Few levels per channel make ties between equidistant entries common.
    img = (rng.integers(0, levels, (h, w, channels)) * (255 // (levels - 1))).astype(np.uint8)
    fit = fit_palette(img, k, seed=seed % 1000, n_init=2)
    assert fit.labels.max() < fit.k <= k
    check_fit(img, fit, k)


# --------------------------------------------------------------------------- assign_labels


def test_assign_labels_breaks_ties_to_the_lowest_index():
    palette = np.array([[10, 0, 0], [0, 0, 0], [20, 0, 0], [10, 0, 0]], np.uint8)
    img = np.array([[[5, 0, 0], [15, 0, 0], [10, 0, 0], [0, 0, 0]]], np.uint8)
    assert assign_labels(img, palette).tolist() == [[0, 0, 0, 1]]


@pytest.mark.parametrize("k", [3, 40, 300])
def test_assign_labels_is_the_exact_nearest(k):
    rng = np.random.default_rng(k)
    img = (rng.integers(0, 16, (50, 40, 3)) * 17).astype(np.uint8)
    palette = (rng.integers(0, 16, (k, 3)) * 17).astype(np.uint8)
    labels = assign_labels(img, palette)
    assert labels.dtype == (np.uint8 if k <= 256 else np.uint16)
    assert np.array_equal(labels.reshape(-1), brute_nearest(img, palette)[0])


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("k", [32, 256, 1500])
def test_grid_search_matches_brute_force(k, dense):
    rng = np.random.default_rng(k)
    if dense:  # every colour of a sub-cube: the whole-cell lookup-table path
        colours = np.indices((40, 48, 32)).reshape(3, -1).T.astype(np.uint8) + np.uint8(100)
    else:
        colours = rng.integers(0, 256, (60000, 3), dtype=np.uint8)
        colours[::2] &= 0xF0  # clustered half: many colours share cells and ties
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    palette[1::4] = palette[::4][: palette[1::4].shape[0]]  # duplicates: exact ties
    palette[2::4] &= 0xF0
    lab, sq = _nearest_grid(colours, palette)
    ref_lab, ref_sq = _nearest_brute(colours, palette)
    assert np.array_equal(lab, ref_lab)
    assert np.array_equal(sq, ref_sq)
    assert np.array_equal(lab[:3000], brute_nearest(colours[:3000], palette)[0])



@pytest.mark.parametrize("channels", [1, 3, 4])
def test_nearest_few_is_the_exact_nearest_ties_to_lowest(channels, monkeypatch):
    """The decoder's search of mean colours (spec §11.13), here in blocks of a few rows."""
    monkeypatch.setattr(_nearest, "FEW_BLOCK", 256 * 300)
    rng = np.random.default_rng(channels)
    palette = rng.integers(0, 256, (256, channels), dtype=np.uint8)
    palette[1::4] = palette[::4]  # duplicates: exact ties
    colours = rng.integers(0, 256, (3000, channels), dtype=np.uint8)
    colours[:64] = palette[1::4]  # on a duplicated entry: the lower index wins
    assert np.array_equal(nearest_few(colours, palette), brute_nearest(colours, palette)[0])


# --------------------------------------------------------------------------- seeding


def test_kmeans_plusplus_returns_k_distinct_points_of_the_data():
    rng = np.random.default_rng(14)
    pts = rng.integers(0, 256, (500, 3)).astype(np.float64)
    pts[250:] = pts[:250]  # duplicates must not be chosen twice
    centres = kmeans_plusplus(pts, 40, seed=3)
    assert centres.shape == (40, 3)
    assert len({tuple(r) for r in centres}) == 40
    data = {tuple(r) for r in pts}
    assert all(tuple(r) in data for r in centres)


def test_kmeans_plusplus_never_picks_zero_weight_points():
    pts = np.arange(20, dtype=np.float64).reshape(10, 2)
    weights = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=np.float64)
    centres = kmeans_plusplus(pts, 5, weights=weights, seed=1)
    assert sorted(map(tuple, centres)) == [tuple(p) for p in pts[::2]]


def test_kmeans_plusplus_is_deterministic_and_rejects_k_above_distinct():
    pts = np.repeat(np.eye(3) * 100, 4, axis=0)
    assert np.array_equal(kmeans_plusplus(pts, 3, seed=5), kmeans_plusplus(pts, 3, seed=5))
    with pytest.raises(ParameterError):
        kmeans_plusplus(pts, 4)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("k", [0, -1, 65537, 2.5, True, "16"])
def test_rejects_k_outside_1_to_65536(k):
    with pytest.raises(ParameterError, match="k"):
        fit_palette(photo_like(4, 4, 0), k)


@pytest.mark.parametrize("kwargs", [{"n_init": 0}, {"max_iter": 0}, {"tol": -1.0}])
def test_rejects_bad_n_init_max_iter_tol(kwargs):
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        fit_palette(photo_like(4, 4, 0), 2, **kwargs)


def test_parameter_error_is_a_value_error():
    with pytest.raises(ValueError):
        fit_palette(photo_like(4, 4, 0), 0)


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8), [[1]]],
)
def test_rejects_images_that_are_not_hxwxc_uint8(pixels):
    with pytest.raises(ImageInputError):
        fit_palette(pixels, 2)


def test_assign_labels_rejects_a_palette_of_the_wrong_shape():
    with pytest.raises(ParameterError, match="palette"):
        assign_labels(np.zeros((2, 2, 3), np.uint8), np.zeros((4, 4), np.uint8))


def test_colour_histogram_is_an_image_histogram():
    assert isinstance(colour_histogram(photo_like(5, 5, 0)), ImageHistogram)


# --------------------------------------------------------------------------- quality at large k


def rounded_lloyd_step_cost(pixels: np.ndarray, palette: np.ndarray) -> tuple[int, int]:
    """(cost of palette, cost after one Lloyd step with rounded centroids), by brute force."""
    labels, sq = brute_nearest(pixels, palette)
    x = pixels.reshape(-1, palette.shape[1]).astype(np.int64)
    counts = np.bincount(labels, minlength=palette.shape[0])
    sums = np.stack([np.bincount(labels, weights=x[:, c], minlength=palette.shape[0]) for c in range(x.shape[1])], 1)
    used = counts > 0
    stepped = np.clip(np.rint(sums[used] / counts[used, None]), 0, 255).astype(np.uint8)
    return int(sq.sum()), int(brute_nearest(pixels, stepped)[1].sum())


def fixture_crop(name: str, offset: int) -> np.ndarray:
    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "fixtures" / f"{name}.png"
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[offset : offset + 48, offset : offset + 64])


@pytest.mark.parametrize(("name", "offset", "k"), [("astronaut", 0, 64), ("chelsea", 8, 100), ("astronaut", 8, 256)])
def test_large_k_palette_is_a_fixed_point_of_rounded_lloyd(name, offset, k):
    """At k >= 64 the encoder ends with Lloyd steps on rounded entries: one more step
    (computed here by brute force) must not lower the exact cost by more than 0.05%.
    Without them it falls by 0.1-0.5% on these crops. (The steps are capped, so a
    few crops keep a sliver to gain: chelsea-8-100 0.03%.)"""
    img = fixture_crop(name, offset)
    fit = fit_palette(img, k)
    cost, after_step = rounded_lloyd_step_cost(img, fit.palette)
    assert cost == fit.cost
    assert after_step >= cost * 0.9995


# --------------------------------------------------------------------------- unused entries


def test_unused_entries_are_dropped_from_the_palette():
    from kmcodec.palette import _labeller

    img = np.array([[[0], [10], [10], [200]]], np.uint8)
    hist = colour_histogram(img)
    fit = _labeller(hist, np.array([[0], [10], [100], [200], [255]], np.uint8)).fit(img)
    assert fit.palette.ravel().tolist() == [0, 10, 200]
    assert fit.labels.tolist() == [[0, 1, 1, 2]]


def test_unused_entries_are_dropped_when_colours_are_not_counted(monkeypatch):
    import kmcodec._histogram
    from kmcodec.palette import _labeller

    monkeypatch.setattr(kmcodec._histogram, "MAX_COUNTED", 100)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 128, (30, 40, 3), dtype=np.uint8)  # every colour in the lower half of the cube
    hist = colour_histogram(img, max_points=300)
    assert hist.counts is None
    palette = np.array([[20, 20, 20], [100, 100, 100], [250, 250, 250], [255, 0, 255]], np.uint8)
    fit = _labeller(hist, palette).fit(img)
    assert fit.palette.tolist() == [[20, 20, 20], [100, 100, 100]]
    check_fit(img, fit, 4)


def test_fit_after_one_lloyd_step_keeps_only_used_entries():
    """A grey image, one Lloyd step: with the old refinement one of 57 rounded centres was no
    pixel's nearest entry and had to be dropped (the swap moves now use it); either way every
    entry returned is some pixel's nearest (check_fit). The drop itself is tested on _labeller above."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (172, 1), dtype=np.uint8)
    img = values[rng.integers(0, 172, (21, 68))]
    fit = fit_palette(img, 57, n_init=1, max_iter=1)
    check_fit(img, fit, 57)


# --------------------------------------------------------------------------- defaults


def test_every_entry_point_takes_the_k_means_defaults_of_the_palette_module():
    import dataclasses
    import inspect

    from kmcodec import banded, batch, choose_k, cli, codec, palette, shared

    documented = {"seed": 0, "n_init": 4, "max_iter": 100, "tol": 1e-4}  # fit_palette's docstring, the CLI help
    assert {name: getattr(palette, f"DEFAULT_{name.upper()}") for name in documented} == documented
    functions = (palette.fit_palette, palette.fit_labeller, codec.encode, codec.encode_detailed,
                 banded.write_banded, shared.fit_histogram, shared.fit_shared_palette)
    taken = {f.__name__: {n: p.default for n, p in inspect.signature(f).parameters.items()} for f in functions}
    taken |= {c.__name__: {f.name: f.default for f in dataclasses.fields(c)} for c in (choose_k.FitSettings, batch.EncodeOptions)}
    for command in (["encode", "x.png", "-k", "2"], ["sweep", "x.png"], ["palette", "x.png", "-k", "2", "-o", "p.json"]):
        taken[f"kmq {command[0]}"] = vars(cli.build_parser().parse_args(command))
    for where, defaults in taken.items():
        shared_names = documented.keys() & defaults.keys()
        assert len(shared_names) >= 3 and {n: defaults[n] for n in shared_names} == {n: documented[n] for n in shared_names}, where
