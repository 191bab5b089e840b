"""What the loop needs to learn what the strong model needs: an SFT model taught several kinds of draft
(`sft.draft_mix`), feedback whose pairs prefer the kind that helps, the warning when few questions give a pair, and
the alignment check that keeps the better adapter for `cowest serve`. Pure logic on scripted models and files; the
end-to-end rounds run in tests/test_loop.py."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from cowest.core.config import ExperimentConfig, FeedbackConfig, load_config
from cowest.core.errors import ConfigError, DataError
from cowest.core.layout import RunLayout
from cowest.core.records import Generation, Sample
from cowest.core.selection import SELECTION_FILE, Selection, best_adapter
from cowest.pipeline.feedback import load_done, run_feedback
from cowest.pipeline.pairs import build_pairs, few_pairs_warning
from cowest.pipeline.train.sft import sft_rows
from cowest.tasks.demo import build

from feedback_fakes import FakeWeak


def demo_cfg(*overrides: str) -> ExperimentConfig:
    return load_config("configs/demo.yaml", list(overrides))


def test_draft_mix_deals_every_format_evenly_under_the_one_draft_prompt():
    cfg = demo_cfg("sft.draft_mix=[knowledge,cot]", "sft.answer_rows=none")
    samples = build("train", cfg.task)
    rows = sft_rows(samples, cfg)
    assert len(rows) == len(samples)
    # One prompt for every draft row (the knowledge draft prompt), two kinds of target: cot ends in the answer line.
    assert {r["prompt"][-1]["content"].rsplit("\n", 1)[-1] for r in rows} == {"The facts:"}
    kinds = Counter("cot" if "\nAnswer: " in r["completion"][0]["content"] else "knowledge" for r in rows)
    assert kinds == {"cot": len(samples) // 2, "knowledge": len(samples) // 2}
    for s, r in zip(samples, rows):
        target = r["completion"][0]["content"]
        assert target in (s.knowledge, f"{s.rationale}\nAnswer: {s.gold}")
    # Without the mix every target is the knowledge draft; the mix is seeded: the same rows twice.
    assert all(r["completion"][0]["content"] == s.knowledge
               for s, r in zip(samples, sft_rows(samples, demo_cfg("sft.answer_rows=none", "sft.draft_mix=null"))))
    assert sft_rows(samples, cfg) == rows


def test_draft_mix_refuses_a_repeated_format():
    with pytest.raises(ConfigError, match="draft_mix.*cot more than once"):
        demo_cfg("sft.draft_mix=[cot,cot]")


class StepStrong:
    """Does the step right from a draft of facts alone; copies a draft's own answer line; wrong alone."""

    identity = "fake/strong"
    has_chat_template = True

    def generate(self, prompts, params):
        out = []
        for msgs in prompts:
            text = msgs[-1]["content"]
            own = re.findall(r"Answer: (\w+)\n\"\"\"", text)
            reply = "wrong" if "wrote this" not in text else own[0] if own else "paris"
            out.append([Generation(text=f"Answer: {reply}", completion_tokens=2)])
        return out

    def close(self):
        pass


def test_the_draft_kind_that_helps_the_strong_model_wins_every_pair(tmp_path):
    """Half the drafts state the facts, half also the weak model's own (wrong) answer, which the strong model copies:
    every pair chooses a facts-only draft over one with an answer line."""
    drafts = ["Paris is the capital.", "Paris is the capital.\nAnswer: rome",
              "The capital is Paris.", "The capital is Paris.\nAnswer: oslo"]
    cfg = ExperimentConfig()
    cfg.feedback = FeedbackConfig(k=4)
    questions = [Sample(id=f"q{i}", task="t", family="qa", question=f"Capital {i}?", answers=["paris"]) for i in range(3)]
    path = run_feedback(cfg, questions, tmp_path, weak=FakeWeak(lambda q: drafts), strong=StepStrong(), judge=None)
    pairs, stats = build_pairs(list(load_done(path).values()), cfg.feedback)
    assert len(pairs) == 3 * 4 and stats["questions_without_pair"] == 0
    assert all("Answer:" not in p.chosen[0]["content"] and "Answer:" in p.rejected[0]["content"] for p in pairs)
    assert {(p.delta_chosen, p.delta_rejected) for p in pairs} == {(1.0, 0.0)}


def test_few_pairs_warning_names_the_share_the_reasons_and_the_settings():
    fb = FeedbackConfig(k=4, questions=24, temperature=1.0)
    stats = {"questions": 24, "questions_without_pair": 23,
             "no_pair_reasons": {"identical_drafts": 20, "all_helpful": 2, "all_equal": 1}}
    line = few_pairs_warning(stats, fb)
    assert line is not None and "\n" not in line
    assert line.startswith("only 1 of 24 feedback questions gave a preference pair (4%")
    assert "identical drafts 20, all helpful 2, all equal 1" in line
    for setting in ("feedback.warn_pair_share=0.25", "feedback.temperature (now 1)", "feedback.k (now 4)",
                    "feedback.questions (now 24)"):
        assert setting in line
    assert few_pairs_warning({**stats, "questions_without_pair": 18}, fb) is None  # 6 of 24 = the share
    assert few_pairs_warning({**stats, "questions_without_pair": 23}, FeedbackConfig(warn_pair_share=0)) is None


def _adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    return path


def _selection(run: RunLayout, rnd: int, lo: float, hi: float) -> Selection:
    from cowest.core.selection import verdict

    start = run.sft_adapter if rnd == 1 else run.aligned_adapter(rnd - 1)
    v = verdict(lo, hi)
    sel = Selection(round=rnd, split="tune", n=60, metric="exact_match", start=str(start),
                    aligned=str(run.aligned_adapter(rnd)), diff=(lo + hi) / 2, ci=(lo, hi), verdict=v,
                    best=str(start if v == "below" else run.aligned_adapter(rnd)))
    run.select_dir(rnd).path.mkdir(parents=True)
    (run.select_dir(rnd).path / SELECTION_FILE).write_text(sel.model_dump_json())
    return sel


def test_serve_serves_the_runs_best_adapter_and_says_why(tmp_path, make_config):
    from cowest.serve import default_adapter

    cfg = make_config()
    run = RunLayout.of(cfg)
    sft, aligned = _adapter(run.sft_adapter), _adapter(run.aligned_adapter(1))
    path, why = default_adapter(cfg)
    assert path == aligned and "no alignment check recorded" in why
    _selection(run, 1, -0.2, -0.05)  # resolved below: the SFT model stays the best
    path, why = default_adapter(cfg)
    assert path == sft and "below" in why and "kept the adapter it started from" in why
    _adapter(run.aligned_adapter(2))
    _selection(run, 2, -0.05, 0.1)  # the last round's check decides: unresolved keeps its aligned adapter
    assert best_adapter(run).round == 2  # type: ignore[union-attr]
    path, why = default_adapter(cfg)
    assert path == run.aligned_adapter(2) and "unresolved" in why
    from cowest.pipeline.report import selection_section

    section = selection_section(run.root)
    assert section[0] == "## Alignment check" and len(section) == 5
    assert section[2].startswith("- **Warning**: round 1's aligned weak model against its start on tune")
    assert section[3].startswith("- round 2's") and str(run.aligned_adapter(2)) in section[3]


def test_demo_refuses_a_limit_that_empties_a_split_and_a_seed_that_is_not_an_integer():
    with pytest.raises(ConfigError, match=r"task.eval_limit=520: the demo's split 'tune' would be empty.*at most 519$"):
        build("tune", demo_cfg("task.eval_limit=520").task)
    with pytest.raises(ConfigError, match=r"task.eval_limit=500: the demo's split 'train' would be empty.*at most 459$"):
        build("train", demo_cfg("task.eval_limit=500").task)
    assert len(build("tune", demo_cfg("task.eval_limit=500").task)) == 20
    with pytest.raises(ConfigError, match="'task.seed'"):
        demo_cfg("task.seed=true")
    with pytest.raises(ConfigError, match="'task.seed'"):
        demo_cfg("task.seed=1.5")


def test_feedback_asks_questions_sft_never_saw_when_a_split_is_named(tmp_path):
    from cowest.pipeline.loop import feedback_questions
    from cowest.pipeline.preflight import check_splits

    base = demo_cfg(f"run_dir={tmp_path}", "feedback.questions=24", "feedback.split=null")
    named = demo_cfg(f"run_dir={tmp_path}", "feedback.questions=24", "feedback.split=feedback")
    train = {s.question for s in build("train", base.task)}
    assert {s.question for s in feedback_questions(base)} <= train
    asked = feedback_questions(named)
    assert len(asked) == 24 and not {s.question for s in asked} & train
    assert all(s.id.startswith("demo-feedback-") for s in asked)
    check_splits(named)  # disjoint from dev
    with pytest.raises(DataError, match="100 questions of the 'dev' split are also in the training data"):
        check_splits(demo_cfg(f"run_dir={tmp_path}", "feedback.split=dev"))
    with pytest.raises(DataError, match="120 questions of the 'feedback' split are also in the training data"):
        check_splits(demo_cfg(f"run_dir={tmp_path}", "feedback.split=feedback", "align.select_split=feedback"))
    check_splits(demo_cfg(f"run_dir={tmp_path}", "feedback.split=feedback", "align.select_split=tune"))
