"""The `cowest` command line: every subcommand lives in this package, parses arguments and calls the library; no
library module imports it.

Each subcommand is a small `cmd_<name>(args) -> int` in the module named for it (`data`: tasks and data check,
`eval_report`: eval and report, `loop`: sft, feedback, align, run, `models`, `serve`, `router`, `view`), which registers it with
`add_commands(sub)`. Library errors (`CowestError`) print as one line `cowest: error: ...` on stderr with exit
status 2, never a traceback. The package imports only the standard library and `cowest.core.errors` at import time, so
`cowest --help` stays fast: every command imports what it needs.

Config commands share one shape, `cowest <cmd> CONFIG [KEY=VALUE ...]` (`common.add_config_args`).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from typing import Sequence

from cowest.cli import data, eval_report, loop, models, router, serve, view
from cowest.core.errors import CowestError

COMMAND_MODULES = (data, eval_report, loop, models, serve, router, view)


def build_parser() -> argparse.ArgumentParser:
    from cowest import __version__

    parser = argparse.ArgumentParser(
        prog="cowest", description="CoWeST: a weak model drafts, a strong model answers; the weak model is "
                                   "fine-tuned, then aligned on which drafts helped the strong model.")
    parser.add_argument("--version", action="version", version=f"cowest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cowest` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CowestError as e:
        print(f"cowest: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused a write or read the checks could not foresee: a full disk, a
        # read-only folder, a file removed under the run. What was written is whole or repaired on the next run.
        where = f"{e.filename}: " if e.filename else ""
        print(f"cowest: error: {where}{e.strerror or e} (free space or permissions, then rerun the same command to "
              "resume)", file=sys.stderr)
        return 2
    except sqlite3.Error as e:  # the response cache's database on a full or read-only disk
        print(f"cowest: error: response cache: {e} (free space or permissions, then rerun the same command to "
              "resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cowest: interrupted", file=sys.stderr)
        return 130
