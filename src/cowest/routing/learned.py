"""The `learned` router: a logistic regression on hashed words of the question and the draft, trained on the
collaborative feedback records to predict whether the strong model's answer beats the weak draft's own answer.

Training rows are the feedback drafts (K per training question): the label is 1 when the fallback's answer scores
higher than the draft's answer under the task metric against gold (fallback collaborate: the strong model's
refinement of that draft; fallback strong: its solo answer). Both are re-scored with the metric, so the label is
the same whichever evaluator the feedback stage used. A knowledge draft holds no answer (it scores 0), so with
knowledge drafts the label is whether the strong model gets it right: feedback with cot drafts trains a sharper
router. Plain numpy (full-batch gradient descent with L2 and balanced
class weights): a few hundred rows and a few thousand features need no more. Saved as RUN_DIR/router/learned.json
with what it was trained on (task, weak model, fallback), which `load_router` checks.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cowest.core.errors import CowestError

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.core.records import Sample

LEARNED_FILE = "learned.json"
KIND = "hashed-logreg-v1"
HASH_DIM = 2048
"""Buckets per text field (question, draft, the draft's answer line)."""
FIELDS = ("q", "d", "a")
_WORD = re.compile(r"[a-z0-9]+")


def router_dir(cfg: "ExperimentConfig") -> Path:
    from cowest.core.layout import RunLayout

    return RunLayout.of(cfg).router_dir


def learned_path(cfg: "ExperimentConfig") -> Path:
    return router_dir(cfg) / LEARNED_FILE


def feedback_path(cfg: "ExperimentConfig", rnd: int = 1) -> Path:
    from cowest.core.layout import RunLayout

    return RunLayout.of(cfg).feedback(rnd)


def _bucket(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % HASH_DIM


def _text_block(text: str) -> np.ndarray:
    """Hashed unigrams and bigrams of one text, L2-normalised (a long draft weighs no more than a short one)."""
    words = _WORD.findall(text.lower())
    v = np.zeros(HASH_DIM)
    for tok in words + [f"{a}_{b}" for a, b in zip(words, words[1:])]:
        v[_bucket(tok)] += 1.0
    norm = np.linalg.norm(v)
    return v / norm if norm else v


def features(question: str, draft: str) -> np.ndarray:
    """One row: hashed words of the question, the draft and the draft's answer line, and three dense features
    (log draft length, whether the draft has a marked answer, log question length)."""
    from cowest.scoring.extract import answer_segment

    segment, marked = answer_segment(draft)
    dense = np.array([np.log1p(len(draft.split())) / 5, float(marked and bool(segment)),
                      np.log1p(len(question.split())) / 5])
    return np.concatenate([_text_block(question), _text_block(draft), _text_block(segment or ""), dense])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 400, lr: float = 0.5) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression, classes weighted to balance."""
    n = len(y)
    pos = y.sum()
    w_pos = n / (2 * pos) if pos else 1.0
    w_neg = n / (2 * (n - pos)) if n - pos else 1.0
    sw = np.where(y > 0.5, w_pos, w_neg) / n
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = sw * (p - y)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum()
    return w, float(b)


@dataclass
class LearnedRouter:
    weights: np.ndarray
    bias: float
    meta: dict[str, Any]

    def gain_probability(self, questions: list[str], drafts: list[str]) -> np.ndarray:
        x = np.stack([features(q, d) for q, d in zip(questions, drafts)]) if questions else np.zeros((0, 1))
        if not len(questions):
            return np.zeros(0)
        return 1 / (1 + np.exp(-(x @ self.weights + self.bias)))

    def keep_scores(self, questions: list[str], drafts: list[str]) -> list[float]:
        """1 − P(the strong model beats the draft): high = keep the weak answer."""
        return [float(1 - p) for p in self.gain_probability(questions, drafts)]


@dataclass
class TrainingRows:
    questions: list[str]
    drafts: list[str]
    labels: np.ndarray
    groups: list[str]
    """The question id of each row: folds split by question, so no question is on both sides."""


def training_rows(cfg: "ExperimentConfig", path: Path, samples: dict[str, "Sample"]) -> TrainingRows:
    """(question, draft, label) rows from a feedback.jsonl; see the module docstring for the label."""
    from cowest.pipeline.feedback import FeedbackRecord, metric_score
    from cowest.core.records import iter_jsonl

    qs, ds, ys, gs = [], [], [], []
    for rec in iter_jsonl(path, FeedbackRecord, tolerate_torn_tail=True):
        sample = samples.get(rec.question_id)
        if sample is None:
            continue
        solo = metric_score(sample, rec.solo) if cfg.route.fallback == "strong" else None
        for d in rec.drafts:
            if not d.refinement and cfg.route.fallback == "collaborate":
                continue
            strong = solo if solo is not None else metric_score(sample, d.refinement)
            qs.append(sample.question)
            ds.append(d.text)
            ys.append(float(strong > metric_score(sample, d.text)))
            gs.append(rec.question_id)
    return TrainingRows(qs, ds, np.array(ys), gs)


def identity_of(cfg: "ExperimentConfig") -> dict[str, Any]:
    """What a learned router is only valid for."""
    return {"task": cfg.task.name, "subset": cfg.task.subset, "weak": cfg.models.weak.spec,
            "fallback": cfg.route.fallback, "draft_format": cfg.collaboration.draft_format}


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    pos, neg = p[y > 0.5], p[y <= 0.5]
    if not len(pos) or not len(neg):
        return None
    return float(((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()))


def cross_validate(rows: TrainingRows, folds: int = 5) -> dict[str, Any]:
    """Held-out accuracy and AUC by question folds, next to the constant (majority) predictor's accuracy."""
    x = np.stack([features(q, d) for q, d in zip(rows.questions, rows.drafts)])
    ids = sorted(set(rows.groups))
    fold_of = {q: i % folds for i, q in enumerate(ids)}
    fold = np.array([fold_of[g] for g in rows.groups])
    p = np.zeros(len(rows.labels))
    const = np.zeros(len(rows.labels))
    for k in range(min(folds, len(ids))):
        train, test = fold != k, fold == k
        if not test.any() or not train.any():
            continue
        w, b = fit_logistic(x[train], rows.labels[train])
        p[test] = 1 / (1 + np.exp(-(x[test] @ w + b)))
        const[test] = float(rows.labels[train].mean() > 0.5)
    y = rows.labels
    return {"heldout_accuracy": float(((p > 0.5) == (y > 0.5)).mean()),
            "constant_accuracy": float((const == y).mean()), "heldout_auc": _auc(y, p)}


def train_router(cfg: "ExperimentConfig", rnd: int = 1) -> dict[str, Any]:
    """Train the learned router from RUN_DIR/round<rnd>/feedback/feedback.jsonl and save it; return its record."""
    from cowest.tasks.base import load_samples

    path = feedback_path(cfg, rnd)
    if not path.exists() or not path.stat().st_size:
        raise CowestError(f"router 'learned': no feedback records in {path}: run `cowest feedback CONFIG` first "
                          "(or `cowest run CONFIG`)")
    samples = {s.id: s for s in load_samples(cfg.task, *cfg.feedback_split)}
    rows = training_rows(cfg, path, samples)
    if len(rows.labels) < 4 or len(set(rows.labels.tolist())) < 2:
        raise CowestError(f"router 'learned': {path} gives {len(rows.labels)} drafts with "
                          f"{int(rows.labels.sum())} where the strong model helps; it needs both kinds: run "
                          "feedback on more questions (feedback.questions) and then `cowest router CONFIG`")
    x = np.stack([features(q, d) for q, d in zip(rows.questions, rows.drafts)])
    w, b = fit_logistic(x, rows.labels)
    meta = {"kind": KIND, **identity_of(cfg), "trained_on": str(path), "feedback_sha256": file_sha(path),
            "rows": len(rows.labels),
            "questions": len(set(rows.groups)), "positives": int(rows.labels.sum()), **cross_validate(rows)}
    out = learned_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "bias": b, "weights": [round(float(v), 6) for v in w]}) + "\n",
                   encoding="utf-8")
    tmp.replace(out)
    return {**meta, "path": str(out)}


def check_learned(cfg: "ExperimentConfig") -> dict[str, Any]:
    """The saved router's record, or a one-line error: not trained, unreadable, or trained for another run."""
    path = learned_path(cfg)
    fix = "run `cowest router CONFIG` (after `cowest feedback CONFIG`)"
    if not path.exists():
        fb = feedback_path(cfg)
        why = "" if fb.exists() else f" and there are no feedback records ({fb})"
        raise CowestError(f"router 'learned' is not trained: {path} does not exist{why}; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CowestError(f"{path}: not a learned router file; {fix} to retrain it") from None
    want = identity_of(cfg)
    diff = [f"{k} {meta.get(k)!r} (this config: {v!r})" for k, v in want.items() if meta.get(k) != v]
    if meta.get("kind") != KIND:
        diff.append(f"kind {meta.get('kind')!r}")
    fb = Path(meta.get("trained_on", ""))
    if fb.is_file() and meta.get("feedback_sha256") != file_sha(fb):
        diff.append(f"feedback records {fb} (changed since it was trained)")
    if diff:
        raise CowestError(f"{path} was trained for another setup: {', '.join(diff)}; {fix} to retrain it")
    return data


def file_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_router(cfg: "ExperimentConfig") -> LearnedRouter:
    data = check_learned(cfg)
    return LearnedRouter(np.asarray(data["weights"], dtype=float), float(data["bias"]), data["meta"])


def train_if_routed(cfg: "ExperimentConfig", force: bool = False) -> None:
    """`cowest run`: train the learned router from round 1's feedback when the eval has a route system that uses
    it and it is not trained yet (or the eval is forced)."""
    from cowest.core.progress import log

    if "route" not in cfg.eval.strategies or "learned" not in cfg.route.routers:
        return
    if learned_path(cfg).exists() and not force:
        try:
            check_learned(cfg)
            return
        except CowestError:
            pass  # trained for other records or settings: retrain below
    rec = train_router(cfg)
    log(f"router: learned router trained on {rec['rows']} drafts (held-out accuracy {rec['heldout_accuracy']:.3f}, "
        f"constant {rec['constant_accuracy']:.3f}): {rec['path']}")
