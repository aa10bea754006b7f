"""Files at the edge: every output is written to a temporary file and moved into place, and decoding is thread-safe."""

import errno
import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec import cli, files
from kmcodec.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "fixtures" / "valid" / "rgba_k5_6x5.kmq"
DECODE_INPUTS = sorted((ROOT / "fixtures" / "valid").glob("*.kmq")) + sorted((ROOT / "fixtures" / "golden").glob("*.kmq"))


def disk_full(real_fdopen, after: int):
    """An os.fdopen whose files accept `after` bytes, then fail with ENOSPC like a full disk."""

    class Full:
        def __init__(self, handle):
            self.handle = handle
            self.written = 0

        def write(self, data):
            room = after - self.written
            if len(data) > room:
                self.handle.write(bytes(data)[: max(room, 0)])
                self.written = after
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    return lambda fd, *args, **kwargs: Full(real_fdopen(fd, *args, **kwargs))


def half_then_enospc(handle):
    handle.write(b"x" * 1000)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_failed_write_leaves_no_output_and_no_temp_file(tmp_path):
    with pytest.raises(OutputError, match="cannot write .*out.kmq: No space left on device"):
        files.atomic_write(tmp_path / "out.kmq", half_then_enospc)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_existing_output_intact(tmp_path):
    target = tmp_path / "out.kmq"
    target.write_bytes(b"the old output")
    with pytest.raises(OutputError):
        files.atomic_write(target, half_then_enospc, overwrite=True)
    assert target.read_bytes() == b"the old output"
    assert list(tmp_path.iterdir()) == [target]


def test_interrupted_write_removes_the_temp_file(tmp_path):
    def interrupted(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(tmp_path / "out.png", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_library_write_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    image = kmcodec.read(SAMPLE)
    monkeypatch.setattr(os, "fdopen", disk_full(os.fdopen, after=10))
    with pytest.raises(OutputError, match="No space left"):
        files.write_bytes(tmp_path / "out.kmq", kmcodec.pack(image.palette, image.labels))
    with pytest.raises(OutputError, match="No space left"):
        kmcodec.write(tmp_path / "out.kmq", image.to_array(), 4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_cli_on_a_full_disk_keeps_the_old_output_and_leaves_no_temp_file(tmp_path, monkeypatch, capsys, command):
    source = tmp_path / "in.kmq"
    source.write_bytes(SAMPLE.read_bytes())
    target = tmp_path / ("out.kmq" if command == "encode" else "out.png")
    target.write_bytes(b"the old output")
    args = [command, str(source), "-o", str(target), "--force"] + (["-k", "3"] if command == "encode" else [])
    monkeypatch.setattr(os, "fdopen", disk_full(os.fdopen, after=40))
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("kmq: error: ") and "No space left on device" in err
    assert target.read_bytes() == b"the old output"
    assert source.read_bytes() == SAMPLE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.kmq", target.name])


def test_outputs_get_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    files.write_bytes(tmp_path / "out.kmq", SAMPLE.read_bytes())
    assert stat.S_IMODE((tmp_path / "out.kmq").stat().st_mode) == 0o666 & ~umask


def test_no_clobber_write_refuses_an_existing_output(tmp_path):
    target = tmp_path / "out.kmq"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="output exists"):
        files.write_bytes(target, b"new", overwrite=False)
    assert target.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [target]


def run_kmq(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmcodec", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "x.kmq", "-k", "4", "-o", "x.kmq", "--force"],
        ["decode", "x.kmq", "-o", "x.kmq", "--force"],  # the Pillow plugin writes .kmq
        ["decode", "x.kmq", "-o", "x.kmq", "--max-pixels", "10", "--force"],  # fails: too many pixels
    ],
    ids=["encode", "decode", "decode-fails"],
)
def test_input_is_never_modified_when_output_is_the_same_path(tmp_path, args):
    """The output replaces the name; the input's own bytes (here kept alive by a hard link) are never written."""
    original = SAMPLE.read_bytes()
    (tmp_path / "x.kmq").write_bytes(original)
    os.link(tmp_path / "x.kmq", tmp_path / "link.kmq")
    result = run_kmq(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert (tmp_path / "link.kmq").read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.kmq", "x.kmq"]
    if "10" in args:
        assert result.returncode == 1
        assert (tmp_path / "x.kmq").read_bytes() == original
    else:
        assert result.returncode == 0, result.stderr
        kmcodec.read(tmp_path / "x.kmq")  # a whole, valid file took its place


def serial_results(paths):
    return {path: (lambda image: (image.to_array(), image.labels.copy()))(kmcodec.read(path)) for path in paths}


def test_threads_decoding_different_files_match_a_serial_run():
    expected = serial_results(DECODE_INPUTS)
    work = DECODE_INPUTS * 4
    barrier = threading.Barrier(8)

    def decode(path):
        try:
            barrier.wait(timeout=5)  # start the first eight together
        except threading.BrokenBarrierError:
            pass
        image = kmcodec.read(path)
        rows = np.concatenate(list(image.iter_rows(7)))
        return path, image.to_array(), image.labels.copy(), rows

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(decode, work))
    assert len(results) == len(work)
    for path, pixels, labels, rows in results:
        assert np.array_equal(pixels, expected[path][0]), path.name
        assert np.array_equal(labels, expected[path][1]), path.name
        assert np.array_equal(rows, pixels), path.name


def test_threads_writing_one_output_leave_one_whole_file(tmp_path):
    target = tmp_path / "out.kmq"
    payloads = [bytes([i]) * (10_000 + i) for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda data: files.write_bytes(target, data), payloads))
    assert target.read_bytes() in payloads
    assert list(tmp_path.iterdir()) == [target]


def test_threads_writing_without_overwrite_let_exactly_one_win(tmp_path):
    target = tmp_path / "out.kmq"
    payloads = [bytes([i]) * 5000 for i in range(16)]

    def attempt(data):
        try:
            files.write_bytes(target, data, overwrite=False)
            return data
        except OutputError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        winners = [data for data in pool.map(attempt, payloads) if data is not None]
    assert len(winners) == 1
    assert target.read_bytes() == winners[0]
    assert list(tmp_path.iterdir()) == [target]


def test_decoded_png_written_through_the_cli_matches_the_library(tmp_path):
    result = run_kmq("decode", str(SAMPLE), "-o", str(tmp_path / "out.png"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out.png") as png:
        assert np.array_equal(np.asarray(png), kmcodec.read(SAMPLE).to_array())
