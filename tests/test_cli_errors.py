"""Bad input to `kmq`, each run as a real subprocess: exit 1 with one `kmq: error:` line (2 for usage), never a traceback, never an output."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FLAT = ROOT / "fixtures" / "flat.png"
MALFORMED = ROOT / "fixtures" / "malformed"
CORRUPT_KMQ = MALFORMED / "bad_check_flipped_bit.kmq"
RGBA_KMQ = ROOT / "fixtures" / "valid" / "rgba_k5_6x5.kmq"


def permissions_bind_us() -> bool:
    """Whether chmod stops this process: false for root (os.geteuid() == 0) unless it dropped CAP_DAC_OVERRIDE."""
    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "probe"
        probe.write_bytes(b"")
        probe.chmod(0)
        try:
            probe.open("rb").close()
            return False
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)


PERMISSIONS_BIND = hasattr(os, "geteuid") and permissions_bind_us()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder of bad inputs, shared by every case (no case may write into it)."""
    d = tmp_path_factory.mktemp("bad_inputs")
    (d / "notes.txt").write_text("hello, this is not an image\n")
    (d / "empty.png").write_bytes(b"")
    (d / "empty.kmq").write_bytes(b"")
    png = FLAT.read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "garbage.png").write_bytes(png[:8] + b"garbage" * 10)
    Image.open(ROOT / "fixtures" / "coffee.png").save(d / "full.jpg", quality=90)
    jpeg = (d / "full.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (d / "header_only.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    (d / "corrupt.kmq").write_bytes(CORRUPT_KMQ.read_bytes())
    (d / "truncated.kmq").write_bytes(RGBA_KMQ.read_bytes()[:-10])
    (d / "rgba.kmq").write_bytes(RGBA_KMQ.read_bytes())
    (d / "flat.png").write_bytes(png)
    (d / "a_dir").mkdir()
    (d / "a_file").write_bytes(b"")
    return d


def kmq(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmcodec", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit 1, exactly one line on stderr, `kmq: error: ...` naming the problem, no traceback."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("kmq: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr


def assert_usage(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: kmq"), result.stderr
    assert "error: " in result.stderr and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# (id, arguments, what stderr must contain); every case exits 1 and writes no out.*.
ERRORS = [
    ("encode-text-file", ["encode", "notes.txt", "-k", "4", "-o", "out.kmq"], "cannot read notes.txt: not an image"),
    ("encode-truncated-png", ["encode", "truncated.png", "-k", "4", "-o", "out.kmq"], "cannot read truncated.png: corrupt image"),
    ("encode-garbage-png", ["encode", "garbage.png", "-k", "4", "-o", "out.kmq"], "cannot read garbage.png"),
    ("encode-truncated-jpeg", ["encode", "truncated.jpg", "-k", "4", "-o", "out.kmq"], "cannot read truncated.jpg: corrupt image"),
    ("encode-header-only-jpeg", ["encode", "header_only.jpg", "-k", "4", "-o", "out.kmq"], "cannot read header_only.jpg"),
    ("encode-zero-byte-file", ["encode", "empty.png", "-k", "4", "-o", "out.kmq"], "cannot read empty.png"),
    ("encode-directory", ["encode", "a_dir", "-k", "4", "-o", "out.kmq"], "cannot read a_dir: it is a directory"),
    ("encode-missing-file", ["encode", "missing.png", "-k", "4", "-o", "out.kmq"], "cannot read missing.png: no such file"),
    ("encode-corrupt-kmq", ["encode", "corrupt.kmq", "-k", "4", "-o", "out.kmq"], "bad check"),
    ("encode-k-zero", ["encode", "flat.png", "-k", "0", "-o", "out.kmq"], "k must be in 1..65536, got 0"),
    ("encode-k-negative", ["encode", "flat.png", "-k", "-3", "-o", "out.kmq"], "k must be in 1..65536, got -3"),
    ("encode-k-above-max", ["encode", "flat.png", "-k", "65537", "-o", "out.kmq"], "k must be in 1..65536, got 65537"),
    ("encode-output-dir-missing", ["encode", "flat.png", "-k", "4", "-o", "no_such_dir/out.kmq"], "directory no_such_dir does not exist"),
    ("encode-output-dir-is-a-file", ["encode", "flat.png", "-k", "4", "-o", "a_file/out.kmq"], "cannot write a_file/out.kmq"),
    ("encode-output-is-a-directory", ["encode", "flat.png", "-k", "4", "-o", "a_dir", "--force"], "cannot write a_dir"),
    ("decode-corrupt-kmq", ["decode", "corrupt.kmq", "-o", "out.png"], "bad check at byte 45"),
    ("decode-truncated-kmq", ["decode", "truncated.kmq", "-o", "out.png"], "truncated: header says"),
    ("decode-zero-byte-file", ["decode", "empty.kmq", "-o", "out.png"], "not a .kmq file"),
    ("decode-not-kmq", ["decode", "notes.txt", "-o", "out.png"], "not a .kmq file"),
    ("decode-directory", ["decode", "a_dir", "-o", "out.png"], "cannot read a_dir: it is a directory"),
    ("decode-missing-file", ["decode", "missing.kmq", "-o", "out.png"], "cannot read missing.kmq: no such file"),
    ("decode-output-dir-missing", ["decode", "rgba.kmq", "-o", "no_such_dir/out.png"], "directory no_such_dir does not exist"),
    ("decode-unknown-extension", ["decode", "rgba.kmq", "-o", "out.xyz"], "no image format for extension '.xyz'"),
    ("decode-rgba-to-jpeg", ["decode", "rgba.kmq", "-o", "out.jpg"], "cannot write out.jpg"),
    ("decode-over-pixel-limit", ["decode", "rgba.kmq", "-o", "out.png", "--max-pixels", "29"], "too many pixels: 6x5 = 30, limit 29"),
    ("encode-output-is-a-directory-no-force", ["encode", "flat.png", "-k", "4", "-o", "a_dir"], "cannot write a_dir: it is a directory"),
    ("decode-output-is-a-directory", ["decode", "rgba.kmq", "-o", "a_dir"], "cannot write a_dir: it is a directory"),
    ("info-corrupt-kmq", ["info", "corrupt.kmq"], "bad check at byte 45"),
    ("info-truncated-kmq", ["info", "truncated.kmq"], "truncated: header says"),
    ("info-zero-byte-file", ["info", "empty.kmq"], "not a .kmq file"),
    ("info-directory", ["info", "a_dir"], "cannot read a_dir: it is a directory"),
    ("info-missing-file", ["info", "missing.kmq"], "cannot read missing.kmq: no such file"),
]

USAGE = [
    ("encode-k-not-an-integer", ["encode", "flat.png", "-k", "2.5", "-o", "out.kmq"], "argument -k"),
    ("encode-k-text", ["encode", "flat.png", "-k", "many", "-o", "out.kmq"], "argument -k"),
    ("encode-k-missing", ["encode", "flat.png", "-o", "out.kmq"], "-k"),
    ("decode-max-pixels-not-an-integer", ["decode", "rgba.kmq", "--max-pixels", "lots"], "--max-pixels"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
    ("no-command", [], "required"),
    ("encode-output-dash", ["encode", "flat.png", "-k", "4", "-o", "-"], "'-' is not stdout"),
    ("decode-labels-dash", ["decode", "rgba.kmq", "--labels", "-"], "'-' is not stdout"),
    ("encode-input-dash", ["encode", "-", "-k", "4", "-o", "out.kmq"], "'-' is not stdin"),
    ("info-input-dash", ["info", "-"], "'-' is not stdin"),
]


@pytest.mark.parametrize(("args", "fragment"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_bad_input_exits_1_with_one_error_line(workdir, args, fragment):
    before = sorted(p.name for p in workdir.iterdir())
    assert_error(kmq(workdir, *args), fragment)
    assert sorted(p.name for p in workdir.iterdir()) == before  # no output, no temp file


@pytest.mark.parametrize(("args", "fragment"), [case[1:] for case in USAGE], ids=[case[0] for case in USAGE])
def test_usage_error_exits_2(workdir, args, fragment):
    before = sorted(p.name for p in workdir.iterdir())
    assert_usage(kmq(workdir, *args), fragment)
    assert sorted(p.name for p in workdir.iterdir()) == before


def unprivileged() -> list[str] | None:
    """A command prefix under which file permissions bind: none needed, setpriv to nobody for root, or None."""
    if PERMISSIONS_BIND:
        return []
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", "import kmcodec"], capture_output=True, timeout=60)
    except OSError:  # no setpriv
        return None
    return prefix if probe.returncode == 0 else None


UNPRIVILEGED = unprivileged()
NEEDS_UNPRIVILEGED = pytest.mark.skipif(
    UNPRIVILEGED is None, reason="root without setpriv (or nobody cannot run Python here): chmod binds no one"
)


@pytest.fixture
def open_dir():
    """A folder anyone may write to (pytest's tmp_path is private to root, so nobody could not enter it)."""
    path = Path(tempfile.mkdtemp(prefix="kmq-perm-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def kmq_unprivileged(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [*UNPRIVILEGED, sys.executable, "-m", "kmcodec", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@NEEDS_UNPRIVILEGED
@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_unreadable_input_exits_1(open_dir, command):
    source = open_dir / ("in.png" if command == "encode" else "in.kmq")
    source.write_bytes(FLAT.read_bytes() if command == "encode" else RGBA_KMQ.read_bytes())
    source.chmod(0)
    args = {"encode": ["-k", "4", "-o", "out.kmq"], "decode": ["-o", "out.png"], "info": []}[command]
    assert_error(kmq_unprivileged(open_dir, command, source.name, *args), "permission denied")
    assert sorted(p.name for p in open_dir.iterdir()) == [source.name]


@NEEDS_UNPRIVILEGED
def test_input_in_a_directory_that_cannot_be_entered_exits_1(open_dir):
    """Path.is_dir raises PermissionError there rather than answering; that must not be a traceback."""
    locked = open_dir / "locked"
    locked.mkdir()
    (locked / "in.png").write_bytes(FLAT.read_bytes())
    locked.chmod(0)
    try:
        assert_error(kmq_unprivileged(open_dir, "encode", "locked/in.png", "-k", "4", "-o", "out.kmq"), "permission denied")
    finally:
        locked.chmod(0o755)
    assert sorted(p.name for p in open_dir.iterdir()) == ["locked"]


WRITE_ONLY = next((p for p in (Path("/sys/bus/nd/drivers_probe"), Path("/sys/bus/pci/rescan")) if p.exists()), None)


@pytest.mark.skipif(WRITE_ONLY is None, reason="needs a write-only sysfs file")
@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_input_nobody_can_read_exits_1(tmp_path, command):
    """sysfs refuses to open a write-only file for reading even to root, so this runs as any user."""
    args = {"encode": ["-k", "4", "-o", "out.kmq"], "decode": ["-o", "out.png"], "info": []}[command]
    assert_error(kmq(tmp_path, command, str(WRITE_ONLY), *args), f"cannot read {WRITE_ONLY}: permission denied")
    assert list(tmp_path.iterdir()) == []


@NEEDS_UNPRIVILEGED
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_unwritable_output_directory_exits_1(open_dir, command):
    locked = open_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    source = open_dir / ("in.png" if command == "encode" else "in.kmq")
    source.write_bytes(FLAT.read_bytes() if command == "encode" else RGBA_KMQ.read_bytes())
    output = locked / ("out.kmq" if command == "encode" else "out.png")
    args = ["-k", "4"] if command == "encode" else []
    assert_error(kmq_unprivileged(open_dir, command, source.name, "-o", str(output), *args), "Permission denied")
    assert list(locked.iterdir()) == []


def test_info_on_an_invalid_file_reports_each_check_and_exits_1(workdir):
    """`info --json` still prints its report for a broken file: check_valid says whether the CRC matches."""
    cases = {
        "rgba.kmq": (0, True, True),
        "corrupt.kmq": (1, False, False),
        "truncated.kmq": (1, None, False),
    }
    for name, (code, check_valid, valid) in cases.items():
        result = kmq(workdir, "info", name, "--json")
        assert result.returncode == code, result.stderr
        report = json.loads(result.stdout)
        assert (report["check_valid"], report["valid"]) == (check_valid, valid), name
        assert (report["error"] is None) == valid
    for name in ("label_not_below_k_b3_first_pixel.kmq", "padding_not_zero_b3.kmq"):
        result = kmq(MALFORMED, "info", name, "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 1 and report["check_valid"] is True and report["valid"] is False, name
        text = kmq(MALFORMED, "info", name)
        assert "CRC-32 valid" in text.stdout and "valid           no: " in text.stdout


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_output_directory_nobody_can_write_exits_1(tmp_path, command):
    """sysfs refuses new files even to root, so this case runs everywhere on Linux."""
    source = FLAT if command == "encode" else RGBA_KMQ
    output = "/sys/kmq_test_out.kmq" if command == "encode" else "/sys/kmq_test_out.png"
    args = ["-k", "4"] if command == "encode" else []
    assert_error(kmq(tmp_path, command, str(source), "-o", output, *args), f"cannot write {output}")
    assert not Path(output).exists()
