"""render_report: report.md and PNGs from run files alone (metrics.json, traces, pairs_stats.json)."""

import json

import pytest

from cowest.core.config import validate_config
from cowest.pipeline.evaluate import run_eval
from cowest.pipeline.report import metrics_section, render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path):
    data = tmp_path / "m.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Question {i}?", "options": {"A": "a", "B": "b"},
                                        "answer": g}) + "\n" for i, g in enumerate("ABAB")))
    rules = tmp_path / "rules.json"
    # the strong model alone always says A; with a draft it says B: collaboration wins on q1, q3 and loses q0, q2
    rules.write_text(json.dumps([["smaller assistant", "Answer: B"], ["", "Answer: A"]]))
    run = tmp_path / "run"
    cfg = validate_config({"run_dir": str(run), "task": {"name": "medmcqa", "data": str(data)},
                           "models": {"weak": {"spec": "mock/answer:Answer: B"}, "strong": {"spec": f"mock/rules:{rules}"}},
                           "eval": {"strategies": ["strong_only", "collaborate"], "bootstrap_samples": 100}})
    run_eval(cfg, run / "eval")
    fb = run / "round1" / "feedback"
    fb.mkdir(parents=True)
    (fb / "pairs.png").write_bytes(b"png")
    (fb / "pairs_stats.json").write_text(json.dumps({
        "questions": 10, "drafts": 40, "pairs": 12, "positive_share": 0.3, "questions_without_pair": 4,
        "strong_calls_per_pair": 4.5, "naive_strong_calls_per_pair": 8.3, "distinct_drafts_mean": 2.5,
        "distinct_drafts_histogram": {"1": 2, "2": 3, "3": 3, "4": 2}, "pairs_per_feedback_question": 1.2,
        "mean_gap": 0.75, "sampling": {"k": 4, "temperature": 1.0, "top_p": 0.95}}))
    return run


def test_report_from_run_files(run_dir):
    path = render_report([run_dir])
    assert path == run_dir / "report.md"
    text = path.read_text()
    assert "| strong_only | strong_only | – | 0.500 [" in text
    assert "| collaborate-cot | collaborate | cot | 0.500 [" in text
    assert "Paired differences in accuracy" in text and "| strong_only | collaborate-cot | +0.000 [" in text
    assert "| collaborate-cot | 2 | 2 | 0 |" in text  # per-sample wins/losses read from the traces
    assert "smaller assistant" in text or "weak / draft_cot" in text
    assert "| round1 | 10 | 40 | 2.50 | 12 | 1.20 | 0.750 | 0.300 | 4 | 4.50 | 8.30 |" in text
    assert "round1: distinct drafts per question (K = 4, temperature 1.0, top_p 0.95): {1: 2, 2: 3, 3: 3, 4: 2}" in text
    assert "](round1/feedback/pairs.png)" in text
    for png in ("metrics.png", "cost.png"):
        assert f"]({png})" in text
        assert (run_dir / png).read_bytes()[:8] == PNG_MAGIC


def test_report_warns_when_most_pairs_choose_a_bare_answer(run_dir):
    assert "only an answer line" not in render_report([run_dir]).read_text()
    stats_path = run_dir / "round1" / "feedback" / "pairs_stats.json"
    stats = json.loads(stats_path.read_text())
    for chosen, rejected in ((6, 0), (12, 12)):  # half the pairs; direct drafts, answer lines on both sides
        stats_path.write_text(json.dumps({**stats, "bare_answer_pairs": {"chosen": chosen, "rejected": rejected}}))
        assert "only an answer line" not in render_report([run_dir]).read_text()
    stats_path.write_text(json.dumps({**stats, "bare_answer_pairs": {"chosen": 7, "rejected": 1}}))
    text = render_report([run_dir]).read_text()
    assert "**Warning** (round1): 7 of 12 pairs choose a draft that is only an answer line (rejected: 1)" in text
    assert "sft.without_rationale=drop" in text


def test_report_compares_samples_on_the_summarys_scores_not_the_trace_files(run_dir):
    """Issue 15 item 3: one scorer. Trace files keep the scores they were written with; after a rule change they
    disagree with metrics.json, and report.md must follow metrics.json (here: stale scores that say the strong
    model got every sample right)."""
    from cowest.core.layout import EvalDir

    trace = EvalDir(run_dir / "eval").trace("strong_only", 0)
    rows = [json.loads(x) for x in trace.read_text().splitlines()]
    trace.write_text("".join(json.dumps({**r, "scores": {"accuracy": 1.0}}) + "\n" for r in rows))
    text = render_report([run_dir]).read_text()
    assert "| collaborate-cot | 2 | 2 | 0 |" in text and "| strong_only | strong_only | – | 0.500 [" in text


def test_report_tolerates_missing_files_and_several_runs(run_dir, tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    out = render_report([run_dir, empty], tmp_path / "out")
    text = out.read_text()
    assert out == tmp_path / "out" / "report.md"
    assert "No metrics.json" in text and "collaborate-cot" in text
    assert (tmp_path / "out" / "0_run_metrics.png").exists() and not (tmp_path / "out" / "1_empty_run_metrics.png").exists()
    with pytest.raises(Exception, match="run directory not found"):
        render_report([tmp_path / "nope"])


def test_round_trend_flags_a_round_that_made_things_worse():
    from cowest.pipeline.report import round_trend_section

    from cowest.core.results import Metrics

    sys_ = lambda v: {"strategy": "collaborate", "metrics": {"em": {"value": v, "ci": [v - 0.1, v + 0.1]}}}  # noqa: E731
    m = Metrics.model_validate({"task": "demo", "n_samples": 10, "metrics": ["em"], "headline": "em",
         "systems": {"collab_sft": sys_(0.40), "collab_aligned_r1": sys_(0.50), "collab_aligned_r2": sys_(0.30)},
         "paired": [
             # summary stores pairs in system order: a - b
             {"a": "collab_sft", "b": "collab_aligned_r1", "metric": "em", "diff": -0.10, "ci": [-0.20, -0.01]},
             {"a": "collab_aligned_r1", "b": "collab_aligned_r2", "metric": "em", "diff": 0.20, "ci": [0.05, 0.35]},
             {"a": "collab_sft", "b": "collab_aligned_r2", "metric": "em", "diff": 0.10, "ci": [-0.05, 0.25]},
         ]})
    text = "\n".join(round_trend_section(m))
    assert "| round 1 | 0.500 | collab_sft | +0.100 | [+0.010, +0.200] | better (CI excludes 0) |" in text
    assert "| round 2 | 0.300 | collab_aligned_r1 | -0.200 | [-0.350, -0.050] | worse (CI excludes 0) |" in text
    assert round_trend_section(m.model_copy(update={"systems": {"strong": m.systems["collab_sft"]}})) == []


def _dpo_log(adapter, chosen_rewards: list[float], **meta) -> None:
    """A DPO adapter folder as run_dpo leaves it: TRL's logged rows (plus the non-step summary row) and the meta."""
    adapter.mkdir(parents=True)
    rows = [{"step": i + 1, "loss": 0.69, "logps/chosen": -40.0 + 10 * r, "logps/rejected": -50.0 - i,
             "rewards/chosen": r, "rewards/margins": 0.1 * i} for i, r in enumerate(chosen_rewards)]
    rows.append({"step": len(rows), "train_runtime": 12.0, "train_loss": 0.6})
    (adapter / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (adapter / "cowest_adapter.json").write_text(json.dumps({"method": "dpo", "beta": 0.1, "loss_type": "sigmoid",
                                                             **meta}))


def test_training_diagnostics_warn_when_the_chosen_log_probability_falls(run_dir):
    # Plain DPO: rewards/chosen 0 -> -0.5 with β 0.1 is a log-ratio fall of 5 nats over 20-token drafts: 0.25/token.
    _dpo_log(run_dir / "round1" / "align" / "adapter", [0.0, -0.1, -0.3, -0.5], chosen_tokens_mean=20)
    # With the NLL term the chosen drafts hold (0.02 nats/token): no warning.
    _dpo_log(run_dir / "round2" / "align" / "adapter", [0.0, 0.0, -0.02, -0.04], chosen_tokens_mean=20,
             rpo_alpha=1.0)
    text = render_report([run_dir]).read_text()
    assert "## Training diagnostics" in text
    assert ("| round1/align | sigmoid | 1–4 | -40.00 → -45.00 | -50.00 → -53.00 | 0.00 → -0.50 | 0.00 → 0.30 | "
            "-0.250 nats/token |") in text
    assert "| round2/align | sigmoid + 1.0 NLL | 1–4 |" in text and "-0.020 nats/token |" in text
    warnings = [line for line in text.splitlines() if line.startswith("**Warning**")]
    assert len(warnings) == 1 and "(round1/align)" in warnings[0] and "0.250 nats/token" in warnings[0]
    assert "align.rpo_alpha" in warnings[0]
    assert "](training.png)" in text and (run_dir / "training.png").read_bytes()[:8] == PNG_MAGIC

    # The threshold is the run's align.logp_drop_warn.
    (run_dir / "config.yaml").write_text("align:\n  logp_drop_warn: 0.3\n")
    assert "**Warning**" not in render_report([run_dir]).read_text()


def test_sft_positive_control_is_a_row_of_the_results_table(run_dir):
    from cowest.pipeline.loop import eval_systems

    cfg = validate_config({"run_dir": str(run_dir), "align": {"sft_positive_control": True}})
    names = [s.name for s in eval_systems(cfg)]
    assert names[:5] == ["weak_sft", "strong", "collab_sft", "collab_aligned_r1", "collab_sft_positive_r1"]
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    metrics["systems"]["collab_sft_positive_r1"] = metrics["systems"]["collaborate-cot"]
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(metrics))
    text = render_report([run_dir]).read_text()
    table = text[text.index("| system | strategy |"):text.index("Paired differences")]
    assert "| collab_sft_positive_r1 | collaborate | cot | 0.500 [" in table


def test_draft_column_names_the_format_the_weak_model_answered_with(tmp_path):
    """With collaboration.weak_answer=draft the weak model alone answers with its draft: the results table says which
    format, where it said "–" (the weak model seemed to write no draft)."""
    data = tmp_path / "m.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Question {i}?", "options": {"A": "a", "B": "b"},
                                        "answer": "A"}) + "\n" for i in range(2)))
    run = tmp_path / "run"
    metrics = {}
    for weak_answer in ("answer", "draft"):
        cfg = validate_config({"run_dir": str(run), "task": {"name": "medmcqa", "data": str(data)},
                               "models": {"weak": {"spec": "mock/answer:Answer: A"}, "strong": {"spec": "mock/answer:Answer: A"}},
                               "collaboration": {"weak_answer": weak_answer},
                               "eval": {"strategies": ["weak_only", "strong_only"], "bootstrap_samples": 10}})
        metrics[weak_answer] = run_eval(cfg, run / f"eval-{weak_answer}")
    assert metrics["answer"].systems["weak_only"].draft_format is None
    assert metrics["draft"].systems["weak_only"].draft_format == "cot"
    assert metrics["draft"].systems["strong_only"].draft_format is None
    row = next(line for line in metrics_section(metrics["draft"]) if line.startswith("| weak_only"))
    assert [c.strip() for c in row.split("|")[1:4]] == ["weak_only", "weak_only", "cot"]
