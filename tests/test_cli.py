"""The `kmq` command in a subprocess (`python -m kmcodec`): every command and flag.

Bad-input cases (corrupt files, unwritable outputs) live in test_cli_errors.py.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmcodec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WIDTH, HEIGHT = 64, 48

ENCODE_KEYS = {
    "input", "output", "width", "height", "channels", "k", "requested_k", "bits_per_pixel", "bytes",
    "formula_bits", "formula_bytes", "formula_holds", "raw_bytes", "ratio", "cost", "mse", "psnr",
    "dither", "psnr_without_dither", "method", "reason", "trials", "seconds", "notes",
    "coding", "label_method", "compress", "label_bytes", "label_bits_per_pixel",
    "input_exact", "mse_8bit", "psnr_8bit",
}
INFO_KEYS = {
    "file", "version", "coding", "width", "height", "channels", "k", "bits_per_pixel", "bytes",
    "formula_bits", "formula_bytes", "formula_holds", "check_valid", "valid", "error",
    "coding_name", "label_method", "label_method_name", "label_bits_per_pixel", "formula_ratio",
}


def kmq(*args, cwd, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True, **kwargs
    )


def photo(seed=0):
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rng = np.random.default_rng(seed)
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1)
    return np.clip(rgb + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)


def measured_psnr(a, b):
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture
def work(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "photo.png")
    Image.fromarray(photo(1)[:, :, 0]).save(tmp_path / "grey.png")
    Image.open(FIXTURES / "logo_rgba.png").save(tmp_path / "logo.png")
    return tmp_path


def encode_json(work, *args):
    result = kmq("encode", *args, "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------------ encode: choosing k


def test_encode_fixed_k_writes_the_formula_size_and_summarises_on_stderr(work):
    result = kmq("encode", "photo.png", "-k", "16", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "photo.png -> photo.kmq" in result.stderr and "k=16" in result.stderr and "matches" in result.stderr
    assert (work / "photo.kmq").stat().st_size == kmcodec.size_formula(WIDTH, HEIGHT, 16, 3).total_bytes


def test_summary_says_larger_when_the_file_outgrows_raw_pixels(work):
    """A 1x1 image's 28-byte overhead makes its file bigger than its pixels: not "0.10x smaller"."""
    result = kmq("encode", FIXTURES / "one_by_one.png", "-k", "1", "-o", "one.kmq", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"{(work / 'one.kmq').stat().st_size / 3:.2f}x larger than raw 24-bit" in result.stderr, result.stderr
    assert "smaller than raw" not in result.stderr


def test_encode_json_keys(work):
    summary = encode_json(work, "photo.png", "-k", "8", "-o", "out.kmq")
    assert set(summary) == ENCODE_KEYS
    assert (summary["method"], summary["k"], summary["channels"], summary["bits_per_pixel"]) == ("k", 8, 3, 3)
    assert summary["bytes"] == (work / "out.kmq").stat().st_size == summary["formula_bytes"]
    decoded = kmcodec.read(work / "out.kmq").to_array()
    assert summary["psnr"] == pytest.approx(measured_psnr(decoded, photo()))


def test_encode_psnr_reaches_the_target_with_the_smallest_k(work):
    summary = encode_json(work, "photo.png", "--psnr", "30", "--n-init", "1")
    decoded = kmcodec.read(work / "photo.kmq").to_array()
    assert summary["method"] == "psnr" and "smallest k" in summary["reason"]
    assert measured_psnr(decoded, photo()) >= 30
    trials = {t["k"]: t["psnr"] for t in summary["trials"]}
    assert trials[summary["k"] - 1] < 30  # one fewer colour misses the target
    assert len(trials) < summary["k"]  # a search, not one encode per k


def test_encode_max_bytes_fits_the_budget(work):
    summary = encode_json(work, "photo.png", "--max-bytes", "2000")
    assert summary["method"] == "max_bytes"
    assert (work / "photo.kmq").stat().st_size <= 2000
    assert kmcodec.size_formula(WIDTH, HEIGHT, summary["requested_k"] + 1, 3).total_bytes > 2000


def test_encode_max_bytes_below_the_smallest_file_fails(work):
    result = kmq("encode", "photo.png", "--max-bytes", "20", cwd=work)
    assert result.returncode == 1
    assert result.stderr.startswith("kmq: error:") and "31 bytes" in result.stderr
    assert not (work / "photo.kmq").exists()


def test_encode_auto_picks_the_elbow_and_says_so(work):
    result = kmq("encode", "photo.png", "-k", "auto", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "elbow" in result.stderr
    assert 2 <= kmcodec.read(work / "photo.kmq").k <= 16


@pytest.mark.parametrize("args", [[], ["-k", "4", "--psnr", "30"], ["--psnr", "30", "--max-bytes", "900"]])
def test_encode_needs_exactly_one_of_k_psnr_max_bytes(work, args):
    result = kmq("encode", "photo.png", *args, cwd=work)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_encode_k_that_is_not_a_number_or_auto_is_a_usage_error(work):
    result = kmq("encode", "photo.png", "-k", "lots", cwd=work)
    assert result.returncode == 2 and "auto" in result.stderr


# ------------------------------------------------------------------ encode: dithering


def test_dither_reports_the_real_psnr_of_the_dithered_result(work):
    plain = encode_json(work, "photo.png", "-k", "4", "-o", "plain.kmq")
    dithered = encode_json(work, "photo.png", "-k", "4", "--dither", "-o", "dither.kmq")
    assert dithered["dither"] is True and plain["dither"] is False
    image = kmcodec.read(work / "dither.kmq")
    assert np.array_equal(image.palette, kmcodec.read(work / "plain.kmq").palette)
    assert not np.array_equal(image.labels, kmcodec.read(work / "plain.kmq").labels)
    assert dithered["psnr"] == pytest.approx(measured_psnr(image.to_array(), photo()))
    assert dithered["psnr_without_dither"] == pytest.approx(plain["psnr"])


def test_dither_matches_pillow_floyd_steinberg_on_the_palette(work):
    encode_json(work, "photo.png", "-k", "6", "--dither")
    image = kmcodec.read(work / "photo.kmq")
    target = Image.new("P", (1, 1))
    target.putpalette(image.palette.tobytes())
    expected = Image.fromarray(photo()).quantize(palette=target, dither=Image.Dither.FLOYDSTEINBERG)
    assert np.array_equal(image.labels, np.asarray(expected))


def test_dither_works_on_grey(work):
    summary = encode_json(work, "grey.png", "-k", "4", "--dither")
    assert summary["channels"] == 1 and summary["dither"]
    image = kmcodec.read(work / "grey.kmq")
    assert summary["psnr"] == pytest.approx(measured_psnr(image.to_array()[:, :, 0], photo(1)[:, :, 0]))


def test_dither_refuses_alpha(work):
    result = kmq("encode", "logo.png", "-k", "4", "--dither", cwd=work)
    assert result.returncode == 1 and "alpha" in result.stderr
    assert not (work / "logo.kmq").exists()


# ------------------------------------------------------------------ encode: batches


def test_batch_in_parallel_writes_each_file_into_out_dir(work):
    result = kmq("encode", "photo.png", "grey.png", "logo.png", "-k", "4", "--out-dir", "out", "--jobs", "2", cwd=work)
    assert result.returncode == 0, result.stderr
    for name in ("photo", "grey", "logo"):
        assert kmcodec.read(work / "out" / f"{name}.kmq").k <= 4
    assert "encoded 3 of 3 files, 0 failed" in result.stderr.splitlines()[-1]


def test_batch_names_each_failure_keeps_going_and_exits_1(work):
    (work / "broken.png").write_bytes(b"not an image")
    result = kmq("encode", "photo.png", "missing.png", "broken.png", "grey.png", "-k", "4", "--out-dir", "out", "--jobs", "2", cwd=work)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("kmq: error:")]
    assert len(errors) == 2
    assert any("missing.png" in line for line in errors) and any("broken.png" in line for line in errors)
    assert (work / "out" / "photo.kmq").exists() and (work / "out" / "grey.kmq").exists()
    assert "encoded 2 of 4 files, 2 failed" in result.stderr


def test_batch_without_out_dir_writes_beside_each_input(work):
    (work / "sub").mkdir()
    Image.fromarray(photo(2)).save(work / "sub" / "other.png")
    result = kmq("encode", "photo.png", "sub/other.png", "-k", "3", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "photo.kmq").exists() and (work / "sub" / "other.kmq").exists()


def test_batch_json_is_one_document_with_files_errors_and_totals(work):
    result = kmq("encode", "photo.png", "missing.png", "-k", "3", "--out-dir", "out", "--json", cwd=work)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert set(document) == {"files", "errors", "totals"}
    assert [set(s) for s in document["files"]] == [ENCODE_KEYS]
    assert document["errors"][0]["input"] == "missing.png"
    assert document["totals"]["encoded"] == 1 and document["totals"]["failed"] == 1


def test_batch_quiet_prints_only_errors(work):
    result = kmq("encode", "photo.png", "missing.png", "-k", "3", "--out-dir", "out", "--quiet", cwd=work)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("kmq: error:")]
    assert len(result.stderr.splitlines()) == 1


def test_output_with_several_inputs_is_a_usage_error(work):
    result = kmq("encode", "photo.png", "grey.png", "-k", "4", "-o", "x.kmq", cwd=work)
    assert result.returncode == 2 and "--out-dir" in result.stderr
    assert not (work / "x.kmq").exists()


def test_two_inputs_writing_the_same_output_fail_before_encoding(work):
    (work / "sub").mkdir()
    Image.fromarray(photo(2)).save(work / "sub" / "photo.png")
    result = kmq("encode", "photo.png", "sub/photo.png", "-k", "4", "--out-dir", "out", cwd=work)
    assert result.returncode == 1 and "both write" in result.stderr
    assert not (work / "out" / "photo.kmq").exists()


def test_no_progress_bar_when_stderr_is_not_a_terminal(work):
    result = kmq("encode", "photo.png", "grey.png", "-k", "3", "--out-dir", "out", "--jobs", "2", cwd=work)
    assert "\r" not in result.stderr and "it/s" not in result.stderr and "file/s" not in result.stderr


def on_terminal(args, cwd):
    """Run kmq with stderr on a pseudo-terminal 100 columns wide; returns (exit code, what it drew)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing 0 columns wide
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "kmcodec", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["encode", "photo.png", "grey.png", "-k", "3", "--out-dir", "out"], "encoding"),
        (["encode", "photo.png", "--psnr", "28", "--n-init", "1"], "choosing k"),
        (["sweep", "photo.png", "--k", "2-4"], "sweeping"),
    ],
)
def test_progress_bar_on_a_terminal(work, args, words):
    pytest.importorskip("tqdm")
    code, text = on_terminal(args, work)
    assert code == 0
    assert "\r" + words in text and "[00:" in text  # tqdm redraws its line, with the elapsed time


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_quiet_draws_no_bar_even_on_a_terminal(work):
    code, text = on_terminal(["encode", "photo.png", "grey.png", "-k", "3", "--out-dir", "out", "--quiet"], work)
    assert code == 0 and text == ""


# ------------------------------------------------------------------ decode: segmentation outputs


def test_decode_labels_writes_8_bit_grey_with_the_labels_as_values(work):
    kmq("encode", "photo.png", "-k", "16", cwd=work)
    result = kmq("decode", "photo.kmq", "--labels", "labels.png", cwd=work)
    assert result.returncode == 0, result.stderr
    with Image.open(work / "labels.png") as labels:
        assert labels.mode == "L"
        assert np.array_equal(np.asarray(labels), kmcodec.read(work / "photo.kmq").labels)


def test_decode_with_only_labels_writes_no_image(work):
    kmq("encode", "photo.png", "-k", "4", "-o", "x.kmq", cwd=work)
    assert kmq("decode", "x.kmq", "--labels", "labels.png", cwd=work).returncode == 0
    assert not (work / "x.png").exists()


def test_decode_labels_above_256_colours_is_16_bit(work):
    palette = np.random.default_rng(0).integers(0, 256, (300, 3), dtype=np.uint8)
    labels = (np.arange(WIDTH * HEIGHT) % 300).reshape(HEIGHT, WIDTH)
    (work / "big.kmq").write_bytes(kmcodec.pack(palette, labels))
    result = kmq("decode", "big.kmq", "--labels", "labels.png", "-o", "big.png", cwd=work)
    assert result.returncode == 0, result.stderr
    with Image.open(work / "labels.png") as image:
        assert image.mode == "I;16"
        assert np.array_equal(np.asarray(image), labels)
    assert (work / "big.png").exists()


def test_decode_masks_writes_one_mask_per_cluster_named_by_index_and_colour(work):
    kmq("encode", "photo.png", "-k", "5", cwd=work)
    image = kmcodec.read(work / "photo.kmq")
    result = kmq("decode", "photo.kmq", "--masks", "masks", cwd=work)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (work / "masks").iterdir())
    assert names == [f"mask_{i:02d}_{bytes(image.palette[i]).hex()}.png" for i in range(image.k)]
    cover = np.zeros((HEIGHT, WIDTH), int)
    for i, name in enumerate(names):
        with Image.open(work / "masks" / name) as mask:
            assert mask.mode == "1"
            array = np.asarray(mask)
        assert np.array_equal(array, image.mask(i))
        cover += array
    assert (cover == 1).all()  # every pixel in exactly one mask


def test_decode_masks_refuses_existing_files_without_force(work):
    kmq("encode", "photo.png", "-k", "2", cwd=work)
    assert kmq("decode", "photo.kmq", "--masks", "masks", cwd=work).returncode == 0
    again = kmq("decode", "photo.kmq", "--masks", "masks", cwd=work)
    assert again.returncode == 1 and "exists" in again.stderr
    assert kmq("decode", "photo.kmq", "--masks", "masks", "--force", cwd=work).returncode == 0


def test_decode_checks_every_output_before_writing_any(work):
    kmq("encode", "photo.png", "-k", "2", cwd=work)
    kmq("decode", "photo.kmq", "--masks", "masks", cwd=work)
    result = kmq("decode", "photo.kmq", "-o", "new.png", "--labels", "labels.png", "--masks", "masks", cwd=work)
    assert result.returncode == 1 and "exists" in result.stderr
    assert not (work / "new.png").exists() and not (work / "labels.png").exists()


# ------------------------------------------------------------------ info, and images through the plugin


def test_info_json_keys(work):
    kmq("encode", "photo.png", "-k", "7", cwd=work)
    result = kmq("info", "photo.kmq", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == INFO_KEYS
    assert (report["k"], report["bits_per_pixel"], report["channels"], report["valid"]) == (7, 3, 3, True)


def test_info_text_names_the_channels_as_the_spec_does(work):
    kmq("encode", "photo.png", "-k", "7", cwd=work)
    result = kmq("info", "photo.kmq", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "channels        3 (RGB)\n" in result.stdout


def test_info_text_gives_each_field_one_line(work):
    kmq("encode", "photo.png", "-k", "7", cwd=work)
    lines = kmq("info", "photo.kmq", cwd=work).stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "file", "format", "width", "height", "channels", "k", "bits_per_pixel", "bytes", "formula", "formula", "check", "valid"
    ]
    assert lines[7].endswith(f" = {(work / 'photo.kmq').stat().st_size}")
    assert lines[9].endswith("% of the formula")


def test_encode_reads_a_kmq_file_through_the_pillow_plugin(work):
    kmq("encode", "photo.png", "-k", "6", cwd=work)
    summary = encode_json(work, "photo.kmq", "-k", "6", "-o", "again.kmq")
    assert summary["k"] == 6 and summary["psnr"] is None  # the decoded image has exactly 6 colours
