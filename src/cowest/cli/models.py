"""`cowest models [--verify]`: the embedded models and which backends can run (the table: `models.listing`)."""

from __future__ import annotations

import argparse


def cmd_models(args: argparse.Namespace) -> int:
    """Print the embedded models; exit 1 when `--verify` finds an installed model whose hash is wrong."""
    from cowest.models.listing import format_table, model_rows

    rows = model_rows(verify=args.verify)
    print(format_table(rows, args.verify))
    return 1 if any(r["state"] == "BAD" for r in rows) else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="embedded models (role, files, size, installed/verified) and backends")
    p.add_argument("--verify", action="store_true", help="SHA-256-check every installed embedded model")
    p.set_defaults(func=cmd_models)
