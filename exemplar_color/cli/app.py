"""``exemplar-color app [--index PATH] [--host 127.0.0.1] [--port 8765]``: the local web page.

Needs the ``app`` extra (``pip install 'exemplar_color[app]'``: Starlette and uvicorn). Binds to 127.0.0.1
unless ``--host`` says otherwise (then a warning: anyone who can reach that address can use the app).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..constants import MAX_UPLOAD_PIXELS
from ..errors import ExemplarColorError
from .options import add_model_option, add_pipeline_options, at_least, colorizer_from, index_folder, pixel_count

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="local web page: upload a photo, choose references, compare, download",
                       description="Serve the exemplar-color web page on this computer (offline; all files local).",
                       epilog="Example:\n  exemplar-color app --index gallery.index      # then open http://127.0.0.1:8765")
    p.add_argument("--index", metavar="PATH", type=index_folder, help="gallery index for recommended references")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=at_least(1), default=8765, metavar="PORT", help="port (default 8765)")
    p.add_argument("--max-upload-mb", type=at_least(1), default=50, metavar="MB",
                   help="largest upload accepted, in megabytes (default 50)")
    p.add_argument("--max-upload-pixels", type=pixel_count, default=MAX_UPLOAD_PIXELS, metavar="N",
                   help=f"largest upload decoded, in pixels (default {MAX_UPLOAD_PIXELS:,}: ~0.6 GB while decoded; "
                        "uploads are decoded one at a time; never above --max-pixels)")
    add_model_option(p)
    add_pipeline_options(p)
    p.set_defaults(func=run)


def _check_port(host: str, port: int) -> None:
    """The address can be listened on (uvicorn would print its own lines and exit 3 after our URL)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ExemplarColorError(f"--host {host}: not an address of this computer ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a closed port's TIME_WAIT is fine
        try:
            s.bind(address)
        except OSError as e:
            raise ExemplarColorError(f"cannot listen on {host}:{port} ({e.strerror}): another program (another "
                                     f"exemplar-color app?) uses it; choose another with --port") from None


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExemplarColorError(f"the app needs {' and '.join(missing)}: pip install 'exemplar_color[app]'")
    if args.port > 65535:
        raise ExemplarColorError(f"--port {args.port}: ports go up to 65535")
    import uvicorn

    from ..app.server import create_app
    from ..models import colours_alone

    if args.index:
        from pathlib import Path

        from ..retrieval.gallery import read_manifest

        read_manifest(Path(args.index))  # a missing or interrupted index: one line, before serving
    _check_port(args.host, args.port)  # busy: one line, before the URL is printed
    if args.host not in LOOPBACK_HOSTS:
        print(f"warning: listening on {args.host}: anyone who can reach it can use this app", file=sys.stderr)
    app = create_app(lambda: colorizer_from(args, index=args.index), index=args.index,
                     max_upload_bytes=args.max_upload_mb * 2**20, host=args.host,
                     max_upload_pixels=args.max_upload_pixels, colours_alone=colours_alone(args.model))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"exemplar-color app: http://{shown}:{args.port}  (Ctrl+C stops it)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
