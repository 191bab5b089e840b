"""`cowest tasks [--data DIR]` and `cowest data check FILE --task T ...`: what tasks exist and whether a file reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from cowest.core.errors import CowestError


def cmd_tasks(args: argparse.Namespace) -> int:
    """List every task (family, metrics, subsets); with --data, each split found there and its row count."""
    from cowest.core.config import TaskConfig
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
            if task.options.model_fields:
                print(f"    options: {', '.join(task.options.model_fields)}")
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

    from cowest.core.config import TaskConfig
    from cowest.core.files import regular_file
    from cowest.tasks.base import check_task

    path = Path(args.file)
    options = {k: v for k, v in (("family", args.family), ("fields", _fields(args.fields)),
                                 ("labels", args.labels.split(",") if args.labels else None)) if v}
    cfg = TaskConfig(name=args.task, data=str(path), subset=args.subset, options=options)
    task = check_task(cfg)  # the task, its subset and the options, before the file is looked at
    regular_file(path, "data file to check", CowestError)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
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
