"""The viewer in a real browser: headless Chromium loads it through `kmq view --no-browser`.

The page writes CRC-32s of what it drew into <body data-*>; --dump-dom reads them
back and they must equal kmcodec's decode. .ci/run installs Chromium and sets
KMQ_REQUIRE_CHROMIUM, so CI runs these; elsewhere they skip when no Chromium is installed.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

import kmcodec
from coded import method1_file, method2_file, method3_file, stream_method
from test_view import kmq_view, serving
from test_web_decoder import rgba_bytes

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("KMQ_REQUIRE_CHROMIUM"):  # set by .ci/run: CI must run these
    raise RuntimeError("KMQ_REQUIRE_CHROMIUM is set but no chromium is installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=10000",  # lets the page's fetch and decode finish before the DOM is dumped
]


def page_state(url: str, profile: Path, *extra: str) -> dict[str, str]:
    """Load `url` in headless Chromium; return the data-* attributes of <body> once the page settled,
    and the bytes table's "method" row (coding 1) as "method-row"."""
    done = subprocess.run(
        [CHROMIUM, *FLAGS, *extra, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    )
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, done.stdout[-2000:] + done.stderr[-2000:]
    state = {key: html.unescape(value) for key, value in re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))}
    method = re.search(r"<td>method</td><td[^>]*>([^<]*)</td>", done.stdout)
    if method:
        state["method-row"] = html.unescape(method.group(1))
    return state


@pytest.mark.parametrize(
    ("name", "coding", "method"),
    [("coffee_k16.kmq", 0, None), ("logo_rgba_k4.kmq", 0, None), ("coffee_k16.kmq", 1, 2), ("logo_rgba_k4.kmq", 1, 1), ("coffee_k16.kmq", 1, 3)],
)
def test_viewer_canvas_holds_the_pixels_kmcodec_decodes(name, coding, method, tmp_path):
    path = tmp_path / name
    golden = (ROOT / "fixtures" / "golden" / name).read_bytes()
    if method is not None:  # this method, whichever kmcodec's encoder would choose
        image = kmcodec.decode(golden)
        path.write_bytes({1: method1_file, 2: method2_file, 3: method3_file}[method](image.palette, image.labels))
    else:
        path.write_bytes(kmcodec.recode(golden, compress=bool(coding)))
    data = path.read_bytes()
    assert data[6] == coding
    if method is not None:  # method 1 (§11.11) loads vendor/fzstd.js through `kmq view`
        assert stream_method(data) == method
    image = kmcodec.read(path)
    expected = f"{zlib.crc32(rgba_bytes(image.to_array())):08x}"
    with serving(kmq_view(str(path), "--no-browser")) as (url, _):
        state = page_state(url, tmp_path / "profile")
    assert state.get("state") == "ready", state
    assert state["decoded-crc32"] == state["drawn-crc32"] == expected
    if method is not None:  # the bytes table names the method and its section
        section = {1: "§11.11", 2: "§11.13", 3: "§11.15"}[method]
        assert state["method-row"].startswith(f"{method} (") and section in state["method-row"], state["method-row"]
    if image.channels != 4:  # a canvas stores premultiplied alpha, so only opaque pixels read back exactly
        assert state["canvas-crc32"] == expected


def test_viewer_shows_the_decoders_error_on_the_page(tmp_path):
    """`kmq view` refuses bad files, so load one from file:// (allowed to read its folder) instead."""
    page = (ROOT / "kmcodec" / "web" / "index.html").as_uri()
    state = page_state(f"{page}?file=../../fixtures/malformed/bad_check_zero.kmq", tmp_path / "profile", "--allow-file-access-from-files")
    assert state.get("state") == "error", state
    assert "rule 7" in state["error"] and "bad check at byte 45" in state["error"]
