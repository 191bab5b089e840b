"""What every benchmark script shares: the machine's description and writing a table into BENCHMARKS.md.

Each script owns one block between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers, replaced on every
`--record`, so re-running a benchmark updates its table instead of appending a second one.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from cowest.core.results import Metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
"""The real data beside the checkout (train and dev splits), read by path, never copied."""


def library_log(layout: Any) -> Any:
    """A context in which the libraries' bars and notices go to RUN_DIR/logs/libraries.log, as `cowest run` sends
    them."""
    from cowest.cli.library_output import library_output

    return library_output(layout.libraries_log)


def run_loop(cfg: Any, force: set[str] | None = None, evaluate: bool = True) -> Any:
    """The whole loop (`run_all`, redoing the `force` stages; through alignment only when not `evaluate`) with the
    libraries' output in the run's log; returns the run's RunLayout."""
    from cowest.core.layout import RunLayout
    from cowest.pipeline.loop import run_all

    layout = RunLayout.of(cfg)
    with library_log(layout):
        run_all(cfg, force, evaluate)
    return layout


def reported_and_rest(cfg: Any) -> tuple[list, list]:
    """The eval split's questions a run reports (its seeded `task.eval_limit` subsample) and the rest of the split:
    where a benchmark tunes, or checks a reported difference again, without touching the reported figures."""
    from cowest.tasks.base import load_samples

    reported = load_samples(cfg.task, cfg.task.eval_split, cfg.task.eval_limit)
    ids = {s.id for s in reported}
    return reported, [s for s in load_samples(cfg.task, cfg.task.eval_split, None) if s.id not in ids]


def predictions(trace: Path, samples: list) -> list:
    """One system's predictions (`trace`: its traces file) for `samples`, in their order."""
    from cowest.pipeline.summary import traces_in_order

    return [t.prediction for t in traces_in_order(trace, samples)]


def value(ci: Any) -> str:
    """A metric with its CI (a `scoring.metrics.CI`)."""
    return f"{ci.value:.3f} [{ci.lo:.3f}, {ci.hi:.3f}]"


def difference(ci: Any) -> str:
    """A paired difference with its CI, signed."""
    from cowest.core.results import signed

    return f"{signed(ci.value)} [{signed(ci.lo)}, {signed(ci.hi)}]"


SPEED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
"""The CPU features that decide which engine and dtype are fastest (bf16 matmuls need AMX or AVX-512 BF16)."""


def cpu_flags() -> list[str]:
    """Which of SPEED_FLAGS this CPU has, read from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return [f for f in SPEED_FLAGS if f in flags]


def machine() -> str:
    """CPU model, count and speed-relevant flags, measured: "AMD EPYC, 2 CPUs, avx512_bf16 avx512f avx2"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        head = f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs"
    except (OSError, subprocess.CalledProcessError):
        head = platform.processor() or "unknown CPU"
    flags = cpu_flags()
    return f"{head}, {' '.join(flags) if flags else 'no AVX2'}" + ("" if "amx_tile" in flags else " (no AMX)")


def load_average() -> str:
    """The 1-minute load average: above ~0.5 on an idle machine, something else was running."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def ci(v: Any) -> str:
    """A metric value with its CI: a `cowest.core.results.MetricValue` or its dict."""
    value, (lo, hi) = (v["value"], v["ci"]) if isinstance(v, dict) else (v.value, v.ci)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def as_metrics(metrics: Metrics | dict) -> Metrics:
    """A metrics.json as read by `json.loads`, or already typed."""
    return metrics if isinstance(metrics, Metrics) else Metrics.model_validate(metrics)


def stage_rows(run: Path) -> list[str]:
    """One row per finished stage, from its done.json. A stage resumed after a stop is timed by `work_s` (its
    items' summed shares of wall time, over every attempt); `wall_s` covers only the last attempt."""
    import json

    rows, total = [], 0.0
    for done in sorted(run.glob("**/done.json"), key=lambda p: json.loads(p.read_text())["finished"]):
        d = json.loads(done.read_text())
        what = ", ".join(f"{k} {v if not isinstance(v, float) else round(v, 3)}" for k, v in d.items()
                         if k not in ("stage", "wall_s", "work_s", "finished", "attempts", "adapter")
                         and not isinstance(v, dict))  # nested records (engines) have tables of their own
        n = d.get("attempts", 1)
        resumed = n > 1 and "work_s" in d
        secs = d["work_s"] if resumed else d["wall_s"]
        rows.append(f"| {d['stage']} | {secs:.0f}{f' (over {n} attempts)' if resumed else ''} | {what} |")
        total += secs
    return rows + [f"| total (stages, without model loads between them) | {total:.0f} | |"]


def system_rows(metrics: Metrics | dict, names: dict[str, str] | None = None) -> list[str]:
    """One row per system: each metric with its CI, extraction failures, strong tokens per sample, wall s."""
    m = as_metrics(metrics)
    rows = []
    for name, s in m.systems.items():
        cells = " | ".join(ci(s.metrics[k]) for k in m.metrics)
        rows.append(f"| {(names or {}).get(name, name)} | {cells} | {s.extraction_failures.total}/"
                    f"{m.n_samples} | {s.tokens_per_sample('strong'):.0f} | {s.wall_s:.0f} |")
    return rows


def paired_rows(metrics: Metrics | dict, pairs: list[tuple[str, str]],
                names: dict[str, str] | None = None) -> list[str]:
    """`later − earlier` in every metric, for each (earlier, later) pair of systems."""
    m, names = as_metrics(metrics), names or {}
    rows = []
    for earlier, later in pairs:
        for metric in m.metrics:
            if (d := m.diff(later, earlier, metric)) is not None:
                rows.append(f"| {names.get(later, later)} − {names.get(earlier, earlier)} | {metric} | {d} |")
    return rows


def record(name: str, text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Put `text` in the block named `name` (replacing the old one, or appending a new block)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new, encoding="utf-8")
