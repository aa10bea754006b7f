"""Palette files (.gpl, .kmq, PNG-8, GIF, .json) both ways, and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec.errors import OutputError, PaletteFileError
from kmcodec.palette_files import read_palette, write_palette

SUFFIXES = (".gpl", ".kmq", ".png", ".gif", ".json")
NO_ALPHA = (".gpl", ".gif")


def palette(k, channels, seed=0):
    p = np.random.default_rng(seed).integers(0, 256, (k, channels), dtype=np.uint8)
    if k > 2:
        p[2] = p[0]  # a repeated entry stays where it is
    return p


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("suffix, channels", [(s, c) for s in SUFFIXES for c in (3, 4) if not (c == 4 and s in NO_ALPHA)])
@pytest.mark.parametrize("k", [1, 5, 256])
def test_palettes_round_trip_in_every_format(tmp_path, suffix, k, channels):
    p = palette(k, channels)
    write_palette(tmp_path / f"p{suffix}", p)
    got = read_palette(tmp_path / f"p{suffix}")
    assert got.dtype == np.uint8 and np.array_equal(got, p)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_grey_palettes_come_back_grey_or_as_rgb(tmp_path, suffix):
    p = palette(7, 1)
    write_palette(tmp_path / f"p{suffix}", p)
    got = read_palette(tmp_path / f"p{suffix}")
    assert np.array_equal(got, p if suffix in (".kmq", ".json") else np.repeat(p, 3, axis=1))


@pytest.mark.parametrize("suffix", [".gpl", ".kmq", ".json"])
def test_large_palettes_round_trip_where_the_format_allows(tmp_path, suffix):
    p = palette(65536, 3)
    write_palette(tmp_path / f"p{suffix}", p)
    assert np.array_equal(read_palette(tmp_path / f"p{suffix}"), p)


def test_png_palette_of_a_reference_image_drops_unused_trailing_entries(tmp_path):
    image = Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8), "P")
    image.putpalette(bytes(range(30)))
    image.save(tmp_path / "ref.png")
    assert np.array_equal(read_palette(tmp_path / "ref.png"), np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("suffix", NO_ALPHA)
def test_rgba_palette_to_a_format_without_alpha_is_refused(tmp_path, suffix):
    with pytest.raises(OutputError, match="holds no alpha"):
        write_palette(tmp_path / f"p{suffix}", palette(3, 4))


def test_more_than_256_entries_to_png_is_refused(tmp_path):
    with pytest.raises(OutputError, match="at most 256 entries, the palette has 257"):
        write_palette(tmp_path / "p.png", palette(257, 3))


GPL = "GIMP Palette\nName: x\n#\n"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad_line.gpl", GPL + "1 2 3 ok\n10 20 blue\n", r"line 5: expected 'R G B \[name\]', got '10 20 blue'"),
        ("no_header.gpl", "1 2 3\n", "line 1: expected 'GIMP Palette', got '1 2 3'"),
        ("range.gpl", GPL + "1 2 256\n", "line 4: value 256, allowed 0..255"),
        ("empty.gpl", GPL, "no entries, allowed 1..65536"),
        ("too_many.json", json.dumps([[0, 0, 0]] * 65537), "65537 entries, allowed 1..65536"),
        ("empty.json", "[]", "no entries, allowed 1..65536"),
        ("range.json", "[[0, 0, 0], [1, -2, 3]]", "entry 1 channel 1 is -2, allowed 0..255"),
        ("ragged.json", "[[0, 0, 0], [1, 2]]", r"entry 1: expected 3 integers like entry 0, got \[1, 2\]"),
        ("not_json.json", "[[0, 0", "not JSON"),
        ("rgb.png", None, r"not a palette image \(mode RGB\)"),
        ("bad.kmq", b"\x89KMQ", "truncated"),
        ("p.txt", "", "unknown suffix '.txt'"),
    ],
)
def test_malformed_palette_files_get_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (2, 2)).save(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(PaletteFileError, match=message):
        read_palette(path)
    image = tmp_path / "x.png"
    Image.new("RGB", (4, 4), (9, 9, 9)).save(image)
    result = kmq("encode", image, "--palette", path, "-o", tmp_path / "x.kmq", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("kmq: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and not (tmp_path / "x.kmq").exists()


def test_channel_mismatch_names_the_palette_and_the_image(tmp_path):
    write_palette(tmp_path / "p.gpl", palette(4, 3))
    Image.new("RGBA", (4, 4), (9, 9, 9, 7)).save(tmp_path / "a.png")
    result = kmq("encode", "a.png", "--palette", "p.gpl", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "kmq: error: palette p.gpl (4 entries) has 3 (RGB) channels but image a.png has 4 (RGBA): a palette needs at least the image's channels\n"


def test_encode_with_a_palette_file_names_its_source_and_keeps_every_entry(tmp_path):
    p = palette(6, 3)
    write_palette(tmp_path / "p.json", p)
    Image.new("RGB", (5, 3), tuple(int(v) for v in p[1])).save(tmp_path / "a.png")
    result = kmq("encode", "a.png", "--palette", "p.json", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["method"] == "palette" and summary["reason"] == "palette from p.json (6 entries)"
    image = kmcodec.read(tmp_path / "a.kmq")
    assert np.array_equal(image.palette, p) and (image.labels == 1).all()
    result = kmq("encode", "a.png", "--palette", "p.json", "--force", cwd=tmp_path)
    assert "palette from p.json (6 entries)" in result.stderr


def test_kmq_palette_writes_the_shared_fit(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [(rng.integers(0, 4, (8, 9, 3)) * 60).astype(np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    result = kmq("palette", "0.png", "1.png", "2.png", "-k", 5, "-o", "p.gpl", "--seed", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fitted to 3 of 3 inputs" in result.stderr and "-> p.gpl" in result.stderr
    assert np.array_equal(read_palette(tmp_path / "p.gpl"), kmcodec.fit_shared_palette(arrays, 5, seed=2))
