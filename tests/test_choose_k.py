"""Choosing K: fixed, PSNR target, byte budget, elbow; searches reuse one histogram."""

import math

import numpy as np
import pytest

import kmcodec
from kmcodec import choose_k, layout
from kmcodec.choose_k import FitSettings, choose, elbow, largest_k_for_bytes
from kmcodec.codec import psnr
from kmcodec.errors import ParameterError
from kmcodec.palette import colour_histogram, fit_palette


def clusters(count=5, width=64, height=48, noise=6.0, seed=1):
    """`count` well-separated colours plus Gaussian noise: the cost curve bends at k = count."""
    rng = np.random.default_rng(seed)
    centres = np.array([[20, 30, 200], [220, 40, 40], [40, 200, 60], [240, 240, 240], [10, 10, 10], [200, 200, 30]])[:count]
    labels = rng.integers(0, count, (height, width))
    return np.clip(centres[labels] + rng.normal(0, noise, (height, width, 3)), 0, 255).astype(np.uint8)


def few_colours(count):
    rng = np.random.default_rng(count)
    palette = rng.choice(256, (count, 3), replace=False).astype(np.uint8)
    return palette[np.arange(48 * 64).reshape(48, 64) % count]


# ------------------------------------------------------------------ elbow


def test_elbow_is_the_point_farthest_below_the_chord():
    ks = list(range(2, 17))
    costs = [100, 60, 20] + [19 - i * 0.5 for i in range(12)]  # sharp bend at k = 4
    assert elbow(ks, costs) == 4


def test_elbow_of_a_flat_curve_is_the_first_k():
    assert elbow([2, 3, 4, 5], [7, 7, 7, 7]) == 2


def test_elbow_ignores_a_rise_from_a_worse_local_minimum():
    ks = list(range(2, 10))
    clean = [100, 30, 20, 15, 12, 10, 9, 8]
    noisy = [100, 30, 20, 15, 40, 10, 9, 8]  # k = 6 landed in a bad local minimum
    assert elbow(ks, noisy) == elbow(ks, clean) == 3


def test_auto_finds_the_number_of_clusters():
    choice = choose(clusters(5), k="auto")
    assert (choice.method, choice.k) == ("auto", 5)
    assert [t.k for t in choice.trials] == list(choose_k.AUTO_KS)
    assert "elbow" in choice.reason


def test_auto_on_an_image_of_few_colours_is_lossless_at_its_colour_count():
    choice = choose(few_colours(7), k="auto")
    assert choice.k == 7 and choice.fit.cost == 0
    assert choice.trials == ()


# ------------------------------------------------------------------ --psnr


@pytest.mark.parametrize("target", [24.0, 28.0, 32.0])
def test_psnr_picks_the_smallest_k_reaching_the_target(target):
    pixels = clusters(6, noise=14.0)
    choice = choose(pixels, psnr_target=target, settings=FitSettings(n_init=1))
    assert psnr(choice.fit.mse) >= target
    below = fit_palette(pixels, choice.k - 1, n_init=1)  # the same trial fit the search made
    assert psnr(below.mse) < target
    assert str(choice.k) in choice.reason and "smallest" in choice.reason


def test_psnr_search_takes_logarithmically_many_trials_not_one_per_k():
    choice = choose(clusters(6, noise=14.0), psnr_target=30.0)
    assert choice.k > 16
    assert len(choice.trials) <= 2 * math.ceil(math.log2(choice.k)) + 1
    assert len({t.k for t in choice.trials}) == len(choice.trials)  # no k fitted twice


def test_psnr_on_an_image_of_few_colours_stops_at_lossless():
    choice = choose(few_colours(5), psnr_target=60.0)
    assert choice.k == 5 and choice.fit.cost == 0


@pytest.mark.parametrize("target", [0, -3, float("nan"), float("inf")])
def test_rejects_psnr_target_that_is_not_a_positive_number(target):
    with pytest.raises(ParameterError, match="psnr"):
        choose(clusters(), psnr_target=target)


def test_searches_build_the_colour_histogram_once(monkeypatch):
    calls = []

    def counting(pixels, **kwargs):
        calls.append(1)
        return colour_histogram(pixels, **kwargs)

    monkeypatch.setattr(choose_k, "colour_histogram", counting)
    monkeypatch.setattr(kmcodec.palette, "colour_histogram", counting)
    choice = choose(clusters(6, noise=14.0), psnr_target=30.0)
    assert len(choice.trials) > 3
    assert len(calls) == 1


# ------------------------------------------------------------------ --max-bytes


@pytest.mark.parametrize(("width", "height", "channels"), [(64, 48, 3), (7, 5, 1), (100, 1, 4)])
def test_largest_k_for_bytes_is_the_last_k_whose_formula_fits(width, height, channels):
    sizes = [layout.size_formula(width, height, k, channels).total_bytes for k in range(1, 2049)]
    for budget in (sizes[0], sizes[0] + 1, sizes[40], sizes[40] - 1, sizes[300], sizes[2047]):
        expected = max(k for k, size in enumerate(sizes, start=1) if size <= budget)
        assert largest_k_for_bytes(budget, width, height, channels) == expected


def test_largest_k_for_bytes_is_max_k_for_a_huge_budget():
    assert largest_k_for_bytes(10**9, 64, 48, 3) == layout.MAX_K


def test_rejects_budget_below_the_smallest_file():
    smallest = layout.size_formula(64, 48, 1, 3).total_bytes
    with pytest.raises(ParameterError, match=str(smallest)):
        largest_k_for_bytes(smallest - 1, 64, 48, 3)


def test_max_bytes_file_fits_and_one_more_colour_would_not():
    pixels = clusters(6, noise=14.0)
    budget = 2500
    choice = choose(pixels, max_bytes=budget)
    data = kmcodec.pack(choice.fit.palette, choice.fit.labels)
    assert len(data) <= budget
    assert layout.size_formula(64, 48, choice.k + 1, 3).total_bytes > budget
    assert choice.trials == ()  # the formula answers; no trial fits


def test_max_bytes_beyond_the_colour_count_is_lossless():
    choice = choose(few_colours(9), max_bytes=10**6)
    assert choice.k == 9 and choice.fit.cost == 0


# ------------------------------------------------------------------ fixed k and rules


def test_fixed_k_is_a_plain_fit():
    pixels = clusters()
    choice = choose(pixels, k=4, settings=FitSettings(seed=2))
    assert choice.k == 4
    assert np.array_equal(choice.fit.palette, fit_palette(pixels, 4, seed=2).palette)


@pytest.mark.parametrize("given", [{}, {"k": 4, "psnr_target": 30.0}, {"k": 4, "max_bytes": 900}])
def test_exactly_one_rule_must_be_given(given):
    with pytest.raises(ParameterError, match="exactly one"):
        choose(clusters(), **given)
