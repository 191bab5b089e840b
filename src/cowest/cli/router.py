"""`cowest router CONFIG [KEY=VALUE ...] [--round R]`: train the learned router from a run's feedback records."""

from __future__ import annotations

import argparse

from cowest.cli.common import add_config_args, config_from_args


def cmd_router(args: argparse.Namespace) -> int:
    from cowest.pipeline.loop import locked_run
    from cowest.routing.learned import train_router

    cfg = config_from_args(args)
    with locked_run(cfg):
        r = train_router(cfg, args.round)
    auc = "–" if r["heldout_auc"] is None else f"{r['heldout_auc']:.3f}"
    print(f"learned router: {r['rows']} drafts of {r['questions']} questions, {r['positives']} where the strong "
          f"model's answer beats the draft's; held-out accuracy {r['heldout_accuracy']:.3f} (constant "
          f"{r['constant_accuracy']:.3f}), AUC {auc}")
    print(f"wrote {r['path']}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("router", help="train the learned router (route.routers: learned) from RUN_DIR's feedback")
    add_config_args(p)
    p.add_argument("--round", type=int, default=1, help="the feedback round whose records train it (default 1)")
    p.set_defaults(func=cmd_router)
