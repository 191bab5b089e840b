"""The loop's subcommands: `sft`, `feedback`, `align`, `run`. Argument parsing only; the work is in cowest.pipeline.loop."""

from __future__ import annotations

import argparse

from cowest.cli.common import add_config_args, config_from_args, library_log


def cmd_sft(args: argparse.Namespace) -> int:
    from cowest.pipeline.loop import do_sft, locked_run

    cfg = config_from_args(args)
    with locked_run(cfg), library_log(args, cfg):
        print(f"adapter: {do_sft(cfg, args.force)}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from cowest.pipeline.loop import do_feedback, locked_run

    cfg = config_from_args(args)
    with locked_run(cfg), library_log(args, cfg):
        stats = do_feedback(cfg, args.round, args.force)
    print(f"pairs: {stats.get('pairs')} from {stats.get('questions')} questions")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    from cowest.pipeline.loop import do_align, locked_run

    cfg = config_from_args(args)
    with locked_run(cfg), library_log(args, cfg):
        print(f"adapter: {do_align(cfg, args.round, args.method, args.force)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from cowest.pipeline.loop import run_all, summary_table

    cfg = config_from_args(args)
    with library_log(args, cfg):
        report = run_all(cfg, set(args.force))  # holds the run directory itself; checks the stage names
    print(summary_table(cfg))
    print(f"report: {report}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, fn, help_ in [
        ("sft", cmd_sft, "specialise the weak model on the task's train split (TRL SFT + LoRA)"),
        ("feedback", cmd_feedback, "collaborative feedback: K drafts, solo and refined answers, influence, pairs"),
        ("align", cmd_align, "align the weak model on pairs.jsonl (DPO, or --method sft_positive)"),
    ]:
        p = sub.add_parser(name, help=help_)
        add_config_args(p)
        p.add_argument("--force", action="store_true", help="redo the stage even if its outputs exist")
        if name != "sft":
            p.add_argument("--round", type=int, default=1, help="feedback/align round (default 1)")
        if name == "align":
            p.add_argument("--method", choices=["dpo", "sft_positive"], default=None,
                           help="default: the config's align.method")
        p.set_defaults(func=fn)
    p = sub.add_parser("run", help="the whole loop: sft -> feedback -> align -> eval -> report")
    add_config_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="redo one stage (repeatable): sft, feedback, align, eval or report")
    p.set_defaults(func=cmd_run)
