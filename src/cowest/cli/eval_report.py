"""`cowest eval CONFIG` (the evaluation stage alone) and `cowest report RUN_DIR ...` (report.md from files)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cowest.cli.common import add_config_args, config_from_args, library_log


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate cfg.eval.strategies x draft formats on the eval split; write traces/ and metrics.json."""
    from cowest.core.layout import EvalDir, RunLayout
    from cowest.pipeline.loop import do_eval, locked_run

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
    from cowest.pipeline.report import render_report

    print(f"wrote {render_report([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate strategies (weak_only, strong_only, collaborate ...) on the eval split")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default: <run_dir>/eval)")
    p.add_argument("--force", action="store_true", help="redo the evaluation even if its traces exist")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="report.md and plots from run directories")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="report file or folder (default: RUN_DIR/report.md of the first)")
    p.set_defaults(func=cmd_report)
