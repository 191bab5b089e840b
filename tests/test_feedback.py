"""Collaborative feedback: influence, pairs, evaluators, judge parsing, cost counts, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cowest.core.config import ExperimentConfig, FeedbackConfig
from cowest.core.errors import DataError
from cowest.pipeline.feedback import FeedbackRecord, load_done, run_feedback
from cowest.pipeline.pairs import build_pairs, write_pairs
from cowest.core.records import Generation, PreferencePair, Sample, read_jsonl
from cowest.scoring.judge import parse_judge_score

from feedback_fakes import FakeJudge, FakeStrong, FakeWeak


def qa(i: int, gold: str = "paris") -> Sample:
    return Sample(id=f"q{i}", task="t", family="qa", question=f"Question number {i}?", answers=[gold])


# Drafts: two propose the gold answer, one a wrong one, one a duplicate of the first.
DRAFTS = ["I think.\nAnswer: paris", "Answer: london", "Answer: paris", "I think.\nAnswer: paris"]


def cfg(**fb) -> ExperimentConfig:
    c = ExperimentConfig()
    c.feedback = FeedbackConfig(**{"k": 4, **fb})
    return c


def test_influence_and_pairs_are_hand_computable(tmp_path):
    strong = FakeStrong()
    path = run_feedback(cfg(), [qa(1), qa(2)], tmp_path, weak=FakeWeak(lambda q: DRAFTS), strong=strong, judge=None)
    recs = list(load_done(path).values())
    assert [r.question_id for r in recs] == ["q1", "q2"]
    r = recs[0]
    # solo answers "wrong" -> F1 0; refinements copy the draft's answer: paris -> 1, london -> 0.
    assert r.solo_score == 0.0
    assert [d.delta for d in r.drafts] == [1.0, 0.0, 1.0, 1.0]
    # 3 distinct drafts are refined once each, + 1 solo = 4 strong requests per question (not K + 1 = 5).
    assert r.requests["strong"] == 4 and strong.calls == 8
    pairs, stats = build_pairs(recs, cfg().feedback)
    # chosen: the two distinct paris drafts; rejected: london -> 2 pairs per question.
    assert len(pairs) == 4
    assert {p.chosen[0]["content"] for p in pairs} == {DRAFTS[0], DRAFTS[2]}
    assert {p.rejected[0]["content"] for p in pairs} == {"Answer: london"}
    assert pairs[0].prompt == r.prompt and pairs[0].question_id == "q1"
    assert stats["positive_share"] == pytest.approx(6 / 8)
    assert stats["naive_calls"] == {"strong": 2 * (4 + 1), "judge": 0}  # metric evaluator: no judge calls
    assert stats["strong_calls_per_pair"] == pytest.approx(8 / 4)


class CutStrong(FakeStrong):
    """Refinements end in the bare gold answer; the one of the london draft was cut at the token limit."""

    def generate(self, prompts, params):
        out = super().generate(prompts, params)
        for msgs, gens in zip(prompts, out):
            content = msgs[-1]["content"]
            if "wrote this" in content:
                ans = "london" if "london" in content else "paris"
                gens[0] = Generation(text=f"Thinking about {ans}.\nparis",
                                     finish_reason="length" if ans == "london" else "stop")
        return out


def test_a_refinement_cut_at_the_token_limit_scores_no_answer(tmp_path):
    path = run_feedback(cfg(), [qa(1)], tmp_path, weak=FakeWeak(lambda q: DRAFTS), strong=CutStrong(), judge=None)
    r = next(iter(load_done(path).values()))
    # Same unmarked last line 'paris' in every refinement; only the cut one is not read as an answer.
    assert [d.delta for d in r.drafts] == [1.0, 0.0, 1.0, 1.0]
    assert [d.prediction for d in r.drafts] == ["paris", None, "paris", "paris"]


def test_records_share_their_chunks_wall_time(tmp_path):
    # 2 questions x (1 solo + 3 distinct refinements) strong calls of 50 ms each, batched in one chunk.
    path = run_feedback(cfg(), [qa(1), qa(2)], tmp_path, weak=FakeWeak(lambda q: DRAFTS),
                        strong=FakeStrong(delay=0.05), judge=None)
    walls = [r.wall_s for r in load_done(path).values()]
    assert all(w >= 0.2 for w in walls) and 0.4 <= sum(walls) < 5


def test_rules_margin_and_best_vs_worst(tmp_path):
    drafts = ["Answer: paris", "Answer: par", "Answer: rome", "Answer: oslo"]
    path = run_feedback(cfg(), [qa(1)], tmp_path, weak=FakeWeak(lambda q: drafts), strong=FakeStrong(), judge=None)
    recs = list(load_done(path).values())
    deltas = [d.delta for d in recs[0].drafts]
    assert deltas == [1.0, 0.0, 0.0, 0.0]  # "par" vs "paris": token F1 0
    allp, _ = build_pairs(recs, FeedbackConfig(k=4, max_pairs_per_question=2))
    assert len(allp) == 2
    bvw, _ = build_pairs(recs, FeedbackConfig(k=4, pair_rule="best_vs_worst"))
    assert len(bvw) == 1 and bvw[0].delta_chosen == 1.0
    none, stats = build_pairs(recs, FeedbackConfig(k=4, margin=1.0))
    assert none == [] and stats["no_pair_reasons"] == {"only_within_margin": 1}


def test_questions_without_pairs_are_reported(tmp_path):
    same = ["Answer: paris"] * 4
    path = run_feedback(cfg(), [qa(1)], tmp_path, weak=FakeWeak(lambda q: same), strong=FakeStrong(), judge=None)
    stats = write_pairs(list(load_done(path).values()), cfg().feedback, tmp_path)
    assert stats["pairs"] == 0 and stats["no_pair_reasons"] == {"identical_drafts": 1}
    assert (tmp_path / "pairs.jsonl").read_text() == ""
    assert (tmp_path / "pairs.png").stat().st_size > 1000


def test_judge_unparseable_is_retried_once_then_unscored(tmp_path):
    # 5 texts judged (solo + 4 distinct drafts); replies 2 and 4 unparseable; on retry only one of them parses.
    # Texts judged: solo, paris, rome, oslo, bonn; paris and oslo get unparseable replies, on retry only paris parses.
    judge = FakeJudge(["Score: 6", "no idea", "Score: 9", "hmm", "Score: 5", "Score: 7", "still nothing"])
    drafts = ["Answer: paris", "Answer: rome", "Answer: oslo", "Answer: bonn"]
    path = run_feedback(cfg(evaluator="judge"), [qa(1)], tmp_path, weak=FakeWeak(lambda q: drafts),
                        strong=FakeStrong(), judge=judge)
    rec = next(iter(load_done(path).values()))
    assert judge.calls == 7  # 5 + 2 retries
    assert rec.solo_score == pytest.approx(5 / 9)
    assert [d.score for d in rec.drafts] == [pytest.approx(6 / 9), pytest.approx(8 / 9), None, pytest.approx(4 / 9)]
    assert rec.unscored == 1
    pairs, stats = build_pairs([rec], cfg(evaluator="judge").feedback)
    # chosen paris and rome (Δ > 0), rejected bonn; the unscored oslo is in no pair.
    assert stats["unscored"] == 1 and len(pairs) == 2
    assert {p.rejected[0]["content"] for p in pairs} == {"Answer: bonn"}


def test_hybrid_calls_judge_only_on_metric_ties(tmp_path):
    judge = FakeJudge(["Score: 5", "Score: 8", "Score: 3"])
    separated = ["Answer: paris", "Answer: rome"]
    run_feedback(cfg(evaluator="hybrid", k=2), [qa(1)], tmp_path / "a", weak=FakeWeak(lambda q: separated),
                 strong=FakeStrong(), judge=judge)
    assert judge.calls == 0
    tied = ["Answer: rome", "Answer: oslo"]
    path = run_feedback(cfg(evaluator="hybrid", k=2), [qa(1)], tmp_path / "b", weak=FakeWeak(lambda q: tied),
                        strong=FakeStrong(), judge=judge)
    rec = next(iter(load_done(path).values()))
    assert judge.calls == 3
    assert [d.delta for d in rec.drafts] == [pytest.approx(3 / 9), pytest.approx(-2 / 9)]


def test_hybrid_never_lets_the_judge_flip_a_metric_difference(tmp_path):
    # Solo answer right (metric 1), both refinements wrong (metric 0): every Δ is -1 whatever a judge would say.
    judge = FakeJudge(["Score: 2", "Score: 9", "Score: 9"])
    path = run_feedback(cfg(evaluator="hybrid", k=2), [qa(1)], tmp_path,
                        weak=FakeWeak(lambda q: ["Answer: rome", "Answer: oslo"]), strong=FakeStrong(solo="paris"),
                        judge=judge)
    rec = next(iter(load_done(path).values()))
    assert judge.calls == 0
    assert rec.solo_score == 1.0 and [d.delta for d in rec.drafts] == [-1.0, -1.0]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Score: 7", 6 / 9),
        ("**Score:** 8/10", 7 / 9),
        ("I would rate this 9 out of 10.", 8 / 9),
        ('{"score": 3, "reason": "wrong"}', 2 / 9),
        ("On a scale of 1 to 10 ... the final answer is wrong.\nRating: 2", 1 / 9),
        ("Grade = 10 / 10", 1.0),
        ("```\nScore: 6\n```", 5 / 9),
        ("5", 4 / 9),
        ("Score: 12", None),
        ("The response is coherent but inconsistent.", None),
        ("", None),
    ],
)
def test_parse_judge_score_messy_outputs(text, expected):
    got = parse_judge_score(text)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_pairs_file_with_bad_row_names_the_line(tmp_path):
    good = PreferencePair(prompt=[{"role": "user", "content": "q"}], chosen=[{"role": "assistant", "content": "a"}],
                          rejected=[{"role": "assistant", "content": "b"}], question_id="q1", delta_chosen=1,
                          delta_rejected=0)
    p = tmp_path / "pairs.jsonl"
    p.write_text(good.model_dump_json() + "\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:2.*rejected"):
        read_jsonl(p, PreferencePair)


RESUME_SCRIPT = r"""
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from feedback_fakes import FakeStrong, FakeWeak
from cowest.core.config import ExperimentConfig, FeedbackConfig
from cowest.pipeline.feedback import run_feedback
from cowest.core.records import Sample
c = ExperimentConfig(); c.feedback = FeedbackConfig(k=3)
samples = [Sample(id=f"q{{i}}", task="t", family="qa", question=f"Q{{i}}?", answers=["a" if i % 2 else "b"])
           for i in range(40)]
weak = FakeWeak(lambda q: ["Answer: a", "Answer: b", "Answer: c"])
run_feedback(c, samples, Path(sys.argv[1]), weak=weak, strong=FakeStrong(delay={delay}), judge=None, chunk_size=3)
"""


def _run_script(out: Path, delay: float) -> subprocess.Popen:
    code = RESUME_SCRIPT.format(tests=str(Path(__file__).parent), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code, str(out)])


def test_sigkill_and_resume_finishes_each_question_exactly_once(tmp_path):
    ref = tmp_path / "ref"
    assert _run_script(ref, 0.0).wait(timeout=120) == 0
    out = tmp_path / "killed"
    for kill_after in (4, 17):  # kill twice, at different points
        proc = _run_script(out, 0.02)
        deadline = time.time() + 60
        f = out / "feedback.jsonl"
        while time.time() < deadline:
            if f.exists() and f.read_text().count("\n") >= kill_after:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = f.read_text().count("\n")
        assert kill_after <= done < 40, "the kill must land mid-run"
    assert _run_script(out, 0.0).wait(timeout=120) == 0
    got = read_jsonl(out / "feedback.jsonl", FeedbackRecord)
    want = read_jsonl(ref / "feedback.jsonl", FeedbackRecord)
    assert sorted(r.question_id for r in got) == sorted(f"q{i}" for i in range(40))
    assert {r.question_id: r.drafts for r in got} == {r.question_id: r.drafts for r in want}
