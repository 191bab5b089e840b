"""The README's main command, measured: `cowest run configs/demo.yaml` in a fresh run directory, timed, with its table.

Prints (and with `--record` writes into BENCHMARKS.md) what a new user sees: the wall time against the 10-minute
goal, each stage's time, every system's exact match with its 95% CI and extraction failures, the paired differences
that carry the method's claims (collaboration against each single model, aligned against SFT collaboration) with a
line each saying whether its CI resolves it, the weak model's recall of the catalogue, the feedback's pair
statistics, and the DPO log-probability trends with example drafts before and after alignment. The machine's CPU, its speed flags and the load average before and after are
measured here, and the engines the run used are read from its config. Alone on the machine, under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/demo.py [--out runs/bench-demo] [--set KEY=VALUE ...] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cowest.core.results import signed
from cowest.pipeline.report import dpo_log

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import as_metrics, load_average, machine, paired_rows, record, stage_rows, system_rows  # noqa: E402

NAMES = {"weak_sft": "weak SFT alone", "strong": "strong alone", "collab_sft": "collaboration, SFT weak",
         "collab_aligned_r1": "collaboration, aligned weak", "collab_sft_positive_r1": "collaboration, SFT-on-chosen weak"}
CLAIMS = [("weak_sft", "collab_sft"), ("strong", "collab_sft"), ("collab_sft", "collab_aligned_r1"),
          ("weak_sft", "collab_aligned_r1"), ("strong", "collab_aligned_r1")]
GAIN_GOAL, ABOVE_SINGLE_GOAL = 0.05, 0.4
"""The issue's goals: aligned − SFT collaboration at least +0.05 with its CI above 0; aligned collaboration above
both single models by at least 0.4."""


def engines(run: Path, cfg: dict) -> str:
    """The engine and dtype each role actually ran on (eval/engines.json), with the config's setting."""
    used = json.loads((run / "eval" / "engines.json").read_text()) if (run / "eval" / "engines.json").exists() else {}

    def one(role: str) -> str:
        m, choice = cfg["models"][role], (used.get(role) or {}).get("choice") or {}
        ran = f"{choice['engine']} {choice['dtype']}" if choice else "as configured"
        if (used.get(role) or {}).get("batching"):
            ran += f", {used[role]['batching']} batching"
        return f"{role} {m['spec']} (config {m.get('engine', 'auto')}/{m.get('dtype', 'float32')}: ran {ran})"

    return "; ".join(one(r) for r in ("weak", "strong"))


def dpo_steps(run: Path) -> dict[int, dict]:
    """Round 1's logged DPO steps by step number (a step logged twice, the last step's summary, counts once)."""
    adapter = run / "round1" / "align" / "adapter"
    return {r["step"]: r for r in dpo_log(adapter)} if (adapter / "train_log.jsonl").exists() else {}


def dpo_trend(run: Path) -> list[str]:
    """First and last logged DPO step: chosen / rejected log-probabilities, reward margin and accuracy."""
    by_step = dpo_steps(run)
    if not by_step:
        return ["(no DPO steps logged)"]
    keys = ("logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies", "loss")
    out = ["| DPO step | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    steps = sorted(by_step)
    for step in sorted({steps[0], steps[len(steps) // 2], steps[-1]}):
        r = by_step[step]
        out.append(f"| {r['step']} | " + " | ".join(f"{r.get(k, float('nan')):.3f}" for k in keys) + " |")
    return out


def draft_facts(run: Path, cfg: dict) -> list[str]:
    """Per collaboration system: how many drafts state every fact the question needs, how many state a false one
    (a sentence that is not in the catalogue), and how often the strong model was right given all the facts. This
    separates the weak model's share of the errors (missing or wrong facts) from the strong model's (a wrong step)."""
    from cowest.core.config import TaskConfig
    from cowest.tasks import demo

    task = TaskConfig.model_validate(cfg["task"])
    gold = {s.id: s for s in demo.build(task.eval_split, task)}
    catalogue = set(demo.documents(task))
    out = ["| system | drafts with every needed fact | drafts with a false fact | drafts with the weak model's own "
           "answer | right, given every fact |", "|---|---|---|---|---|"]
    for system in ("collab_sft", "collab_aligned_r1"):
        path = run / "eval" / "traces" / f"{system}.seed0.jsonl"
        if not path.exists():
            continue
        complete = false = answered = right = 0
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for t in rows:
            draft, needed = t["steps"][0]["output"]["text"], gold[t["sample_id"]].knowledge or ""
            facts, _, _ = draft.partition("Answer:")
            stated = [f"{x.strip().rstrip('.')}." for x in facts.replace("\n", " ").split(". ") if x.strip()]
            has_all = demo.states_every_fact(needed, draft)
            complete += has_all
            answered += own_answer(draft)
            # a sentence that is not a catalogue fact: a false fact, or (cot drafts) the weak model's own step
            false += any(x not in catalogue and " is cheaper" not in x and not x.startswith("The heaviest")
                         and not x.startswith("The first") and "=" not in x for x in stated)
            right += has_all and t["scores"].get("exact_match", 0) == 1
        out.append(f"| {NAMES[system]} | {complete} of {len(rows)} | {false} of {len(rows)} | {answered} of "
                   f"{len(rows)} | {right} of {complete} |")
    return out


def own_answer(draft: str) -> bool:
    """The draft states the weak model's own answer (a cot draft's `Answer:` line), not only the facts."""
    return "Answer:" in draft


def changed_drafts(run: Path) -> list[tuple[dict, dict]]:
    """(SFT trace, aligned trace) of every dev question where the aligned weak model's draft differs."""
    traces = run / "eval" / "traces"
    sft = {t["sample_id"]: t for t in map(json.loads, (traces / "collab_sft.seed0.jsonl").read_text().splitlines())}
    aligned = map(json.loads, (traces / "collab_aligned_r1.seed0.jsonl").read_text().splitlines())
    return [(sft[a["sample_id"]], a) for a in aligned if a["sample_id"] in sft
            and a["steps"][0]["output"]["text"] != sft[a["sample_id"]]["steps"][0]["output"]["text"]]


def example_drafts(run: Path, n: int = 2) -> list[str]:
    """Dev questions where the aligned weak model's draft differs from the SFT one, with both outcomes."""
    out = []
    for s, a in changed_drafts(run)[:n]:
        q = a["steps"][0]["messages"][-1]["content"].split("\n")[0]
        for label, t in (("SFT", s), ("aligned", a)):
            draft = t["steps"][0]["output"]["text"].replace("\n", " ")
            out.append(f"- {label} draft for *{q}*: `{draft}` → strong answer `{t['prediction']}` "
                       f"(exact match {t['scores'].get('exact_match', 0):.0f})")
    return out or ["(the aligned model wrote the same drafts as the SFT model)"]


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def verdicts(run: Path, metrics: dict, stats: dict) -> list[str]:
    """The three claims in words, read off their CIs; where alignment is not resolved above SFT collaboration, what
    it had to learn from (pairs, DPO steps) and how much it moved the drafts."""
    m, out = as_metrics(metrics), []
    for earlier, later in CLAIMS:
        if (d := m.diff(later, earlier, "exact_match")) is not None:
            word = "above" if d.lo > 0 else "below" if d.hi < 0 else "not resolved above or below"
            out.append(f"- {NAMES[later]} is {word} {NAMES[earlier]} ({d}).")
    gain = m.diff("collab_aligned_r1", "collab_sft", "exact_match")
    if gain is not None:
        singles = [d for b in ("weak_sft", "strong") if (d := m.diff("collab_aligned_r1", b, "exact_match"))]
        least = min((d.value for d in singles), default=float("nan"))
        out.append(f"- Goals: aligned − SFT collaboration ≥ +{GAIN_GOAL:.2f} with its CI above 0: "
                   f"{'met' if gain.value >= GAIN_GOAL and gain.lo > 0 else 'missed'} ({gain}); aligned collaboration "
                   f"above both single models by ≥ {ABOVE_SINGLE_GOAL}: "
                   f"{'met' if least >= ABOVE_SINGLE_GOAL and all(d.lo > 0 for d in singles) else 'missed'} "
                   f"(by {least:+.3f} over the better one).")
    if gain is not None and gain.lo <= 0:
        out.append(f"- So alignment earned no resolved gain here: it learned from {plural(stats['pairs'], 'preference pair')} "
                   f"of {stats['questions']} feedback questions in {len(dpo_steps(run))} DPO steps, and changed "
                   f"{len(changed_drafts(run))} of {m.n_samples} dev drafts (pairs, log-probabilities and the "
                   "changed drafts below).")
    return out


def selection_line(run: Path) -> list[str]:
    """Round 1's alignment check on align.select_split (cowest.core.selection), when the run made one."""
    from cowest.core.layout import RunLayout
    from cowest.core.selection import read_selection

    sel = read_selection(RunLayout(run), 1)
    return [f"Alignment check: {sel.why}.", ""] if sel else []


def seed_rows(runs: dict[int, Path]) -> list[str]:
    """One row per other catalogue seed: each system's exact match and the claims' paired differences."""
    from cowest.core.layout import RunLayout
    from cowest.core.selection import read_selection

    out = ["| task.seed | weak SFT alone | strong alone | collaboration, SFT weak | collaboration, aligned weak | "
           "collab SFT − best single | aligned − SFT collab | aligned − best single | pairs | alignment check on tune |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, run in runs.items():
        m = as_metrics(json.loads((run / "eval" / "metrics.json").read_text()))
        stats = json.loads((run / "round1" / "feedback" / "pairs_stats.json").read_text())
        best = max(("weak_sft", "strong"), key=lambda n: m.value(n, "exact_match").value)
        cells = [f"{m.value(n, 'exact_match').value:.3f}" for n in ("weak_sft", "strong", "collab_sft",
                                                                    "collab_aligned_r1")]
        diffs = [m.diff(a, b, "exact_match") for a, b in (("collab_sft", best), ("collab_aligned_r1", "collab_sft"),
                                                          ("collab_aligned_r1", best))]
        sel = read_selection(RunLayout(run), 1)
        check = f"{signed(sel.diff)} [{signed(sel.ci[0])}, {signed(sel.ci[1])}], {sel.verdict}" if sel else "not run"
        out.append(f"| {seed} | {' | '.join(cells)} | {' | '.join(str(d) for d in diffs)} | {stats['pairs']} | "
                   f"{check} |")
    return out


def run_loop(config: str, run: Path, sets: list[str]) -> float:
    """`cowest run CONFIG run_dir=RUN SETS...`; its wall time in seconds."""
    cmd = [str(Path(sys.executable).parent / "cowest"), "run", config, f"run_dir={run}", *sets]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-demo"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--keep", action="store_true",
                    help="reuse --out instead of starting fresh (resume; the wall time then covers this invocation only)")
    ap.add_argument("--report-only", action="store_true",
                    help="no run: re-render the report of the finished run in --out (its measured timing kept)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[],
                    help="also run the same loop, unchanged, on these other task.seed values (OUT-seed<S>) and add "
                         "their claims under the block")
    ap.add_argument("--record", action="store_true", help="put the report in BENCHMARKS.md")
    args = ap.parse_args()
    run = Path(args.out)
    if run.exists() and not (args.keep or args.report_only):
        shutil.rmtree(run)  # a fresh run directory: the demo as a new user runs it (no response cache)
    timing = run / "bench_demo.json"
    if args.report_only:  # re-render the table of a finished run with the timing measured when it ran
        t = json.loads(timing.read_text())
        wall, load_before, load_after = t["wall_s"], t["load_before"], t["load_after"]
    else:
        load_before = load_average()
        wall = run_loop(args.config, run, args.set)
        load_after = load_average()
        timing.write_text(json.dumps({"wall_s": wall, "load_before": load_before, "load_after": load_after}))
    seed_runs = {seed: Path(f"{args.out}-seed{seed}") for seed in args.seeds}
    for seed, sd in seed_runs.items():
        if args.report_only:
            continue
        if sd.exists() and not args.keep:
            shutil.rmtree(sd)
        run_loop(args.config, sd, [*args.set, f"task.seed={seed}"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    recall = json.loads((run / "recall" / "metrics.json").read_text()) if (run / "recall").exists() else None
    stats = json.loads((run / "round1" / "feedback" / "pairs_stats.json").read_text())
    n = metrics["n_samples"]
    fails = sum(s["extraction_failures"]["total"] for s in metrics["systems"].values())
    calls = n * len(metrics["systems"])
    lines = [
        f"### The embedded demo (`benchmarks/demo.py`, {datetime.date.fromtimestamp(timing.stat().st_mtime)}, "
        f"{machine()})", "",
        f"`{' '.join(['cowest run', Path(args.config).relative_to(ROOT).as_posix(), *args.set])}` in a fresh run "
        f"directory: **{int(wall // 60)} min {wall % 60:.0f} s** wall (goal ≤ 10 min, 6 min aimed for); load "
        f"average {load_before} before, {load_after} after. Models: {engines(run, cfg)}. {n} dev questions "
        f"(closed-form answers: a number, a product or a city), greedy; 95% bootstrap CIs.", "",
        "| stage | wall s | what |", "|---|---|---|", *stage_rows(run), "",
        f"| system | {' | '.join(metrics['metrics'])} | extraction failures | strong tok/sample | wall s |",
        "|---|" + "---|" * (len(metrics["metrics"]) + 3), *system_rows(metrics, NAMES), "",
        f"Extraction failures: {fails} of {calls} replies ({fails / max(calls, 1):.1%}).", "",
        "| paired difference | metric | value [95% CI] |", "|---|---|---|",
        *[r for r in paired_rows(metrics, CLAIMS, NAMES) if "| exact_match |" in r], "",
        *verdicts(run, metrics, stats), "", *selection_line(run),
    ]
    if seed_runs:
        lines += [f"The same loop, unchanged, on catalogues nobody tuned on (other `task.seed` values; {n} dev "
                  "questions each, exact match, paired differences with 95% CIs):", "", *seed_rows(seed_runs), ""]
    if recall:
        asked = {"weak_sft": "answering directly", "weak_draft_sft": "drafting the facts (its collaboration prompt)"}
        lines += [f"Weak SFT model's recall of the catalogue ({recall['n_samples']} plain fact questions it was "
                  f"trained on; goal ≥ 0.9):", ""]
        for name, how in asked.items():
            if name in recall["systems"]:
                v = recall["systems"][name]["metrics"]["exact_match"]
                lines.append(f"- {how}: **{v['value']:.3f}** [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]")
        lines.append("")
    lines += [
        f"Feedback: {stats['questions']} {cfg['feedback'].get('split') or 'train'} questions × K = {cfg['feedback']['k']} drafts → "
        f"{plural(stats['pairs'], 'pair')}; "
        f"positive share {stats['positive_share']:.2f}; questions without a pair {stats['questions_without_pair']} "
        f"({', '.join(f'{k} {v}' for k, v in stats['no_pair_reasons'].items()) or 'none'}).", "",
        *draft_facts(run, cfg), "", *dpo_trend(run), "", *example_drafts(run),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        record("demo", text)


if __name__ == "__main__":
    main()
