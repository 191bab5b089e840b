"""Run files -> `report.md` and PNG plots, without re-running anything.

Reads, per run directory, whatever is there: `metrics.json` (in the run or its `eval/` folder) and its traces,
`round<r>/feedback/pairs_stats.json` and each DPO adapter's `train_log.jsonl` from the loop. Missing files skip their
section. Plots: each metric per system with its 95% CI, the headline metric against strong-model tokens per sample,
and the DPO log-probabilities and reward margin over the steps.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cowest.core.errors import CowestError
from cowest.core.markdown import table
from cowest.core.layout import ADAPTER_META, REPORT_FILE, EvalDir, RunLayout
from cowest.core.records import Trace
from cowest.core.results import Metrics, SampleScore, signed
from cowest.core.system_id import SystemId


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metrics_section(m: Metrics) -> list[str]:
    names, seeds = m.metrics, m.seeds
    several = len(seeds) > 1
    head = ["system", "strategy", "draft"] + [f"{n} [95% CI]" + (" (mean ± sd)" if several else "") for n in names]
    head += ["extraction failures", "strong tok/sample", "weak tok/sample", "wall s"]
    rows = []
    for name, s in m.systems.items():
        row = [name, s.strategy, s.draft_format or "–"]
        for n in names:
            v = s.metrics[n]
            cell = f"{v.value:.3f} [{v.ci[0]:.3f}, {v.ci[1]:.3f}]"
            if several:
                cell += f" ({v.mean:.3f} ± {v.sd:.3f})"
            row.append(cell)
        ef = s.extraction_failures
        row += [f"{ef.total} ({ef.rate:.1%})", _usage_cell(s.usage.get("strong")), _usage_cell(s.usage.get("weak")),
                _fmt(s.wall_s, 1)]
        rows.append(row)
    out = [f"Task `{m.task}`, {m.n_samples} samples, seeds {seeds}, "
           f"{_fmt(m.bootstrap_samples) if m.bootstrap_samples is not None else '?'} bootstrap resamples.", ""]
    out += table(head, rows)
    paired = [d for p in m.paired if p.metric == m.headline and (d := m.diff(p.a, p.b)) is not None]
    if paired:
        out += [f"Paired differences in {m.headline} (a − b, same samples):", ""]
        out += table(["a", "b", "diff [95% CI]", "CI excludes 0"],
                      [[d.a, d.b, str(d), "yes" if d.excludes_zero else "no"] for d in paired])
    return out


def _usage_cell(u: Any) -> str:
    return _fmt(None if u is None else u.tokens_per_sample, 0)


def _load_traces(metrics_path: Path, system: str, seed: int) -> dict[str, Trace]:
    from cowest.core.traces import read_traces

    return {t.sample_id: t for t in read_traces(EvalDir(metrics_path.parent).trace(system, seed))}


def _scores(metrics_path: Path, m: Metrics, system: str, seed: int) -> dict[str, SampleScore]:
    """Each sample's answer and headline score as the summary read them (metrics.json); a metrics.json of before
    those were recorded falls back to the scores in the trace file."""
    recorded = m.systems[system].per_sample.get(str(seed))
    if recorded is not None:
        return recorded
    return {i: SampleScore(prediction=t.prediction, score=t.scores.get(m.headline))
            for i, t in _load_traces(metrics_path, system, seed).items()}


def traces_section(metrics_path: Path, m: Metrics) -> list[str]:
    """Per-sample wins and losses of each system against the strong model alone, and one example where they differ."""
    seed = m.seeds[0]
    headline = m.headline
    base = next((n for n, s in m.systems.items() if s.strategy == "strong_only"), None)
    if base is None:
        return []
    base_s = _scores(metrics_path, m, base, seed)
    if not base_s:
        return []
    rows, example = [], None
    for name in m.systems:
        if name == base:
            continue
        sc = _scores(metrics_path, m, name, seed)
        common = [i for i in sc if i in base_s and sc[i].score is not None and base_s[i].score is not None]
        won = [i for i in common if sc[i].score > base_s[i].score]  # type: ignore[operator]
        lost = [i for i in common if sc[i].score < base_s[i].score]  # type: ignore[operator]
        rows.append([name, str(len(won)), str(len(lost)), str(len(common) - len(won) - len(lost))])
        if example is None and won:
            example = (name, won[0], sc[won[0]].prediction, base_s[won[0]].prediction)
    out = [f"Per sample against `{base}` ({headline}, seed {seed}):", ""]
    out += table(["system", "better", "worse", "same"], rows)
    if example:
        name, sample_id, pred, base_pred = example
        out += [f"Example where `{name}` beats `{base}` (sample `{sample_id}`):", ""]
        trace = _load_traces(metrics_path, name, seed).get(sample_id)
        for st in trace.steps if trace else []:
            out += [f"- {st.role} / {st.name}: " + _quote(st.output.text)]
        out += [f"- prediction {pred!r}; `{base}` predicted {base_pred!r}", ""]
    return out


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return "`" + (text[:limit] + " …" if len(text) > limit else text).replace("`", "'") + "`"


def bare_chosen_warning(rnd: str, stats: dict[str, Any]) -> str | None:
    """A warning when most pairs choose a draft that is only an answer line over one with more: DPO then prefers
    short drafts to reasoning, and teaches the weak model to drop its reasoning (ETHICS-justice, BENCHMARKS.md's
    method reading). Direct drafts are all answer lines on both sides, and give no warning."""
    n, bare = stats.get("pairs") or 0, stats.get("bare_answer_pairs") or {}
    chosen = bare.get("chosen", 0)
    if not n or chosen <= n / 2 or chosen <= bare.get("rejected", 0):
        return None
    return (f"- **Warning** ({rnd}): {chosen} of {n} pairs choose a draft that is only an answer line (rejected: "
            f"{bare.get('rejected', 0)}), so DPO will teach the weak model to drop its reasoning; train SFT on drafts "
            "with reasoning (sft.without_rationale=drop, or more sft.rationale_samples).")


def rounds_section(run_dir: Path, out_dir: Path) -> list[str]:
    rows, spread = [], []
    run = RunLayout(run_dir)
    for r, path in run.feedback_stats():
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rnd = run.round_dir(r).name
        rows.append([rnd, _fmt(s.get("questions")), _fmt(s.get("drafts")), _fmt(s.get("distinct_drafts_mean"), 2),
                     _fmt(s.get("pairs")), _fmt(s.get("pairs_per_feedback_question"), 2),
                     _fmt(s.get("mean_gap")), _fmt(s.get("positive_share")), _fmt(s.get("questions_without_pair")),
                     _fmt(s.get("strong_calls_per_pair"), 2), _fmt(s.get("naive_strong_calls_per_pair"), 2)])
        warning = bare_chosen_warning(rnd, s)
        if warning:
            spread.append(warning)
        if s.get("distinct_drafts_histogram"):
            hist = ", ".join(f"{k}: {v}" for k, v in s["distinct_drafts_histogram"].items())
            samp = s.get("sampling", {})
            spread.append(f"- {rnd}: distinct drafts per question (K = {samp.get('k', '?')}, temperature "
                          f"{samp.get('temperature', '?')}, top_p {samp.get('top_p', '?')}): {{{hist}}} questions")
    if not rows:
        return []
    out = ["## Collaborative feedback", ""]
    out += table(["round", "questions", "drafts", "distinct drafts/question", "pairs", "pairs/question", "mean gap",
                   "positive share", "no pair", "strong+judge calls/pair", "naive calls/pair"], rows)
    if spread:
        out += spread + [""]
    for r, png in run.pair_plots():
        out += [f"![{run.round_dir(r).name} pairs]({os.path.relpath(png, out_dir)})", ""]
    return out


DIAGNOSTIC_KEYS = ("logps/chosen", "logps/rejected", "rewards/chosen", "rewards/margins")


def dpo_log(adapter: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (adapter / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if all(k in row for k in DIAGNOSTIC_KEYS):
            rows.append(row)
    return rows


def chosen_logp_drop(rows: list[dict[str, Any]], beta: float, tokens: float | None) -> float:
    """How far the chosen drafts' log-probability relative to the reference (rewards/chosen ÷ β) fell from the first
    to the last logged steps, in nats per token (per draft when the token count is unknown). Each end is the mean of
    the first / last tenth of the steps (at least one), as each step sees a different batch."""
    n = max(1, len(rows) // 10)
    first = sum(r["rewards/chosen"] for r in rows[:n]) / n / beta
    last = sum(r["rewards/chosen"] for r in rows[-n:]) / n / beta
    return float(first - last) / (tokens or 1.0)


def _logp_drop_warn(run_dir: Path) -> float:
    from cowest.core.config import AlignConfig

    try:
        import yaml

        return float(yaml.safe_load(RunLayout(run_dir).config.read_text())["align"]["logp_drop_warn"])
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return AlignConfig().logp_drop_warn


def _diagnostics(run_dir: Path) -> tuple[list[list[str]], list[str], dict[str, list[dict[str, Any]]]]:
    """Each DPO adapter's table row, the warnings and the logged steps (see `diagnostics_section`)."""
    limit = _logp_drop_warn(run_dir)
    rows, warnings, logs = [], [], {}
    for adapter in RunLayout(run_dir).train_logs():
        log = dpo_log(adapter)
        if not log:
            continue  # SFT-style recipes log no rewards
        try:
            meta = json.loads((adapter / ADAPTER_META).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
        name = f"{adapter.parent.parent.name}/{adapter.parent.name}"
        logs[name] = log
        tokens = meta.get("chosen_tokens_mean")
        drop = chosen_logp_drop(log, float(meta.get("beta") or 0.1), tokens)
        unit = "nats/token" if tokens else "nats/draft"
        first, last = log[0], log[-1]
        loss = meta.get("loss_type", "?") + (f" + {meta['rpo_alpha']} NLL" if meta.get("rpo_alpha") else "")
        rows.append([name, loss, f"{first['step']}–{last['step']}"]
                    + [f"{first[k]:.2f} → {last[k]:.2f}" for k in DIAGNOSTIC_KEYS] + [f"{signed(-drop)} {unit}"])
        if drop > limit:
            warnings.append(f"**Warning** ({name}): the chosen drafts' log-probability fell by {drop:.3f} {unit} "
                            f"against the reference between the first and last steps, more than align.logp_drop_warn"
                            f" = {limit}: DPO is lowering the good drafts with the bad ones. Try align.rpo_alpha "
                            f"(an NLL term on the chosen drafts), a lower align.lr, or fewer steps.")
    return rows, warnings, logs


def logp_drop_warnings(run_dir: Path) -> list[str]:
    """The training diagnostics' warnings alone (`cowest view` shows them without the table and plot)."""
    return _diagnostics(run_dir)[1]


def diagnostics_section(run_dir: Path, out_dir: Path, prefix: str = "") -> list[str]:
    """Each DPO adapter's chosen and rejected log-probabilities and reward margin over the steps (its
    train_log.jsonl), a plot, and a warning when the chosen drafts' log-probability fell by more than
    align.logp_drop_warn nats per token (the run's config.yaml)."""
    rows, warnings, logs = _diagnostics(run_dir)
    if not rows:
        return []
    out = ["## Training diagnostics", "",
           "TRL's logged values, first → last logged step: log-probabilities summed over each completion (batch "
           "mean; each step sees other pairs), rewards = β × log-ratio to the reference; the last column is the "
           "change of the chosen drafts' log-ratio (rewards/chosen ÷ β) per token, negative when it fell.", ""]
    out += table(["adapter", "loss", "steps", *DIAGNOSTIC_KEYS, "chosen log-ratio change"], rows)
    for w in warnings:
        out += [w, ""]
    png = out_dir / f"{prefix}training.png"
    plot_training(logs, png)
    return out + [f"![training]({png.name})", ""]


def plot_training(logs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, log in logs.items():
        steps = [r["step"] for r in log]
        axes[0].plot(steps, [r["logps/chosen"] for r in log], label=f"{name} chosen")
        axes[0].plot(steps, [r["logps/rejected"] for r in log], "--", label=f"{name} rejected")
        axes[1].plot(steps, [r["rewards/margins"] for r in log], label=name)
    axes[0].set(title="log-probability (summed per completion)", xlabel="step")
    axes[1].set(title="reward margin (chosen − rejected)", xlabel="step")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def round_trend_section(m: Metrics) -> list[str]:
    """Each round's aligned collaboration next to the round before it (round 1: the SFT collaboration), flagging a
    round that made the headline metric worse (and whether its paired CI excludes 0)."""
    h, systems = m.headline, m.systems
    ids = [(sid, name) for name in systems if (sid := SystemId.parse(name)) and sid.is_aligned_collab]
    rounds = sorted((sid.round or 0, name) for sid, name in ids)
    prev = SystemId.collab().name
    if not rounds or prev not in systems:
        return []
    rows = []
    for r, name in rounds:
        d = m.diff(name, prev)
        verdict = "n/a" if d is None else ("worse (CI excludes 0)" if d.hi < 0 else "worse" if d.value < 0 else
                                           "better (CI excludes 0)" if d.lo > 0 else "better" if d.value > 0 else "same")
        rows.append([f"round {r}", _fmt(systems[name].metrics[h].value), prev,
                     "–" if d is None else signed(d.value), "" if d is None else f"[{signed(d.lo)}, {signed(d.hi)}]",
                     verdict])
        prev = name
    return [f"## Rounds ({h})", ""] + table(["round", h, "against", "difference", "95% CI", "verdict"], rows)


def plot_metrics(m: Metrics, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, systems = m.metrics, list(m.systems)
    fig, axes = plt.subplots(1, len(names), figsize=(1.2 + 0.9 * len(systems) * len(names), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], names):
        vals = [m.systems[s].metrics[metric] for s in systems]
        y = [v.value for v in vals]
        err = [[v.value - v.ci[0] for v in vals], [v.ci[1] - v.value for v in vals]]
        ax.bar(range(len(systems)), y, yerr=err, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{metric} (95% CI)", ylim=(0, 1))
    fig.suptitle(f"{m.task}: {m.n_samples} samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cost(m: Metrics, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = m.headline
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, s in m.systems.items():
        x = s.tokens_per_sample("strong")
        v = s.metrics[h]
        ax.errorbar([x], [v.value], yerr=[[v.value - v.ci[0]], [v.ci[1] - v.value]], fmt="o", capsize=3)
        ax.annotate(name, (x, v.value), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="strong-model tokens per sample", ylabel=h, title=f"{m.task}: {h} vs strong tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def selection_section(run_dir: Path) -> list[str]:
    """Each round's alignment check (`align.select_split`): the verdict and which adapter the run keeps, a warning
    where the aligned model was resolved below its start."""
    from cowest.core.selection import read_selection

    run = RunLayout(run_dir)
    checks = [sel for r in run.rounds_on_disk() if (sel := read_selection(run, r)) is not None]
    if not checks:
        return []
    out = ["## Alignment check", ""]
    for sel in checks:
        out.append(f"- {'**Warning**: ' if sel.verdict == 'below' else ''}{sel.why} (best adapter: `{sel.best}`, "
                   "which `cowest serve` serves).")
    return out + [""]


def render_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write report.md (default: into the first run directory) and its PNGs next to it; return its path."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise CowestError("render_report: give at least one run directory")
    for d in run_dirs:
        if not d.is_dir():
            raise CowestError(f"run directory not found: {d}")
    out = Path(out) if out is not None else run_dirs[0] / REPORT_FILE
    if out.suffix != ".md":
        out = out / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# CoWeST report", ""]
    for i, d in enumerate(run_dirs):
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", d.resolve().name) if len(run_dirs) > 1 else ""
        prefix = f"{i}_{tag}_" if tag else ""
        lines += [f"## Run `{d}`", ""]
        mpath = RunLayout(d).metrics_file()
        if mpath is None:
            lines += ["No metrics.json (evaluation not run yet).", ""]
        else:
            m = Metrics.read(mpath)
            lines += metrics_section(m)
            if m.systems:
                plot_metrics(m, out.parent / f"{prefix}metrics.png")
                plot_cost(m, out.parent / f"{prefix}cost.png")
                lines += [f"![metrics]({prefix}metrics.png)", "", f"![cost]({prefix}cost.png)", ""]
            lines += traces_section(mpath, m)
            lines += round_trend_section(m)
            from cowest.routing.curve import routing_section

            lines += routing_section(mpath, m, out.parent, prefix)
        from cowest.pipeline.costs import costs_section

        lines += costs_section(d, mpath)
        lines += rounds_section(d, out.parent)
        lines += selection_section(d)
        lines += diagnostics_section(d, out.parent, prefix)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
