"""What a run costs: tokens and US dollars per role, per question and per correct answer, from the config's price
table (`prices`: per million input and output tokens by model spec).

Every request counts at list price, cache hits included (a fresh deployment pays for them). A local model (hf,
llamacpp, embedded, mock) not in the table costs 0; an `openai/` model not in it is unpriced (None), and so is any
total that includes it. `costs.json` is written next to an eval's metrics.json and a feedback round's
feedback.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cowest.core.layout import COSTS_FILE

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.pipeline.feedback import FeedbackRecord
    from cowest.routing.config import Price

PER_TOKENS = 1_000_000


def price_of(cfg: "ExperimentConfig", spec: str) -> "Price | None":
    from cowest.routing.config import Price

    if spec in cfg.prices:
        return cfg.prices[spec]
    from cowest.core.config import is_remote_spec

    return None if is_remote_spec(spec) else Price()


def cost(price: "Price | None", prompt_tokens: float, completion_tokens: float) -> float | None:
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / PER_TOKENS


def _total(values: Iterable[float | None]) -> float | None:
    vals = list(values)
    return None if any(v is None for v in vals) else float(sum(vals))  # type: ignore[arg-type]


def _per(total: float | None, n: float) -> float | None:
    return None if total is None or not n else total / n


def _role_rows(cfg: "ExperimentConfig", tokens: dict[str, tuple[float, float]], specs: dict[str, str]) -> dict[str, Any]:
    return {role: {"model": specs[role], "prompt_tokens": int(p), "completion_tokens": int(c),
                   "cost_usd": cost(price_of(cfg, specs[role]), p, c)} for role, (p, c) in tokens.items()}


def eval_costs(cfg: "ExperimentConfig", metrics: dict[str, Any]) -> dict[str, Any]:
    """Per system: tokens and cost per role, in all, per question and per correct answer (the headline metric's
    value times the answered questions and seeds: exact matches or accurate answers)."""
    out: dict[str, Any] = {"unit": "USD at list price", "headline": metrics.get("headline"), "systems": {}}
    n = metrics.get("n_samples", 0) * max(len(metrics.get("seeds", [0])), 1)
    for name, s in metrics.get("systems", {}).items():
        specs = {"weak": s.get("weak", cfg.models.weak.spec), "strong": s.get("strong", cfg.models.strong.spec),
                 "judge": (cfg.models.judge or cfg.models.strong).spec}
        usage = s.get("usage", {})
        roles = _role_rows(cfg, {r: (u["prompt_tokens"], u["completion_tokens"]) for r, u in usage.items()}, specs)
        total = _total(r["cost_usd"] for r in roles.values())
        correct = s["metrics"][metrics["headline"]]["value"] * n if n else 0.0
        out["systems"][name] = {"roles": roles, "cost_usd": total, "questions": n, "correct": round(correct, 3),
                                "cost_per_question": _per(total, n), "cost_per_correct": _per(total, correct)}
    return out


def feedback_costs(cfg: "ExperimentConfig", records: list["FeedbackRecord"], pairs: int,
                   weak_spec: str | None = None) -> dict[str, Any]:
    """Tokens and cost per role of a feedback round, per question, per pair and per correct refinement (a draft
    whose refinement scored full marks). Records written before completion tokens were kept count all as input."""
    tokens: dict[str, list[float]] = {}
    for r in records:
        for role, total in r.tokens.items():
            done = r.completion_tokens.get(role, 0)
            row = tokens.setdefault(role, [0.0, 0.0])
            row[0] += total - done
            row[1] += done
    specs = {"weak": weak_spec or cfg.models.weak.spec, "strong": cfg.models.strong.spec,
             "judge": (cfg.models.judge or cfg.models.strong).spec}
    roles = _role_rows(cfg, {k: (v[0], v[1]) for k, v in tokens.items()}, specs)
    cost = _total(r["cost_usd"] for r in roles.values())
    correct = sum(d.score is not None and d.score >= 1.0 for r in records for d in r.drafts)
    return {"unit": "USD at list price", "roles": roles, "cost_usd": cost, "questions": len(records),
            "pairs": pairs, "correct_refinements": correct, "cost_per_question": _per(cost, len(records)),
            "cost_per_pair": _per(cost, pairs), "cost_per_correct": _per(cost, correct)}


def write_costs(out_dir: Path, costs: dict[str, Any]) -> Path:
    path = Path(out_dir) / COSTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(costs, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _usd(v: float | None, total: float | None = 0.0) -> str:
    """A cost; None is "unpriced" when the total is, else "–" (nothing to divide by: no correct answers)."""
    if v is None:
        return "unpriced" if total is None else "–"
    return f"${v:.4g}"


def costs_section(run_dir: Path, metrics_path: Path | None) -> list[str]:
    """report.md's cost table: each eval system's and feedback round's tokens and cost per role, per question and
    per correct answer (from their costs.json)."""
    from cowest.core.markdown import table

    rows = []
    files = ([metrics_path.parent / COSTS_FILE] if metrics_path else []) + sorted(
        run_dir.glob(f"round*/feedback/{COSTS_FILE}"))
    for path in files:
        try:
            c = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        entries = c["systems"].items() if "systems" in c else [(f"{path.parent.parent.name} feedback", c)]
        for name, e in entries:
            tok = ", ".join(f"{r} {v['prompt_tokens']:,}+{v['completion_tokens']:,}" for r, v in e["roles"].items())
            total = e["cost_usd"]
            rows.append([name, tok, _usd(total, total), _usd(e["cost_per_question"], total),
                         _usd(e["cost_per_correct"], total)])
    if not rows:
        return []
    return ["## Cost", "", "Tokens per role (input+output) and cost at the config's list prices (`prices`; local "
            "models 0). Feedback: per correct refinement.", ""] + table(
        ["system", "tokens", "cost", "per question", "per correct answer"], rows)
