"""Setting each router's threshold so that about `route.strong_share` of the calibration split's questions reach
the strong model (as RouteLLM calibrates its routers), and saving it with the run.

Only router scores are used: the weak model drafts the split's questions (plus what the routers ask for), never a
label is read. A question goes to the strong model when its score is below the threshold; with tied scores the
achieved share can only be approximately the target, and the saved record says what it is. The file
RUN_DIR/router/calibration-<key>.json holds every router's threshold for one weak model, draft format, split and
target; a rerun with the same key reads it instead of drafting again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cowest.core.errors import CowestError

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.models.base import Backend


@dataclass(frozen=True)
class Calibration:
    router: str
    threshold: float
    target_share: float
    achieved_share: float
    """The share of the calibration questions scoring below the threshold."""
    n: int
    split: str


def threshold_for_share(scores: Sequence[float], share: float) -> tuple[float, float]:
    """(threshold, achieved share): the threshold among the scores' distinct values (and one past the largest)
    whose share of scores strictly below it is nearest `share` (the lower one on a tie)."""
    if not scores:
        raise CowestError("calibration: no scores to calibrate on")
    values = sorted(set(float(s) for s in scores))
    n = len(scores)
    candidates = values + [math.nextafter(values[-1], math.inf)]
    best = min(candidates, key=lambda t: (round(abs(sum(s < t for s in scores) / n - share), 9), t))
    return best, sum(s < best for s in scores) / n


def calibration_key(cfg: "ExperimentConfig", weak_identity: str, draft_format: str) -> str:
    r = cfg.route
    parts = {"weak": weak_identity, "format": draft_format, "task": [cfg.task.name, cfg.task.subset, cfg.task.seed],
             "split": r.calibration_split, "limit": r.calibration_limit, "share": r.target_share,
             "routers": sorted(r.routers), "samples": [r.samples, r.temperature], "fallback": r.fallback,
             "prompts": cfg.collaboration.prompts, "weak_params": cfg.generation.weak.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def calibration_path(cfg: "ExperimentConfig", key: str) -> Path:
    from cowest.routing.learned import router_dir

    return router_dir(cfg) / f"calibration-{key}.json"


def calibrate(cfg: "ExperimentConfig", weak: "Backend", draft_format: str) -> dict[str, Calibration]:
    """Every router's calibration (read from the run when saved, else measured and saved)."""
    key = calibration_key(cfg, weak.identity, draft_format)
    path = calibration_path(cfg, key)
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return {name: Calibration(**c) for name, c in saved["routers"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a torn or foreign file: measure again and overwrite it
    scores = calibration_scores(cfg, weak, draft_format)
    out = {}
    for name, s in scores.items():
        t, got = threshold_for_share(s, cfg.route.target_share)
        out[name] = Calibration(name, t, cfg.route.target_share, got, len(s), cfg.route.calibration_split)
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"key": key, "weak": weak.identity, "draft_format": draft_format,
                              "routers": {n: asdict(c) for n, c in out.items()}, "scores": scores}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return out


def calibration_scores(cfg: "ExperimentConfig", weak: "Backend", draft_format: str) -> dict[str, list[float]]:
    """Each router's scores of the weak model's drafts of the calibration split's questions."""
    from cowest.core.progress import log
    from cowest.routing.routers import RouterInputs, answer_prompts, draft_params, score_all
    from cowest.tasks import prompts as P
    from cowest.tasks.base import load_samples

    r = cfg.route
    samples = load_samples(cfg.task, r.calibration_split, r.calibration_limit)
    log(f"route: calibrating {', '.join(r.routers)} to a strong share of {r.target_share:.0%} on "
        f"{len(samples)} {r.calibration_split} questions")
    prompts = [P.draft_messages(s, draft_format, cfg.collaboration.prompts) for s in samples]
    params = cfg.generation.weak.model_copy(update={"seed": 0})
    asks = answer_prompts(samples, draft_format, cfg.collaboration.prompts, prompts)
    texts = None
    if asks is not None and "learned" in r.routers:  # the learned router reads the (answerless) drafts too
        texts = [g[0].text for g in weak.generate(prompts, params)]
    answers = [g[0] for g in weak.generate(asks or prompts, draft_params(cfg, params, r.routers))]
    failed = next((d.error for d in answers if d.error is not None), None)
    if failed is not None:
        raise CowestError(f"route calibration: a weak request failed ({failed}); rerun")
    inputs = RouterInputs(samples, answers, asks or prompts, weak, params, cfg, draft_texts=texts)
    return {name: rs.scores for name, rs in score_all(r.routers, inputs).items()}


SHARE_TOLERANCE = 0.1
"""How far (absolute) a router's achieved strong-call share may miss its target before the run says so."""


def share_warnings(cals: Iterable[Calibration]) -> list[str]:
    """One line per router whose tied scores leave its achieved share far from the target (a router that scores
    every draft alike routes nothing at any threshold)."""
    return [f"route: router '{c.router}' sends {c.achieved_share:.0%} of the {c.n} {c.split} questions to the strong "
            f"model, not the {c.target_share:.0%} asked (route.strong_share): its scores tie too often to split them "
            "there; use another router (route.routers) or set route.threshold"
            for c in cals if abs(c.achieved_share - c.target_share) > SHARE_TOLERANCE]


def thresholds(cfg: "ExperimentConfig", weak: "Backend", draft_format: str) -> dict[str, float]:
    """The threshold each router routes by: the deciding router's `route.threshold` when set, else calibrated
    (nothing is calibrated when that router is the only one)."""
    r = cfg.route
    if r.threshold is not None and len(r.routers) == 1:
        return {r.routers[0]: r.threshold}
    from cowest.core.progress import log

    cal = calibrate(cfg, weak, draft_format)
    for line in share_warnings(cal.values()):
        log(f"warning: {line}")
    out = {name: c.threshold for name, c in cal.items()}
    if cfg.route.threshold is not None:
        out[cfg.route.routers[0]] = cfg.route.threshold
    return out
