"""The conformance suite (spec/conformance.md): every malformed file is rejected by its rule, every valid file decodes to its PNG."""

import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec import errors

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "fixtures" / "valid"
MALFORMED = ROOT / "fixtures" / "malformed"
TABLE = ROOT / "spec" / "conformance.md"
sys.path.insert(0, str(ROOT / "fixtures"))
import make_conformance  # noqa: E402


def table_rows(marker: str) -> list[list[str]]:
    """The cells of the markdown table between <!-- marker --> lines of spec/conformance.md."""
    block = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", TABLE.read_text(), re.S)
    assert block, f"no {marker} in {TABLE}"
    rows = [line.strip().strip("|").split(" | ") for line in block.group(1).splitlines()[2:]]
    return [[cell.strip() for cell in row] for row in rows]


def file_name(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell.strip("`")


MALFORMED_TABLE = {file_name(row[0]): row[-1].strip("`") for row in table_rows("malformed-table")}
VALID_TABLE = [file_name(row[0]) for row in table_rows("valid-table")]


def test_table_lists_every_malformed_file_and_nothing_else():
    assert set(MALFORMED_TABLE) == {p.name for p in MALFORMED.iterdir()}


def test_table_lists_every_valid_file_and_nothing_else():
    on_disk = {p.name for p in VALID.iterdir()}
    expected = set(VALID_TABLE) | {Path(name).with_suffix(".png").name for name in VALID_TABLE}
    assert on_disk == expected


def test_every_rule_of_the_decoder_has_a_malformed_file():
    rules = {int(row[1]) for row in table_rows("malformed-table")}
    assert rules == set(range(1, 14))  # spec §7 rules 1..13


@pytest.mark.parametrize(("name", "expected"), sorted(MALFORMED_TABLE.items()))
def test_malformed_file_is_rejected_by_its_rule(name, expected):
    with pytest.raises(errors.KmqError) as caught:
        kmcodec.read(MALFORMED / name)
    assert type(caught.value).__name__ == expected, str(caught.value)
    message = str(caught.value)
    assert message and "\n" not in message


@pytest.mark.parametrize("name", VALID_TABLE)
def test_valid_file_decodes_to_its_png(name):
    path = VALID / name
    image = kmcodec.read(path)
    with Image.open(path.with_suffix(".png")) as png:
        expected_mode = png.mode
        expected = np.asarray(png)
    decoded = image.to_pil()
    assert decoded.mode == expected_mode == {1: "L", 3: "RGB", 4: "RGBA"}[image.channels]
    assert np.array_equal(np.asarray(decoded), expected)
    assert np.array_equal(np.concatenate(list(image.iter_rows(2))), image.to_array())
    formula = 28 + image.channels * image.k + (image.width * image.height * (image.k - 1).bit_length() + 7) // 8
    if image.coding == 0:
        assert path.stat().st_size == formula
    else:
        assert path.stat().st_size < formula


@pytest.mark.parametrize("name", VALID_TABLE)
def test_valid_file_repacks_to_the_same_bytes(name):
    """kmcodec's method-0 and method-2 encoder and fixtures/coding1_reference.py make the same choices, so the same
    bytes (except where the file chose its own lane count, or is a hand-built method-1 frame)."""
    data = (VALID / name).read_bytes()
    image = kmcodec.read(VALID / name)
    if image.coding == 0:
        assert kmcodec.pack(image.palette, image.labels) == data
        return
    stream = data[24 + image.palette.size : -4]
    if stream[0] in kmcodec.coding1.METHODS and "lanes" not in name:
        assert kmcodec.coding1.encode_labels(image.labels, image.palette, stream[0]) == stream
    again = kmcodec.decode(kmcodec.pack(image.palette, image.labels, compress=True))
    assert again.labels.tolist() == image.labels.tolist() and again.coding == 1


def test_generator_reproduces_the_committed_files(tmp_path):
    make_conformance.write_suite(tmp_path / "valid", tmp_path / "malformed", pngs=False)
    for folder, committed in (("valid", VALID), ("malformed", MALFORMED)):
        for made in (tmp_path / folder).iterdir():
            assert made.read_bytes() == (committed / made.name).read_bytes(), made.name


def test_pixel_bomb_decodes_without_a_limit_using_no_memory():
    """pixel_bomb_max_dims_k1 is a valid file apart from the limit: 31 bytes claiming 1.8e19 pixels."""
    data = (MALFORMED / "pixel_bomb_max_dims_k1.kmq").read_bytes()
    tracemalloc.start()
    try:
        image = kmcodec.decode(data, max_pixels=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (image.width, image.height, image.k) == (2**32 - 1, 2**32 - 1, 1)
    assert peak < 100_000


def test_pixel_bomb_without_a_limit_fails_the_length_check():
    with pytest.raises(errors.TruncatedError):
        kmcodec.decode((MALFORMED / "pixel_bomb_max_dims_k2.kmq").read_bytes(), max_pixels=None)


def test_spec_example_files_are_the_hex_dumps_of_kmq_md():
    dumps = re.findall(r"```\n(0{8}.*?)```", (ROOT / "spec" / "kmq.md").read_text(), re.S)
    dumped = [bytes.fromhex("".join(line[10:58] for line in dump.splitlines())) for dump in dumps]
    names = ["spec_rgb_3x2_k3.kmq", "spec_grey_3x2_k3.kmq", "spec_rgba_3x2_k2.kmq"]
    names += ["spec_coding1_32x32_k4.kmq", "spec_coding1_method1_64x32_k4.kmq", "spec_coding1_method2_32x32_k4.kmq"]
    names += ["spec_coding1_method3_32x32_k4.kmq"]
    assert [(VALID / name).read_bytes() for name in names] == dumped
