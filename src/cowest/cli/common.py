"""What every config command shares: `cowest <cmd> CONFIG [KEY=VALUE ...] [--verbose]`, the config it loads, and
where the libraries' console output goes. Imports only the standard library at import time (keeps --help light)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig


def add_config_args(p: argparse.ArgumentParser) -> None:
    """`CONFIG [KEY=VALUE ...]`: a YAML experiment config and dotted overrides (e.g. `sft.lr=1e-4`)."""
    p.add_argument("config", help="experiment config (YAML), e.g. configs/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. task.eval_limit=20")
    p.add_argument("--verbose", action="store_true",
                   help="show the libraries' own output (progress bars, warnings, training logs) on the console "
                        "instead of RUN_DIR/logs/libraries.log")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    from cowest.core.config import load_config

    return load_config(args.config, args.overrides)


def library_log(args: argparse.Namespace, cfg: ExperimentConfig) -> ContextManager[Path]:
    """The libraries' console output goes to RUN_DIR/logs/libraries.log while the command runs, unless --verbose."""
    from cowest.core.layout import RunLayout
    from cowest.cli.library_output import library_output

    return library_output(RunLayout.of(cfg).libraries_log, getattr(args, "verbose", False))
