"""Golden files: committed .kmq bytes decode to their PNGs, and re-encoding reproduces them."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec.files import load_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_golden import CASES, SEED, golden_name  # noqa: E402


@pytest.mark.parametrize(("source", "k"), CASES)
def test_golden_file_decodes_to_its_png(source, k):
    stem = FIXTURES / "golden" / golden_name(source, k)
    image = kmcodec.read(stem.with_suffix(".kmq"))
    expected = np.asarray(Image.open(stem.with_suffix(".png")))
    assert np.array_equal(image.to_pil(), expected)


@pytest.mark.parametrize(("source", "k"), CASES)
def test_reencoding_with_the_same_seed_gives_identical_bytes(source, k):
    stem = FIXTURES / "golden" / golden_name(source, k)
    data = kmcodec.encode(load_image(FIXTURES / source).array, k, seed=SEED)
    assert data == stem.with_suffix(".kmq").read_bytes()


@pytest.mark.parametrize(("source", "k"), CASES)
def test_golden_file_size_is_the_formula(source, k):
    path = (FIXTURES / "golden" / golden_name(source, k)).with_suffix(".kmq")
    image = kmcodec.read(path)
    assert path.stat().st_size == kmcodec.size_formula(image.width, image.height, image.k, image.channels).total_bytes
