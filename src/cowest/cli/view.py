"""`cowest view RUN_DIR [RUN_DIR ...] [--host H] [--port P] [--export DIR]`: browse runs question by question
(`cowest.view`)."""

from __future__ import annotations

import argparse
import sys


def cmd_view(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cowest.view.data import View, ViewError
    from cowest.view.serve import build_app, export

    view = View.open(args.run_dirs)
    try:
        view.warm()
    except (ViewError, ValueError) as e:  # shown on the page instead: a run still being written, another layout
        print(f"note: {str(e).splitlines()[0][:200]}", file=sys.stderr)
    if args.export:
        n = export(view, Path(args.export))
        print(f"wrote {n} files to {args.export}; open {Path(args.export).resolve() / 'index.html'} in a browser")
        return 0
    from cowest.core.errors import CowestError, require

    uvicorn = require("uvicorn", "serve")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: the page has no authentication, anyone who can reach this "
              "address can read these runs", file=sys.stderr)
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:
            s.bind((args.host, args.port))  # port 0: a free one, chosen now so the URL can be printed
            port = s.getsockname()[1]
    except OSError as e:
        raise CowestError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); choose another --port") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cowest view: http://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    uvicorn.run(build_app(view), host=args.host, port=port, log_level="warning")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="browse runs question by question in a local web page (or --export a folder)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories; two or more are compared")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--export", metavar="DIR", default=None,
                   help="write the page as a static folder (opens from disk, no server, no network) instead")
    p.set_defaults(func=cmd_view)
