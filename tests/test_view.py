"""`kmq view`: the viewer and one checked file served on 127.0.0.1, from the checkout and from an installed wheel."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "kmcodec" / "web"
FIXTURE = ROOT / "fixtures" / "valid" / "rows_mid_byte_b3_5x3.kmq"


@contextlib.contextmanager
def serving(command: Sequence[str], cwd: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `kmq view ... --no-browser`, yield the URL it prints, stop it with Ctrl-C (SIGINT)."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def kmq_view(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmcodec", "view", *args]


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def origin(url: str) -> str:
    return url.split("/?", 1)[0]


def test_view_serves_the_page_the_decoder_and_the_file_only():
    with serving(kmq_view(str(FIXTURE), "--no-browser")) as (url, _):
        assert url.endswith(f"/?file=/file/{FIXTURE.name}")
        base = origin(url)
        assert fetch(url) == (200, "text/html; charset=utf-8", (WEB / "index.html").read_bytes())
        for script in ("kmq.js", "coding1.js"):
            assert fetch(f"{base}/{script}") == (200, "text/javascript; charset=utf-8", (WEB / script).read_bytes())
        assert fetch(f"{base}/file/{FIXTURE.name}")[2] == FIXTURE.read_bytes()
        for path in ("/view.py", "/../kmq.js", "/file/", "/file/other.kmq", "/fixtures/valid/" + FIXTURE.name):
            assert fetch(base + path)[0] == 404, path


def test_view_stops_on_ctrl_c_with_exit_0():
    with serving(kmq_view(str(FIXTURE), "--no-browser")) as (_, proc):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "stopped" in proc.stderr.read()


def test_view_started_as_a_background_job_still_stops_on_ctrl_c():
    """A shell's `kmq view x.kmq &` starts with SIGINT ignored; SIGINT must still stop the server."""
    ignoring = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(kmq_view(str(FIXTURE), "--no-browser"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ignoring)
    try:
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.kmq", "no such file"), ("bad_check_zero.kmq", "bad check at byte 45")],
)
def test_view_refuses_a_missing_or_corrupt_file_before_serving(name, message):
    path = ROOT / "fixtures" / "malformed" / name
    done = subprocess.run(kmq_view(str(path), "--no-browser"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stdout == ""  # no URL: nothing was served
    assert done.stderr.startswith("kmq: error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_view_rejects_a_port_out_of_range_as_usage():
    done = subprocess.run(kmq_view(str(FIXTURE), "--port", "70000"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "0..65535" in done.stderr


def test_view_reports_a_port_in_use():
    with serving(kmq_view(str(FIXTURE), "--no-browser")) as (url, _):
        port = origin(url).rsplit(":", 1)[1]
        done = subprocess.run(kmq_view(str(FIXTURE), "--no-browser", "--port", port), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stderr.startswith(f"kmq: error: cannot serve on 127.0.0.1:{port}")


def test_installed_wheel_serves_the_viewer_from_the_package(tmp_path):
    """Build a wheel, install it into a fresh venv, and check `kmq view` serves its own web files."""
    source = tmp_path / "source"  # a clean copy: a build/ left in the checkout would hide missing package data
    shutil.copytree(ROOT / "kmcodec", source / "kmcodec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=120)
    wheel = next((tmp_path / "dist").glob("kmcodec-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    subprocess.run(pip + ["--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True, timeout=120)
    # numpy and Pillow come from this environment's site-packages, read after the venv's own.
    site = Path(subprocess.check_output([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.check_output([venv / "bin" / "python", "-c", "import kmcodec; print(kmcodec.__file__)"], text=True, cwd=tmp_path)
    assert where.startswith(str(site))
    with serving([str(venv / "bin" / "kmq"), "view", str(FIXTURE), "--no-browser"], cwd=tmp_path) as (url, _):
        assert fetch(url)[2] == (site / "kmcodec" / "web" / "index.html").read_bytes() == (WEB / "index.html").read_bytes()
        for script in ("kmq.js", "coding1.js"):
            assert fetch(f"{origin(url)}/{script}")[2] == (site / "kmcodec" / "web" / script).read_bytes() == (WEB / script).read_bytes()
