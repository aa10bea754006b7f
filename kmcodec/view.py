"""`kmq view FILE.kmq`: show a .kmq file in the browser viewer (kmcodec/web).

The viewer decodes with kmq.js, the JavaScript decoder, so it is also a second
implementation looking at the file. Browsers refuse JavaScript modules on file://
pages, so the page, the decoder and the one file are served over HTTP, on
127.0.0.1 only, from memory: nothing else on the disk can be reached.
"""

from __future__ import annotations

import argparse
import signal
import sys
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from .codec import decode
from .errors import KmqError
from .files import read_bytes

HOST = "127.0.0.1"
WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "kmq.js": "text/javascript; charset=utf-8",
    "coding1.js": "text/javascript; charset=utf-8",
    "vendor/fzstd.js": "text/javascript; charset=utf-8",
}


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {text!r}")
    return port


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `kmq view` on the CLI's subcommands."""
    sub = commands.add_parser(
        "view",
        help="show a .kmq file in the browser viewer",
        description=f"Check FILE, serve the viewer and FILE on {HOST} and open the browser; Ctrl-C stops.",
    )
    sub.add_argument("input", metavar="FILE", help=".kmq file")
    sub.add_argument("--port", type=port_number, default=0, metavar="N", help="port to listen on (default 0: any free port)")
    sub.add_argument("--no-browser", action="store_true", help="only print the URL; do not open a browser")
    sub.set_defaults(run=run_view)


def routes(name: str, data: bytes) -> dict[str, tuple[str, bytes]]:
    """Every path the server answers: the page, the decoder and the file, nothing else."""
    web = resources.files("kmcodec") / "web"
    table = {f"/{file}": (kind, (web / file).read_bytes()) for file, kind in WEB_FILES.items()}
    table["/"] = table["/index.html"]
    table[f"/file/{quote(name)}"] = ("application/octet-stream", data)
    return table


def make_handler(table: dict[str, tuple[str, bytes]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            found = table.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(404)
                return
            kind, body = found
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a quiet server: the URL line is all the terminal needs

    return Handler


def run_view(args: argparse.Namespace) -> int:
    source = Path(args.input)
    data = read_bytes(source)
    decode(data)  # every rule of the spec, before anything is served
    table = routes(source.name, data)
    try:
        server = ThreadingHTTPServer((HOST, args.port), make_handler(table))
    except OSError as exc:
        raise KmqError(f"cannot serve on {HOST}:{args.port}: {exc.strerror or exc}") from None
    url = f"http://{HOST}:{server.server_address[1]}/?file=/file/{quote(source.name)}"
    # A shell starts background jobs (`kmq view x.kmq &`) with SIGINT ignored, and Python
    # keeps it so; the server would then outlive `kill -INT`. Ctrl-C must always stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # Ctrl-C from the moment the URL is out is a normal stop
        print(url, flush=True)
        print(f"kmq: serving {source} for the viewer; Ctrl-C stops", file=sys.stderr, flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("kmq: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
