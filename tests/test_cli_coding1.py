"""`kmq` with coding 1, in a subprocess as users run it: encode -z, recode both ways, info, --max-bytes."""

import json

import numpy as np
import pytest
from PIL import Image

import kmcodec
from test_cli import kmq


def formula(width, height, k, channels=3):
    return 28 + channels * k + (width * height * (k - 1).bit_length() + 7) // 8


@pytest.fixture
def work(tmp_path):
    """A 96 x 64 picture of flat shapes and a gradient: coding 1 is far smaller than coding 0."""
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2, y * 3, np.where((x - 40) ** 2 + (y - 30) ** 2 < 300, 200, 40)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "shapes.png")
    return tmp_path


def test_encode_compress_writes_coding_1_within_the_bound(work):
    result = kmq("encode", "shapes.png", "-k", "16", "-z", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    data = (work / "shapes.kmq").read_bytes()
    assert s["coding"] == 1 and data[6] == 1
    assert s["bytes"] == len(data) < s["formula_bytes"] == formula(96, 64, 16)
    assert s["formula_holds"] is True
    raw = kmq("encode", "shapes.png", "-k", "16", "-o", "raw.kmq", cwd=work)
    assert raw.returncode == 0, raw.stderr
    a, b = kmcodec.read(work / "shapes.kmq"), kmcodec.read(work / "raw.kmq")
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.palette, b.palette)


def test_encode_summary_says_which_coding_and_why(work):
    coded = kmq("encode", "shapes.png", "-k", "8", "--compress", cwd=work)
    method = (work / "shapes.kmq").read_bytes()[24 + 3 * 8]
    assert f"coding 1 (method {method}, " in coded.stderr and "coded labels at" in coded.stderr and "within its bound" in coded.stderr
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(work / "noise.png")
    fallback = kmq("encode", "noise.png", "-k", "16", "-z", cwd=work)
    assert fallback.returncode == 0, fallback.stderr
    assert "coding 0, raw: matches; coding 1 was not smaller" in fallback.stderr
    assert (work / "noise.kmq").read_bytes()[6] == 0


def test_recode_both_ways_is_lossless_and_atomic(work):
    assert kmq("encode", "shapes.png", "-k", "16", "-o", "a.kmq", cwd=work).returncode == 0
    raw = (work / "a.kmq").read_bytes()
    result = kmq("recode", "a.kmq", "--compress", "-o", "b.kmq", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "coding 0 -> 1" in result.stderr
    coded = (work / "b.kmq").read_bytes()
    assert coded[6] == 1 and len(coded) < len(raw)
    back = kmq("recode", "b.kmq", "--raw", cwd=work)  # in place
    assert back.returncode == 0, back.stderr
    assert (work / "b.kmq").read_bytes() == raw
    exists = kmq("recode", "a.kmq", "--compress", "-o", "b.kmq", cwd=work)
    assert exists.returncode == 1 and "output exists" in exists.stderr
    assert sorted(p.name for p in work.iterdir()) == ["a.kmq", "b.kmq", "shapes.png"]  # no temporary files


def test_recode_needs_exactly_one_direction(work):
    assert kmq("encode", "shapes.png", "-k", "4", "-o", "a.kmq", cwd=work).returncode == 0
    assert kmq("recode", "a.kmq", cwd=work).returncode == 2
    assert kmq("recode", "a.kmq", "--raw", "--compress", cwd=work).returncode == 2


def test_recode_of_a_broken_file_is_one_error_line(work):
    (work / "bad.kmq").write_bytes(b"\x89KMQ" + bytes(30))
    result = kmq("recode", "bad.kmq", "--raw", cwd=work)
    assert result.returncode == 1
    assert result.stderr.startswith("kmq: error: ") and result.stderr.count("\n") == 1


def test_info_reports_coding_bytes_and_the_bound(work):
    assert kmq("encode", "shapes.png", "-k", "16", "-z", cwd=work).returncode == 0
    size = (work / "shapes.kmq").stat().st_size
    text = kmq("info", "shapes.kmq", cwd=work)
    assert text.returncode == 0, text.stderr
    method = (work / "shapes.kmq").read_bytes()[24 + 48]
    assert f"coding 1 (coded labels, method {method}, " in text.stdout
    assert f"file is {size} bytes" in text.stdout and "the bound" in text.stdout
    report = json.loads(kmq("info", "shapes.kmq", "--json", cwd=work).stdout)
    assert report["coding"] == 1 and report["bytes"]["file"] == size and report["label_method"] == method
    assert report["formula_bytes"] == formula(96, 64, 16)
    assert report["formula_ratio"] == pytest.approx(size / formula(96, 64, 16))
    assert report["label_bits_per_pixel"] == pytest.approx(8 * (size - 28 - 48) / (96 * 64))
    assert report["formula_holds"] is True and report["valid"] is True


def test_info_rejects_a_coding_1_file_over_the_bound(work):
    assert kmq("encode", "shapes.png", "-k", "16", "-z", cwd=work).returncode == 0
    data = (work / "shapes.kmq").read_bytes()
    import struct
    import zlib

    body = data[:-4] + bytes(formula(96, 64, 16) - len(data) + 2)
    (work / "long.kmq").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    result = kmq("info", "long.kmq", "--json", cwd=work)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["formula_holds"] is False and report["valid"] is False
    assert "over the formula bound" in report["error"]


def test_max_bytes_with_compress_picks_a_larger_k_that_fits(work):
    budget = 2500
    raw = json.loads(kmq("encode", "shapes.png", "--max-bytes", budget, "-o", "r.kmq", "--json", cwd=work).stdout)
    coded = kmq("encode", "shapes.png", "--max-bytes", budget, "-z", "-o", "c.kmq", "--json", cwd=work)
    assert coded.returncode == 0, coded.stderr
    c = json.loads(coded.stdout)
    assert c["bytes"] == (work / "c.kmq").stat().st_size <= budget
    assert c["k"] > raw["k"]
    assert c["trials"]  # it searched by trial encodes


def test_sweep_reports_raw_and_coded_bytes(work):
    result = kmq("sweep", "shapes.png", "--k", "2,16", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["bytes"] for r in rows] == [formula(96, 64, r["k"]) for r in rows]
    assert all(r["coded_bytes"] < r["bytes"] for r in rows)


def test_pillow_saves_and_opens_coding_1(work):
    with Image.open(work / "shapes.png") as im:
        im.save(work / "p.kmq", k=16, compress=True)
    with Image.open(work / "p.kmq") as opened:
        assert opened.info["coding"] == 1 and opened.mode == "P"
        opened.load()
        opened.save(work / "again.kmq", compress=True)
    assert (work / "again.kmq").read_bytes() == (work / "p.kmq").read_bytes()
