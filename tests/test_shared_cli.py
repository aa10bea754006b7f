"""`kmq encode --shared-palette` and `--frames`, and `kmq decode` of many files, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kmcodec


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 4, (12, 16, 3)) * 80 + 10 * i).astype(np.uint8) for i in range(n)]


@pytest.fixture
def stills(tmp_path):
    arrays = frames()
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"s{i}.png")
    return tmp_path, arrays


def test_shared_palette_encodes_every_input_with_one_palette(stills):
    work, arrays = stills
    result = kmq("encode", "s0.png", "s1.png", "s2.png", "--shared-palette", "-k", 6, "--out-dir", "out", "--jobs", 2, "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    fit = kmcodec.fit_histogram(sum(kmcodec.ColourHistogram.from_image(a) for a in arrays), 6)
    document = json.loads(result.stdout)
    assert [s["reason"] for s in document["files"]] == ["palette from shared fit over 3 inputs"] * 3
    assert sum(s["cost"] for s in document["files"]) == document["totals"]["cost"] == fit.cost
    assert f"total cost {fit.cost}" in result.stderr
    for i, a in enumerate(arrays):
        assert (work / "out" / f"s{i}.kmq").read_bytes() == kmcodec.encode(a, palette=fit.palette)


def test_shared_palette_names_an_unreadable_input_and_writes_the_rest(stills):
    work, _ = stills
    (work / "bad.png").write_text("not an image")
    result = kmq("encode", "s0.png", "bad.png", "s1.png", "--shared-palette", "-k", 4, "--out-dir", "out", cwd=work)
    assert result.returncode == 1
    assert "kmq: error: bad.png: cannot read bad.png: not an image Pillow recognises" in result.stderr
    assert "fitted to 2 of 3 inputs" in result.stderr
    assert sorted(p.name for p in (work / "out").iterdir()) == ["s0.kmq", "s1.kmq"]


def test_shared_palette_needs_an_integer_k(stills):
    work, _ = stills
    result = kmq("encode", "s0.png", "--shared-palette", "--psnr", 30, cwd=work)
    assert result.returncode == 2 and "give -k K" in result.stderr


def save_animation(path, arrays):
    pictures = [Image.fromarray(a) for a in arrays]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100, loop=0)


@pytest.mark.parametrize("name", ["anim.gif", "anim.png"])
def test_frames_share_one_palette_and_decode(tmp_path, name):
    arrays = frames(4, seed=1)
    save_animation(tmp_path / name, arrays)
    result = kmq("encode", name, "--frames", "-k", 5, "--out-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == [f"anim_{i:04d}.kmq" for i in range(1, 5)]
    decoded = [kmcodec.read(p) for p in outputs]
    assert all(np.array_equal(d.palette, decoded[0].palette) for d in decoded)
    expected = kmcodec.fit_shared_palette(arrays, 5)
    assert np.array_equal(decoded[0].palette, expected)
    for d, a in zip(decoded, arrays):
        assert np.array_equal(d.to_array(), expected[d.labels])  # every frame decodes against the one palette
    result = kmq("decode", *[p.relative_to(tmp_path) for p in outputs], "--out-dir", "png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for p, d in zip(outputs, decoded):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / (p.stem + ".png"))), d.to_array())


def test_a_multi_frame_input_without_frames_says_first_of_n(tmp_path):
    save_animation(tmp_path / "anim.gif", frames(3))
    result = kmq("encode", "anim.gif", "-k", 4, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "first of 3 frames" in result.stderr


def test_decode_many_names_a_bad_file_and_writes_the_rest(stills):
    work, arrays = stills
    kmcodec.write(work / "a.kmq", arrays[0], 4)
    (work / "b.kmq").write_bytes(b"nope")
    result = kmq("decode", "a.kmq", "b.kmq", "--out-dir", "d", cwd=work)
    assert result.returncode == 1
    assert "kmq: error: b.kmq: not a .kmq file" in result.stderr
    assert (work / "d" / "a.png").exists() and not (work / "d" / "b.png").exists()


def test_decode_many_with_one_output_is_a_usage_error(stills):
    work, arrays = stills
    kmcodec.write(work / "a.kmq", arrays[0], 4)
    result = kmq("decode", "a.kmq", "a.kmq", "-o", "x.png", cwd=work)
    assert result.returncode == 2 and "use --out-dir" in result.stderr


def test_dask_is_imported_only_when_asked_for():
    code = "import sys, kmcodec, kmcodec.cli; print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
