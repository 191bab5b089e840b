"""What kind of draft the weak model wrote and what it did for the strong model, counted from a run's traces.

A draft is `cot` when it states the weak model's own answer line (`Answer:`), else `facts`. For each collaboration
system of the run's evaluation (and of each round's alignment check): drafts of each kind and how many of them the
strong model turned into a right answer; for each feedback round: drafts of each kind by their influence Δ, and the
pairs by the kinds of their chosen and rejected drafts. The demo's readings quote it:

    python benchmarks/draft_kinds.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from cowest.core.layout import RunLayout


def kind(draft: str) -> str:
    return "cot" if "Answer:" in draft else "facts"


def eval_lines(folder: Path, label: str) -> list[str]:
    out = []
    for path in sorted((folder / "traces").glob("collab_*.seed0.jsonl")):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        by = Counter((kind(r["steps"][0]["output"]["text"]), r["scores"].get("exact_match", 0) == 1) for r in rows)
        cells = ", ".join(f"{k} {by[(k, True)] + by[(k, False)]} (right {by[(k, True)]})" for k in ("facts", "cot"))
        out.append(f"| {label} | {path.name.split('.')[0]} | {len(rows)} | {cells} |")
    return out


def changed_line(folder: Path, label: str) -> list[str]:
    """How many questions the aligned weak model drafted differently from the SFT one (round 1)."""
    def drafts(name: str) -> dict[str, str]:
        path = folder / "traces" / f"{name}.seed0.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
        return {r["sample_id"]: r["steps"][0]["output"]["text"] for r in rows}

    sft, aligned = drafts("collab_sft"), drafts("collab_aligned_r1")
    both = sft.keys() & aligned.keys()
    if not both:
        return []
    return [f"- {label}: the aligned weak model's draft differs from the SFT model's on "
            f"{sum(sft[q] != aligned[q] for q in both)} of {len(both)} questions"]


def feedback_lines(run: RunLayout) -> list[str]:
    out = []
    for rnd in run.rounds_on_disk():
        fb, pairs = run.feedback(rnd), run.pairs(rnd)
        if not fb.is_file():
            continue
        drafts = Counter((kind(d["text"]), d["delta"]) for x in fb.read_text().splitlines() if x.strip()
                         for d in json.loads(x)["drafts"])
        shown = ", ".join(f"{k} Δ={v:+g}: {n}" for (k, v), n in sorted(drafts.items()))
        kinds = Counter(f"{kind(p['chosen'][0]['content'])} over {kind(p['rejected'][0]['content'])}"
                        for p in map(json.loads, pairs.read_text().splitlines()) if p)
        out.append(f"- round {rnd} feedback drafts by kind and Δ: {shown}; pairs: "
                   f"{', '.join(f'{k} {n}' for k, n in kinds.most_common())}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    for root in map(Path, ap.parse_args().runs):
        run = RunLayout(root)
        print(f"{root}:\n\n| split | system | drafts | facts-only / with the weak model's answer (right) |\n|---|---|---|---|")
        lines = eval_lines(run.eval.path, "eval")
        for rnd in run.rounds_on_disk():
            lines += eval_lines(run.select_dir(rnd).path, f"round {rnd} check")
        print("\n".join(lines) + "\n")
        changed = changed_line(run.eval.path, "eval") + changed_line(run.select_dir(1).path, "round 1 check")
        print("\n".join(changed + feedback_lines(run)) + "\n")


if __name__ == "__main__":
    main()
