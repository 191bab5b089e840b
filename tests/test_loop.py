"""The whole loop on the embedded models, tiny: sft -> feedback -> align -> eval -> report, then a re-run that
skips every stage, and a changed config that is refused. Real SmolLM2 (weak, transformers) and Qwen-0.5B (strong,
llama.cpp); the hybrid evaluator lets the strong model judge the drafts the metric scores equally, so a handful of
questions yields pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cowest.core.config import load_config
from cowest.core.errors import ConfigError
from cowest.core.records import PreferencePair, read_jsonl

pytestmark = pytest.mark.slow

def test_every_artifact_is_well_formed(loop_run):
    cfg, run, report = loop_run
    assert load_config(run / "config.yaml") == cfg  # the recall check's variant (its own split) is not the run's
    recall = json.loads((run / "recall" / "metrics.json").read_text())
    assert recall["n_samples"] == 80 and set(recall["systems"]) == {"weak_sft", "weak_draft_sft"}
    assert (run / "sft" / "adapter" / "adapter_config.json").exists()
    fb = run / "round1" / "feedback"
    lines = (fb / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(x)["question_id"] for x in lines}) == 8
    pairs = read_jsonl(fb / "pairs.jsonl", PreferencePair)
    stats = json.loads((fb / "pairs_stats.json").read_text())
    assert stats["pairs"] == len(pairs) > 0
    assert all(p.delta_chosen > 0 >= p.delta_rejected and p.chosen != p.rejected for p in pairs)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(fb / "pairs.jsonl"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and len(ds) == len(pairs)
    assert (run / "round1" / "align" / "adapter" / "adapter_model.safetensors").exists()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"weak_sft", "strong", "collab_sft", "collab_aligned_r1"}
    assert metrics["n_samples"] == 3
    assert report.exists() and "collab_aligned_r1" in report.read_text()


def test_dpo_adapter_changed_the_weak_model(loop_run):
    import torch

    from cowest.models.hf_loading import load_model_and_tokenizer, resolve_source

    cfg, run, _ = loop_run
    src = resolve_source(cfg.models.weak.spec)
    prompt = "How much does the Zorvex lamp cost, in dollars?"
    logits = []
    for adapter in (run / "sft" / "adapter", run / "round1" / "align" / "adapter"):
        model, tok = load_model_and_tokenizer(src, adapter=str(adapter))
        ids = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            logits.append(model(**ids).logits[0, -1])
    assert (logits[0] - logits[1]).abs().max().item() > 1e-3


def test_rerun_skips_every_stage_and_a_changed_config_is_refused(loop_run, capfd):
    from cowest.pipeline.loop import do_sft, run_all

    cfg, run, _ = loop_run
    capfd.readouterr()
    run_all(cfg)
    err = capfd.readouterr().err
    for stage in ("sft", "feedback round 1", "align round 1 (dpo)", "eval"):
        assert f"{stage}: done already, skipped" in err
    changed = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"lr": 1e-5})})
    with pytest.raises(ConfigError, match=r"differing keys: sft\.lr.*--force sft"):
        do_sft(changed)


@pytest.fixture
def no_models(monkeypatch):
    """Any model load fails the test: the stages under test must reuse what the run already has."""
    import cowest.models.base

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(cowest.models.base, "load_backend", no_model)


def test_a_new_pair_rule_selects_the_pairs_again_without_generating(loop_run, tmp_path, capfd, no_models):
    import shutil

    from cowest.pipeline.loop import do_align, do_feedback

    cfg, run, _ = loop_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    fb = copy / "round1" / "feedback"
    scored = (fb / "feedback.jsonl").read_bytes()
    before = json.loads((fb / "pairs_stats.json").read_text())
    changed = load_config(copy / "config.yaml", [f"run_dir={copy}", "feedback.pair_rule=best_vs_worst"])
    capfd.readouterr()
    stats = do_feedback(changed)
    assert "feedback.pair_rule changed" in capfd.readouterr().err
    pairs = read_jsonl(fb / "pairs.jsonl", PreferencePair)
    per_question = [p.question_id for p in pairs]
    assert len(per_question) == len(set(per_question)) == stats["pairs"]  # one pair a question at most
    assert 0 < stats["pairs"] <= before["pairs"] and stats["questions"] == before["questions"]
    assert (fb / "feedback.jsonl").read_bytes() == scored
    assert json.loads((fb / "inputs.json").read_text())["feedback.pair_rule"] == "best_vs_worst"
    assert json.loads((fb / "done.json").read_text())["pairs"] == stats["pairs"]
    do_feedback(changed)
    assert "feedback round 1: done already, skipped" in capfd.readouterr().err
    with pytest.raises(ConfigError, match=r"feedback\.pair_rule.*--force align"):  # trained on the old pairs
        do_align(changed)


def test_without_evaluate_the_loop_stops_after_alignment(loop_run, tmp_path, no_models):
    """`run_all(evaluate=False)` (benchmarks/recipe.py --tune, which evaluates other questions itself) checks and
    runs the stages through alignment and neither evaluates nor reports."""
    import shutil

    from cowest.pipeline.loop import run_all

    cfg, run, _ = loop_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval", "recall", "report.md"))
    assert run_all(load_config(copy / "config.yaml", [f"run_dir={copy}"]), evaluate=False) == copy
    assert not (copy / "eval").exists() and not (copy / "report.md").exists()


def test_recall_asks_only_the_draft_when_the_weak_model_answers_with_it(tmp_path, monkeypatch):
    """collaboration.weak_answer=draft makes weak_sft and weak_draft_sft the same prompt: the recall check asks it
    once, and the summary does not call a draft "answering"."""
    from cowest.core.config import load_config
    from cowest.pipeline import loop

    asked = []
    monkeypatch.setattr(loop, "do_eval", lambda rcfg, force, systems, **kw: asked.append([s.name for s in systems]))
    base = [f"run_dir={tmp_path}", "task.name=demo", "eval.recall_split=facts"]
    loop.do_recall(load_config(None, base))
    loop.do_recall(load_config(None, [*base, "collaboration.weak_answer=draft"]))
    assert asked == [["weak_sft", "weak_draft_sft"], ["weak_draft_sft"]]


def test_a_second_round_drafts_with_the_first_rounds_aligned_model_and_each_round_is_checked(loop_run, tmp_path):
    """`rounds: 2` with `align.select_split: tune` on the loop's finished run: round 2's feedback drafts with round 1's
    aligned model, DPO trains a second adapter, each round's aligned model is checked against its start on three
    tune questions (selection.json), the summary states the checks and `cowest serve` takes the run's best."""
    import shutil

    from cowest.core.layout import RunLayout
    from cowest.core.records import read_jsonl
    from cowest.core.selection import best_adapter, read_selection
    from cowest.pipeline.loop import run_all, summary_table
    from cowest.pipeline.stages import read_bookkeeping
    from cowest.serve import default_adapter

    _, run, _ = loop_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report.md"))
    cfg = load_config(copy / "config.yaml", [f"run_dir={copy}", "rounds=2", "align.select_split=tune"])
    run_all(cfg, force={"eval"})
    layout = RunLayout(copy)
    # round 2's drafter is round 1's aligned adapter: its fingerprint is round 2's feedback stage's upstream
    inputs = read_bookkeeping(layout.feedback_dir(2) / "inputs.json")
    assert any(k.startswith("upstream:") and "round1/align/adapter" in k for k in inputs)
    assert (layout.aligned_adapter(2) / "adapter_config.json").exists()
    assert read_jsonl(layout.pairs(2), PreferencePair) is not None
    for rnd, start in ((1, layout.sft_adapter), (2, layout.aligned_adapter(1))):
        sel = read_selection(layout, rnd)
        assert sel is not None and sel.split == "tune" and sel.n == 3 and sel.start == str(start)
        assert sel.best == (sel.start if sel.ci[1] < 0 else sel.aligned)
        assert sel.verdict == ("below" if sel.ci[1] < 0 else "above" if sel.ci[0] > 0 else "unresolved")
    last = best_adapter(layout)
    assert last is not None and last.round == 2
    assert default_adapter(cfg)[0] == Path(last.best)
    table = summary_table(cfg)
    assert "alignment check: round 1's aligned weak model" in table and "round 2's" in table
    assert "collab_aligned_r2" in table
