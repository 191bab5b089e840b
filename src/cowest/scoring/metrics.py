"""Metrics of the paper's domains and their uncertainty.

- `exact_match` / `f1`: SQuAD normalisation (lower case, no punctuation, no articles, single spaces), the best
  over the gold aliases.
- `accuracy`: the prediction equals the gold letter / label.
- `macro_f1`: the mean F1 over the classes present in the gold answers; a class absent from the gold answers adds
  no term (its false positives still count as misses of the true class). A failed extraction (None) is wrong and
  is not a class.

All values are fractions in [0, 1]. Corpus metrics are registered in `METRICS` as `fn(samples, predictions)`.
`bootstrap_ci` and `paired_bootstrap` resample question indices (vectorised, numpy) and recompute the metric, so
they work for macro-F1 too.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cowest.core.records import Family, Sample
from cowest.core.registry import Registry

Prediction = str | None
Metric = Callable[[Sequence[Sample], Sequence[Prediction]], float]

METRICS: Registry[Metric] = Registry("metric")
"""Corpus metrics by name: exact_match (alias em), f1, accuracy, macro_f1."""

FAMILY_METRICS: dict[str, tuple[str, ...]] = {
    "qa": ("exact_match", "f1"), "mc": ("accuracy", "macro_f1"), "cls": ("accuracy", "macro_f1"),
}

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def default_metrics(family: Family) -> tuple[str, ...]:
    """The paper's metrics of a task family; the first is the headline."""
    return FAMILY_METRICS[family]


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, drop articles a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def em_score(prediction: Prediction, golds: Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: Prediction, golds: Sequence[str]) -> float:
    """SQuAD token F1, the best over the aliases."""
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction).split()
    return max(_f1(p, normalize_answer(g).split()) for g in golds)


def per_sample(sample: Sample, prediction: Prediction) -> dict[str, float]:
    """Scores of one prediction: exact_match and f1 for qa, accuracy for mc and cls."""
    if sample.family == "qa":
        return {"exact_match": em_score(prediction, sample.answers), "f1": f1_score(prediction, sample.answers)}
    return {"accuracy": float(prediction is not None and prediction == sample.gold)}


def extraction_failures(predictions: Sequence[Prediction]) -> int:
    return sum(p is None for p in predictions)


def _check(samples: Sequence[Sample], predictions: Sequence[Prediction]) -> None:
    if len(samples) != len(predictions):
        raise ValueError(f"{len(samples)} samples but {len(predictions)} predictions")


# Decomposable metrics: the corpus value is the mean of a per-sample score.
_PER_SAMPLE: dict[str, Callable[[Sample, Prediction], float]] = {
    "exact_match": lambda s, p: em_score(p, s.answers),
    "f1": lambda s, p: f1_score(p, s.answers),
    "accuracy": lambda s, p: float(p is not None and p == s.gold),
}


def _scores(name: str, samples: Sequence[Sample], predictions: Sequence[Prediction]) -> np.ndarray:
    _check(samples, predictions)
    fn = _PER_SAMPLE[name]
    return np.array([fn(s, p) for s, p in zip(samples, predictions)], dtype=float)


def _mean_metric(name: str) -> Metric:
    def corpus(samples: Sequence[Sample], predictions: Sequence[Prediction]) -> float:
        scores = _scores(name, samples, predictions)
        return float(scores.mean()) if len(scores) else 0.0

    corpus.__name__ = name
    return corpus


for _name in _PER_SAMPLE:
    METRICS.register(_name, _mean_metric(_name))
METRICS.register("em", METRICS.get("exact_match"))


def _encode(samples: Sequence[Sample], predictions: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray, int]:
    """Gold and predicted classes as integers over the gold classes; -1 = a prediction outside them or None."""
    _check(samples, predictions)
    classes = sorted({s.gold for s in samples})
    index = {c: i for i, c in enumerate(classes)}
    gold = np.array([index[s.gold] for s in samples], dtype=np.int64)
    pred = np.array([index.get(p, -1) if p is not None else -1 for p in predictions], dtype=np.int64)
    return gold, pred, len(classes)


def _macro_f1_rows(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of 2-D index-resampled (gold, pred) arrays; classes absent from a row's gold skip."""
    total = np.zeros(gold.shape[0])
    present = np.zeros(gold.shape[0])
    for c in range(n_classes):
        g, p = gold == c, pred == c
        tp = (g & p).sum(1)
        fp = (~g & p).sum(1)
        fn = (g & ~p).sum(1)
        has = g.any(1)
        total += np.where(has, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        present += has
    return total / np.maximum(present, 1)


def macro_f1(samples: Sequence[Sample], predictions: Sequence[Prediction]) -> float:
    if not samples:
        return 0.0
    gold, pred, k = _encode(samples, predictions)
    return float(_macro_f1_rows(gold[None, :], pred[None, :], k)[0])


METRICS.register("macro_f1", macro_f1)


def compute(names: Sequence[str], samples: Sequence[Sample], predictions: Sequence[Prediction]) -> dict[str, float]:
    """`{name: value}` for the named corpus metrics."""
    return {name: METRICS.get(name)(samples, predictions) for name in names}


@dataclass(frozen=True)
class CI:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    lo: float
    hi: float


def _resampler(metric: str, samples: Sequence[Sample],
               predictions: Sequence[Prediction]) -> Callable[[np.ndarray], np.ndarray]:
    """A function from (n_boot, n) question indices to the metric on each resample."""
    METRICS.check(metric)
    if metric == "em":
        metric = "exact_match"
    if metric in _PER_SAMPLE:
        scores = _scores(metric, samples, predictions)
        return lambda idx: scores[idx].mean(1)
    if metric == "macro_f1":
        gold, pred, k = _encode(samples, predictions)
        return lambda idx: _macro_f1_rows(gold[idx], pred[idx], k)
    raise ValueError(f"metric '{metric}' has no bootstrap implementation")


_CHUNK_CELLS = 2_000_000
"""Resampled indices are drawn in blocks of about this many cells, so memory stays flat on large eval sets."""


def _bootstrap_stats(metric: str, samples: Sequence[Sample], runs: Sequence[Sequence[Prediction]], n_boot: int,
                     seed: int, groups: int = 1) -> list[np.ndarray]:
    """The metric of each run of predictions on the same `n_boot` resamples of the questions.

    With `groups` > 1 the rows are `groups` consecutive blocks over the same questions (one block per seed): a
    resample draws questions and keeps every block's row of each, so repeated seeds do not pass for more
    questions (a cluster bootstrap)."""
    n = len(samples)
    if n == 0:
        raise ValueError("bootstrap of an empty set")
    if n % groups:
        raise ValueError(f"{n} rows do not split into {groups} equal groups")
    n_q = n // groups
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_CELLS // n)
    stats = [_resampler(metric, samples, preds) for preds in runs]
    out: list[list[np.ndarray]] = [[] for _ in runs]
    for start in range(0, n_boot, block):
        q = rng.integers(0, n_q, size=(min(block, n_boot - start), n_q))
        idx = np.concatenate([q + k * n_q for k in range(groups)], axis=1) if groups > 1 else q
        for i, stat in enumerate(stats):
            out[i].append(stat(idx))
    return [np.concatenate(parts) for parts in out]


def bootstrap_ci(metric: str, samples: Sequence[Sample], predictions: Sequence[Prediction], n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05, groups: int = 1) -> CI:
    """The metric with a (1 - alpha) percentile bootstrap interval over questions (`groups`: see
    `_bootstrap_stats`)."""
    (stats,) = _bootstrap_stats(metric, samples, [predictions], n_boot, seed, groups)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return CI(METRICS.get(metric)(samples, predictions), float(lo), float(hi))


def paired_bootstrap(metric: str, samples: Sequence[Sample], preds_a: Sequence[Prediction],
                     preds_b: Sequence[Prediction], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     groups: int = 1) -> CI:
    """metric(a) - metric(b) with a paired percentile bootstrap interval (the same resampled questions for both).

    An interval that excludes 0 means the difference is unlikely to be resampling noise at level alpha.
    """
    a, b = _bootstrap_stats(metric, samples, [preds_a, preds_b], n_boot, seed, groups)
    diff = a - b
    lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    fn = METRICS.get(metric)
    return CI(fn(samples, preds_a) - fn(samples, preds_b), float(lo), float(hi))


def paired_score_bootstrap(scores_a: Sequence[float], scores_b: Sequence[float], n_boot: int = 1000, seed: int = 0,
                           alpha: float = 0.05) -> CI:
    """mean(a) − mean(b) of per-sample scores already computed (a run's stored `per_sample`, when two runs are
    compared after the fact), with a paired percentile bootstrap interval over the samples."""
    d = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    if d.size == 0:
        raise ValueError("bootstrap of an empty set")
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_CELLS // d.size)
    means = np.concatenate([d[rng.integers(0, d.size, size=(min(block, n_boot - s), d.size))].mean(1)
                            for s in range(0, n_boot, block)])
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return CI(float(d.mean()), float(lo), float(hi))

