"""The `cowest` command line: subcommands that parse arguments and call the library, no logic of their own.

Each subcommand is a small `cmd_<name>(args) -> int`. Library errors (`CowestError`) print as one line
`cowest: error: ...` on stderr with exit status 2, never a traceback. This module imports only the standard
library and `cowest.errors` at import time, so `cowest --help` stays fast: every command imports what it needs.

Config commands share one shape, `cowest <cmd> CONFIG [KEY=VALUE ...]` (`add_config_args` / `config_from_args`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from cowest.errors import CowestError

def add_config_args(p: argparse.ArgumentParser) -> None:
    """`CONFIG [KEY=VALUE ...]`: a YAML experiment config and dotted overrides (e.g. `sft.lr=1e-4`)."""
    p.add_argument("config", help="experiment config (YAML), e.g. configs/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. task.eval_limit=20")
    p.add_argument("--verbose", action="store_true",
                   help="show the libraries' own output (progress bars, warnings, training logs) on the console "
                        "instead of RUN_DIR/logs/libraries.log")


def config_from_args(args: argparse.Namespace):  # -> ExperimentConfig (not imported here: keeps --help light)
    from cowest.config import load_config

    return load_config(args.config, args.overrides)


def library_log(args: argparse.Namespace, cfg):  # -> a context manager
    """The libraries' console output goes to RUN_DIR/logs/libraries.log while the command runs, unless --verbose."""
    from cowest.library_output import library_output

    from cowest.layout import RunLayout

    return library_output(RunLayout.of(cfg).libraries_log, getattr(args, "verbose", False))


# ---- tasks ---------------------------------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    """List every task (family, metrics, subsets); with --data, each split found there and its row count."""
    from cowest.config import TaskConfig
    from cowest.tasks.base import get_task, task_names

    data = Path(args.data) if args.data else None
    if data is not None and not data.is_dir():
        raise CowestError(f"--data {data}: not a folder")
    for name in task_names():
        task = get_task(name)
        head = f"{name}  [{task.family}; {', '.join(task.metrics)}]"
        print(f"{head}  {task.description}".rstrip())
        if data is None:
            if task.subsets:
                print(f"    subsets: {', '.join(task.subsets)}")
            continue
        for subset in task.subsets or (None,):
            cfg = TaskConfig(name=name, subset=subset)
            files = task.find_files(data, cfg)
            label = f"{subset}: " if subset else ""
            if not files:
                how = "; built without files (generated or downloaded)" if task.build else ""
                print(f"    {label}no files in {data}{how}")
                continue
            counts = ", ".join(f"{split} {len(task.read_file(path, cfg)):,}" for split, path in files.items())
            print(f"    {label}{counts}")
    return 0


# ---- data check ----------------------------------------------------------------------------------------------


def _fields(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise CowestError(f"--fields '{part}': expected COWEST_FIELD=FILE_KEY, e.g. question=text")
            out[key.strip()] = value.strip()
    return out


def cmd_data_check(args: argparse.Namespace) -> int:
    """Read one file with a task's loader; print the row count (and the gold distribution) or the first error."""
    from collections import Counter

    from cowest.config import TaskConfig
    from cowest.tasks.base import get_task

    task = get_task(args.task)
    if args.subset is not None and task.subsets and args.subset not in task.subsets:
        from cowest.errors import UnknownNameError

        raise UnknownNameError(f"{task.name} subset", args.subset, list(task.subsets))
    path = Path(args.file)
    if not path.is_file():
        raise CowestError(f"{path}: file not found")
    try:
        cfg = TaskConfig(name=args.task, data=str(path), subset=args.subset, family=args.family,
                         fields=_fields(args.fields), labels=args.labels.split(",") if args.labels else None)
    except ValueError as e:  # pydantic's ValidationError
        raise CowestError(f"invalid option: {e}") from None
    samples = task.read_file(path, cfg)
    golds = Counter(s.gold for s in samples)
    shown = ", ".join(f"{g} {n:,}" for g, n in golds.most_common(8))
    more = f" (+{len(golds) - 8} more)" if len(golds) > 8 else ""
    family = samples[0].family
    print(f"{path}: {len(samples):,} rows OK (task {task.name}{'/' + args.subset if args.subset else ''}, "
          f"family {family})")
    if family != "qa":
        print(f"    gold: {shown}{more}")
    return 0


# ---- eval, report ----------------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate cfg.eval.strategies x draft formats on the eval split; write traces/ and metrics.json."""
    from cowest.layout import EvalDir, RunLayout
    from cowest.loop import do_eval, locked_run

    cfg = config_from_args(args)
    folder = EvalDir(Path(args.out)) if args.out else RunLayout.of(cfg).eval
    with locked_run(cfg), library_log(args, cfg):
        m = do_eval(cfg, args.force, None, folder.path)
    h = m.headline
    for name, s in m.systems.items():
        v = s.metrics[h]
        print(f"{name:24s} {h} {v.value:.3f} [{v.ci[0]:.3f}, {v.ci[1]:.3f}]  "
              f"extraction failures {s.extraction_failures.total}")
    print(f"wrote {folder.metrics}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render report.md and plots from one or more run directories, without re-running anything."""
    from cowest.report import render_report

    print(f"wrote {render_report([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)}")
    return 0


# ---- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cowest", description="CoWeST: a weak model drafts, a strong model answers; the weak model is "
                                   "fine-tuned, then aligned on which drafts helped the strong model.")
    from cowest import __version__

    parser.add_argument("--version", action="version", version=f"cowest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tasks", help="list tasks; with --data, their splits and row counts")
    p.add_argument("--data", help="data folder (e.g. ../shared/data)")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("data", help="data utilities")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = data_sub.add_parser("check", help="validate a data file with a task's loader")
    c.add_argument("file")
    c.add_argument("--task", required=True, help="task name (see `cowest tasks`)")
    c.add_argument("--subset", help="subset of a multi-part task (ethics: commonsense, ..., utilitarianism)")
    c.add_argument("--family", choices=["qa", "mc", "cls"], help="jsonl task: the task family")
    c.add_argument("--fields", action="append", default=[], metavar="FIELD=KEY[,...]",
                   help="jsonl task: map cowest fields (id, question, answer, options, label, rationale) to keys")
    c.add_argument("--labels", help="jsonl task with --family cls: comma-separated labels")
    c.set_defaults(func=cmd_data_check)

    p = sub.add_parser("eval", help="evaluate strategies (weak_only, strong_only, collaborate ...) on the eval split")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default: <run_dir>/eval)")
    p.add_argument("--force", action="store_true", help="redo the evaluation even if its traces exist")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="report.md and plots from run directories")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="report file or folder (default: RUN_DIR/report.md of the first)")
    p.set_defaults(func=cmd_report)

    from cowest.cli_loop import add_loop_commands

    add_loop_commands(sub)
    from cowest.models.listing import add_models_command

    add_models_command(sub)
    from cowest.serve import add_serve_command

    add_serve_command(sub)
    from cowest.routing.cli import add_router_command

    add_router_command(sub)
    # ---- subcommands owned by others; the lead wires them here when their modules exist: ----
        #   sft      CONFIG [KEY=VALUE ...]  (cowest.train.sft)     feedback CONFIG [KEY=VALUE] (cowest.feedback)
    #   align    CONFIG [KEY=VALUE ...]  (cowest.train.dpo)     run      CONFIG [KEY=VALUE] (all stages)
    #   models   (backends and embedded models)                 serve    (HTTP server)
    # Use add_config_args(p) for the CONFIG [KEY=VALUE ...] shape and config_from_args(args) to load it.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cowest` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CowestError as e:
        print(f"cowest: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cowest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # `python -m cowest.cli` (e.g. under `accelerate launch -m cowest.cli sft CONFIG`)
    raise SystemExit(main())
