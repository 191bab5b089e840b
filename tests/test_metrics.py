"""Metrics against hand-computed values, and bootstrap intervals on synthetic data with a known difference."""

from __future__ import annotations

import numpy as np
import pytest

from cowest.core.errors import UnknownNameError
from cowest.core.records import Sample
from cowest.scoring.metrics import (METRICS, CI, bootstrap_ci, compute, em_score, extraction_failures, f1_score,
                                    macro_f1, normalize_answer, paired_bootstrap, per_sample)


def qa(answers: list[str]) -> Sample:
    return Sample(id="x", task="t", family="qa", question="q", answers=answers)


def cls(gold: str, labels: tuple[str, ...] = ("a", "b", "c", "d")) -> Sample:
    return Sample(id="x", task="t", family="cls", question="q", answers=[gold], labels=list(labels))


@pytest.mark.parametrize("raw,norm", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple, a pear!  ", "apple pear"),
    ("U.S.A.", "usa"),
    ("Theatre of the Absurd", "theatre of absurd"),  # "the" inside "Theatre" is not an article
    ("A", ""),
    ("1,200,000", "1200000"),
    ("Kathy\tHochul\n", "kathy hochul"),
])
def test_squad_normalisation(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize("pred,golds,em,f1", [
    ("the Eiffel Tower.", ["Eiffel Tower"], 1.0, 1.0),
    ("4 hours", ["4 hours", "4"], 1.0, 1.0),
    ("four", ["4 hours", "4"], 0.0, 0.0),
    # pred tokens {eiffel, tower, paris}, gold {eiffel, tower}: P = 2/3, R = 1, F1 = 0.8
    ("Eiffel Tower, Paris", ["Eiffel Tower"], 0.0, 0.8),
    # best alias: "fixed exchange rate" vs "fixed exchange rate system" -> P = 1, R = 3/4, F1 = 6/7
    ("fixed exchange rate", ["floating", "fixed exchange rate system"], 0.0, 6 / 7),
    ("the", ["an"], 1.0, 1.0),  # both normalise to nothing
    (None, ["x"], 0.0, 0.0),
])
def test_em_and_f1(pred: str | None, golds: list[str], em: float, f1: float) -> None:
    assert em_score(pred, golds) == em
    assert f1_score(pred, golds) == pytest.approx(f1)
    assert per_sample(qa(golds), pred) == pytest.approx({"exact_match": em, "f1": f1})


def test_accuracy_and_failures() -> None:
    samples = [cls("a"), cls("b"), cls("a"), cls("c")]
    preds = ["a", None, "b", "c"]
    assert METRICS.get("accuracy")(samples, preds) == 0.5
    assert extraction_failures(preds) == 1
    assert per_sample(samples[1], None) == {"accuracy": 0.0}


def test_macro_f1_hand_computed_with_absent_class() -> None:
    # gold: a a a b b c ; pred: a a b b None d.  Classes over gold = {a, b, c}; "d" (never gold) is no class.
    # a: tp 2, fp 0, fn 1 -> 4/5 ; b: tp 1, fp 1, fn 1 -> 2/4 ; c: tp 0, fn 1 -> 0.  mean = (0.8 + 0.5 + 0) / 3
    samples = [cls(g) for g in "aaabbc"]
    preds = ["a", "a", "b", "b", None, "d"]
    assert macro_f1(samples, preds) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    # label "d" is in sample.labels but absent from gold and predictions: adding never changes anything.
    assert macro_f1(samples[:5], preds[:5]) == pytest.approx((0.8 + 0.5) / 2)


def test_compute_and_registry() -> None:
    samples = [qa(["4"]), qa(["Paris"])]
    out = compute(["exact_match", "f1", "em"], samples, ["4", "paris france"])
    assert out == pytest.approx({"exact_match": 0.5, "f1": (1 + 2 / 3) / 2, "em": 0.5})
    with pytest.raises(UnknownNameError, match="valid: .*macro_f1"):
        compute(["bleu"], samples, ["4", "x"])
    with pytest.raises(ValueError, match="2 samples but 1 predictions"):
        compute(["f1"], samples, ["4"])


def _synthetic(n: int, p_a: float, p_b: float, seed: int) -> tuple[list[Sample], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    golds = rng.choice(list("abc"), size=n)
    samples = [cls(str(g), ("a", "b", "c")) for g in golds]

    def preds(p: float) -> list[str]:
        right = rng.random(n) < p
        return [str(g) if r else {"a": "b", "b": "c", "c": "a"}[str(g)] for g, r in zip(golds, right)]

    return samples, preds(p_a), preds(p_b)


def test_bootstrap_ci_contains_the_value_and_is_seeded() -> None:
    samples, a, _ = _synthetic(400, 0.7, 0.5, seed=1)
    ci = bootstrap_ci("accuracy", samples, a, n_boot=500, seed=0)
    assert isinstance(ci, CI) and ci.lo < ci.value < ci.hi
    # about 2 * 1.96 * sqrt(0.7 * 0.3 / 400) = 0.09 wide
    assert 0.06 < ci.hi - ci.lo < 0.12
    assert bootstrap_ci("accuracy", samples, a, n_boot=500, seed=0) == ci
    f1_ci = bootstrap_ci("macro_f1", samples, a, n_boot=300, seed=0)
    assert f1_ci.lo < f1_ci.value < f1_ci.hi


def test_paired_bootstrap_covers_true_difference() -> None:
    # Models right with probability 0.75 and 0.55: the true accuracy difference is 0.20. A 95% interval must
    # contain it in about 95% of independent data sets (binomial: >= 34 of 40 fails with probability < 3%).
    covered = 0
    for rep in range(40):
        samples, a, b = _synthetic(300, 0.75, 0.55, seed=100 + rep)
        ci = paired_bootstrap("accuracy", samples, a, b, n_boot=400, seed=rep)
        assert ci.lo <= ci.value <= ci.hi
        covered += ci.lo < 0.20 < ci.hi
    assert covered >= 34


def test_paired_bootstrap_excludes_zero_for_a_real_difference() -> None:
    samples, a, b = _synthetic(1000, 0.75, 0.55, seed=2)
    ci = paired_bootstrap("accuracy", samples, a, b, n_boot=1000, seed=0)
    assert ci.lo > 0
    assert paired_bootstrap("macro_f1", samples, a, a, n_boot=200, seed=0) == CI(0.0, 0.0, 0.0)
    f1_ci = paired_bootstrap("macro_f1", samples, a, b, n_boot=300, seed=0)
    assert 0 < f1_ci.lo < f1_ci.value < f1_ci.hi
    # two equally good models: the interval straddles 0 in most data sets (95% each; below 17 of 20 has probability < 2%)
    straddles = 0
    for rep in range(20):
        samples, a, b = _synthetic(300, 0.6, 0.6, seed=200 + rep)
        ci = paired_bootstrap("accuracy", samples, a, b, n_boot=400, seed=rep)
        straddles += ci.lo < 0 < ci.hi
    assert straddles >= 17


def test_bootstrap_in_blocks_matches_vectorised_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    # Large eval sets are resampled in blocks; each resample must still be a plain resample of all questions.
    import cowest.scoring.metrics as m

    samples, a, _ = _synthetic(50, 0.6, 0.5, seed=3)
    monkeypatch.setattr(m, "_CHUNK_CELLS", 120)  # blocks of 2 resamples
    ci = m.bootstrap_ci("accuracy", samples, a, n_boot=101, seed=4)
    rng = np.random.default_rng(4)
    scores = np.array([float(p == s.gold) for s, p in zip(samples, a)])
    stats = np.concatenate([scores[rng.integers(0, 50, size=(min(2, 101 - i), 50))].mean(1) for i in range(0, 101, 2)])
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi))


def test_repeated_seeds_do_not_narrow_the_interval():
    # The same predictions under 3 seeds are 3 copies of each question, not 3x the questions: the cluster bootstrap
    # gives the single-seed interval, the naive pooled bootstrap a ~sqrt(3) narrower one.
    from cowest.scoring.metrics import bootstrap_ci, paired_bootstrap

    samples = [Sample(id=str(i), task="t", family="mc", question="q", answers=["A"], options={"A": "x", "B": "y"})
               for i in range(60)]
    preds = ["A" if i % 2 else "B" for i in range(60)]
    one = bootstrap_ci("accuracy", samples, preds, n_boot=500, seed=1)
    three = bootstrap_ci("accuracy", samples * 3, preds * 3, n_boot=500, seed=1, groups=3)
    naive = bootstrap_ci("accuracy", samples * 3, preds * 3, n_boot=500, seed=1)
    assert (three.lo, three.hi) == pytest.approx((one.lo, one.hi))
    assert naive.hi - naive.lo < 0.75 * (one.hi - one.lo)
    other = ["A"] * 60
    d1 = paired_bootstrap("accuracy", samples, other, preds, n_boot=500, seed=1)
    d3 = paired_bootstrap("accuracy", samples * 3, other * 3, preds * 3, n_boot=500, seed=1, groups=3)
    assert (d3.lo, d3.hi) == pytest.approx((d1.lo, d1.hi))
