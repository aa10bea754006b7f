"""Sweeps: one row per k with exact bytes, cost, MSE, PSNR; the table, JSON, plot and contact sheet."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec import outputs
from kmcodec import sweep as sweep_module
from kmcodec.palette import colour_histogram
from kmcodec.sweep import parse_ks, sweep

WIDTH, HEIGHT = 64, 48


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def photo(seed=0):
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rng = np.random.default_rng(seed)
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1)
    return np.clip(rgb + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(photo()).save(path)
    return path


# ------------------------------------------------------------------ the k list


@pytest.mark.parametrize(
    ("text", "ks"),
    [("2-5", [2, 3, 4, 5]), ("2,4,8", [2, 4, 8]), ("2-10:4", [2, 6, 10]), ("8,2-3,8", [2, 3, 8]), ("300", [300])],
)
def test_parses_ranges_lists_and_steps(text, ks):
    assert parse_ks(text) == ks


@pytest.mark.parametrize("text", ["", "a-b", "5-2", "0-3", "2-70000", "2-8:0", "2--3"])
def test_rejects_bad_k_lists(text):
    with pytest.raises(ValueError):
        parse_ks(text)


# ------------------------------------------------------------------ rows


def test_each_row_is_a_real_encode_sized_by_the_formula():
    pixels = photo()
    rows = sweep(pixels, [1, 2, 5, 16, 17])
    assert [row.requested_k for row in rows] == [1, 2, 5, 16, 17]
    for row in rows:
        image = kmcodec.decode(row.data)
        assert len(row.data) == kmcodec.size_formula(WIDTH, HEIGHT, image.k, 3).total_bytes
        assert row.size.bits_per_pixel == image.bits_per_pixel
        assert row.fit.cost == ((image.to_array().astype(np.int64) - pixels) ** 2).sum()
        assert row.psnr == pytest.approx(10 * math.log10(255**2 / row.fit.mse))
        assert row.data == kmcodec.encode(pixels, row.requested_k)


def test_sweep_builds_the_colour_histogram_once(monkeypatch):
    calls = []

    def counting(pixels, **kwargs):
        calls.append(1)
        return colour_histogram(pixels, **kwargs)

    monkeypatch.setattr(sweep_module, "colour_histogram", counting)
    monkeypatch.setattr(kmcodec.palette, "colour_histogram", counting)
    sweep(photo(), range(2, 8))
    assert len(calls) == 1


# ------------------------------------------------------------------ the command


def test_sweep_prints_one_row_per_k(image_file, tmp_path):
    result = kmq("sweep", image_file, "--k", "2-5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["k", "bits_per_pixel", "bytes", "coded_bytes", "cost", "mse", "psnr", "seconds"]
    assert [line.split()[0] for line in lines[1:]] == ["2", "3", "4", "5"]
    row = lines[1].split()
    assert row[1] == "1" and int(row[2]) == kmcodec.size_formula(WIDTH, HEIGHT, 2, 3).total_bytes


def test_sweep_json_has_one_row_per_k(image_file, tmp_path):
    result = kmq("sweep", image_file, "--k", "2,4", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"input", "width", "height", "channels", "raw_bytes", "notes", "rows", "plot", "sheet"}
    assert [row["k"] for row in document["rows"]] == [2, 4]
    assert set(document["rows"][0]) == {
        "k", "requested_k", "bits_per_pixel", "bytes", "formula_bytes", "coded_bytes", "cost", "mse", "psnr",
        "mse_8bit", "psnr_8bit", "seconds",
    }
    assert all(row["bytes"] == row["formula_bytes"] for row in document["rows"])
    assert all(row["coded_bytes"] <= row["formula_bytes"] for row in document["rows"])


def test_sweep_sheet_shows_the_original_and_each_decoded_image(image_file, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    result = kmq("sweep", image_file, "--k", "2-4", "--sheet", sheet_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tile_w, tile_h = 2 * WIDTH, 2 * HEIGHT  # a 64x48 image is drawn at twice its size
    gap, title = outputs.SHEET_GAP, outputs.SHEET_TITLE
    with Image.open(sheet_path) as sheet:
        assert sheet.mode == "RGB"
        assert sheet.size == (4 * (tile_w + gap) + gap, tile_h + title + 2 * gap)  # 4 tiles in one row
        array = np.asarray(sheet)
    top = gap + title
    tiles = [array[top : top + tile_h, gap + i * (tile_w + gap) : gap + i * (tile_w + gap) + tile_w] for i in range(4)]
    expected = [photo()] + [kmcodec.decode(kmcodec.encode(photo(), k)).to_array() for k in (2, 3, 4)]
    for tile, image in zip(tiles, expected):
        assert np.array_equal(tile, image.repeat(2, axis=0).repeat(2, axis=1))
    assert (array[gap : top - 2, gap : gap + tile_w] < 128).any()  # the title's text is drawn


@pytest.mark.parametrize(
    ("size", "tile"), [((64, 48), (128, 96)), ((32, 32), (128, 128)), ((1, 37), (6, 222)), ((512, 256), (256, 128))]
)
def test_sheet_tiles_enlarge_small_images_by_whole_factors_and_shrink_large_ones(size, tile):
    assert outputs.tile_size(*size) == tile


def test_sweep_plot_is_written(image_file, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "cost.png"
    result = kmq("sweep", image_file, "--k", "2-6", "--plot", plot, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (640, 400)


def test_sweep_plot_without_matplotlib_says_how_to_install_it(image_file, tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from kmcodec.cli import main;"
        f"sys.exit(main(['sweep', {str(image_file)!r}, '--k', '2-3', '--plot', 'cost.png']))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert "kmq: error:" in result.stderr and "kmcodec[plot]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cost.png").exists()


def test_sweep_refuses_an_existing_sheet_without_force(image_file, tmp_path):
    (tmp_path / "sheet.png").write_bytes(b"keep")
    result = kmq("sweep", image_file, "--k", "2", "--sheet", "sheet.png", cwd=tmp_path)
    assert result.returncode == 1 and "exists" in result.stderr
    assert (tmp_path / "sheet.png").read_bytes() == b"keep"


@pytest.mark.parametrize("spec", ["x", "5-2", "0"])
def test_sweep_bad_k_list_is_a_usage_error(image_file, tmp_path, spec):
    result = kmq("sweep", image_file, "--k", spec, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr
