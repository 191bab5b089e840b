"""`cowest serve CONFIG [KEY=VALUE ...] [--host H] [--port P] [--adapter DIR] [--insecure-no-auth]`: the
collaboration behind an OpenAI-compatible endpoint (models: `cowest.serve`, HTTP: `cowest.serve_app`)."""

from __future__ import annotations

import argparse

from cowest.cli.common import add_config_args, config_from_args


def cmd_serve(args: argparse.Namespace) -> int:
    from cowest.core.config import validate_config
    from cowest.core.errors import require
    from cowest.serve import Collaboration, server_token
    from cowest.serve_app import build_app

    cfg = config_from_args(args)
    if args.host or args.port is not None:  # validated like the config: a bad --port is a one-line error
        data = cfg.model_dump()
        data["serve"].update({k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
        cfg = validate_config(data, source="--host/--port")
    token = server_token(cfg, args.insecure_no_auth)
    uvicorn = require("uvicorn", "serve")
    collab = Collaboration.load(cfg, args.adapter)
    app = build_app(collab, token=token)
    from cowest.serve_http import server_config

    try:
        uvicorn.Server(server_config(app, cfg.serve)).run()
    finally:
        collab.close()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the collaboration as an OpenAI-compatible endpoint (/v1/chat/completions)")
    add_config_args(p)
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port, 8000)")
    p.add_argument("--adapter", default=None,
                   help="weak model adapter (default: the run folder's latest round<r>/align/adapter, else none)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve without a bearer token (loopback hosts only)")
    p.set_defaults(func=cmd_serve)
