"""Images larger than memory: memory-mapped arrays are encoded in row bands, byte-identical to the in-memory encode."""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import kmcodec
from kmcodec import _histogram
from kmcodec.banded import band_rows_for, write_banded
from kmcodec.errors import ImageInputError


def photo(height, width, channels, seed=0):
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([xx * 3, yy * 2, (xx + yy) * 2, 255 - yy], -1)[:, :, :channels] % 256
    return np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)


def mapped(tmp_path, array, name="image.npy"):
    np.save(tmp_path / name, array)
    return np.load(tmp_path / name, mmap_mode="r")


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("k", [1, 5, 16, 300])
def test_memmap_encode_equals_in_memory_encode_byte_for_byte(tmp_path, channels, k):
    array = photo(61, 45, channels)  # 61 rows in bands of 8: 8 bands, the last short
    result = kmcodec.write(tmp_path / "banded.kmq", mapped(tmp_path, array), k, band_rows=8, seed=3)
    assert (tmp_path / "banded.kmq").read_bytes() == kmcodec.encode(array, k, seed=3)
    assert result.cost == kmcodec.encode_detailed(array, k, seed=3).fit.cost


def test_reduced_histogram_of_many_colours_is_the_same_in_bands(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (200, 190, 3), dtype=np.uint8)  # ~38k colours: reduced
    kmcodec.write(tmp_path / "banded.kmq", mapped(tmp_path, array), 16, band_rows=16)
    assert (tmp_path / "banded.kmq").read_bytes() == kmcodec.encode(array, 16)


def test_uncounted_colours_are_the_same_in_bands(tmp_path, monkeypatch):
    monkeypatch.setattr(_histogram, "MAX_COUNTED", 1000)  # take the path of images with millions of colours
    array = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # over MAX_POINTS colours
    result = kmcodec.write(tmp_path / "banded.kmq", mapped(tmp_path, array), 12, band_rows=8)
    expected = kmcodec.encode_detailed(array, 12)
    assert (tmp_path / "banded.kmq").read_bytes() == expected.data
    assert result.cost == expected.fit.cost


def test_fortran_order_and_float_memmaps_follow_the_input_rules(tmp_path):
    fortran = np.asfortranarray(photo(40, 33, 3))
    kmcodec.write(tmp_path / "f.kmq", mapped(tmp_path, fortran, "f.npy"), 7, band_rows=8)
    assert (tmp_path / "f.kmq").read_bytes() == kmcodec.encode(fortran, 7)
    floats = photo(40, 33, 3).astype(np.float32) / 255
    result = kmcodec.write(tmp_path / "g.kmq", mapped(tmp_path, floats, "g.npy"), 7, band_rows=8)
    assert (tmp_path / "g.kmq").read_bytes() == kmcodec.encode(floats, 7)
    assert result.mse != result.mse_8bit  # measured against the float values too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.kmq", "f.npy", "g.kmq", "g.npy"]  # no scratch left


def test_band_rows_are_a_multiple_of_8_so_bands_pack_to_whole_bytes():
    assert [band_rows_for(10, rows) for rows in (1, 8, 9, 100)] == [8, 8, 16, 104]


def peak_bytes(run):
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_band_size_not_image_size_sets_the_memory(tmp_path):
    width = 2000
    small = mapped(tmp_path, photo(512, width, 1), "small.npy")  # 1 MP
    large = mapped(tmp_path, photo(2048, width, 1, seed=1), "large.npy")  # 4 MP
    in_bands = {
        name: peak_bytes(lambda: write_banded(tmp_path / f"{name}.kmq", image, 16, band_rows=64, n_init=1))
        for name, image in (("small", small), ("large", large))
    }
    one_band = peak_bytes(lambda: write_banded(tmp_path / "whole.kmq", large, 16, band_rows=2048, n_init=1))
    assert in_bands["large"] < 1.25 * in_bands["small"] + (1 << 20)  # flat when the image grows 4x
    assert in_bands["large"] < large.size < one_band


def test_read_mmap_gives_the_same_image_without_reading_the_file(tmp_path):
    array = photo(50, 37, 3)
    kmcodec.write(tmp_path / "x.kmq", array, 11)
    image = kmcodec.read(tmp_path / "x.kmq", mmap=True)
    assert np.array_equal(image.labels, kmcodec.read(tmp_path / "x.kmq").labels)
    assert np.array_equal(np.concatenate(list(image.iter_rows(7))), array_of(kmcodec.encode(array, 11)))


def array_of(data):
    return kmcodec.decode(data).to_array()


def test_read_mmap_still_checks_the_file(tmp_path):
    kmcodec.write(tmp_path / "x.kmq", photo(20, 20, 3), 4)
    data = bytearray((tmp_path / "x.kmq").read_bytes())
    data[-5] ^= 1
    (tmp_path / "x.kmq").write_bytes(bytes(data))
    with pytest.raises(kmcodec.ChecksumError):
        kmcodec.read(tmp_path / "x.kmq", mmap=True)


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_cli_encodes_npy_in_bands(tmp_path):
    array = photo(30, 25, 3)
    np.save(tmp_path / "a.npy", array)
    result = kmq("encode", "a.npy", "-k", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.kmq").read_bytes() == kmcodec.encode(array, 6)
    assert "memory-mapped .npy encoded in row bands" in result.stderr


def test_cli_npy_with_compress_writes_coding_0_and_says_why(tmp_path):
    np.save(tmp_path / "a.npy", photo(16, 16, 3))
    result = kmq("encode", "a.npy", "-k", "4", "--compress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert kmcodec.read(tmp_path / "a.kmq").coding == 0
    assert "the banded path cannot write coding 1" in result.stderr


@pytest.mark.parametrize("args", [["--psnr", "30"], ["-k", "auto"], ["-k", "4", "--dither"]])
def test_cli_npy_takes_k_only(tmp_path, args):
    np.save(tmp_path / "a.npy", photo(8, 8, 3))
    result = kmq("encode", "a.npy", *args, cwd=tmp_path)
    assert result.returncode == 1 and "take -k N only" in result.stderr


def test_cli_refuses_npy_of_no_image_naming_shape_and_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 4, 2), np.uint8))
    result = kmq("encode", "a.npy", "-k", "4", cwd=tmp_path)
    assert result.returncode == 1 and "array shape (4, 4, 2) dtype uint8" in result.stderr


def test_write_refuses_a_memmap_of_no_image(tmp_path):
    with pytest.raises(ImageInputError, match="NaN"):
        kmcodec.write(tmp_path / "x.kmq", mapped(tmp_path, np.full((3, 3), np.nan)), 4)
