"""render_report: report.md and PNGs from run files alone (metrics.json, traces, pairs_stats.json)."""

import json

import pytest

from cowest.config import validate_config
from cowest.evaluate import run_eval
from cowest.report import render_report

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
    (fb / "pairs_stats.json").write_text(json.dumps({"questions": 10, "drafts": 40, "pairs": 12, "positive_share": 0.3,
                                                      "questions_without_pair": 4, "strong_calls_per_pair": 4.5,
                                                      "naive_strong_calls_per_pair": 8.3}))
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
    assert "| round1 | 10 | 40 | 12 | 0.300 | 4 | 4.50 | 8.30 |" in text
    assert "](round1/feedback/pairs.png)" in text
    for png in ("metrics.png", "cost.png"):
        assert f"]({png})" in text
        assert (run_dir / png).read_bytes()[:8] == PNG_MAGIC


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
    from cowest.report import round_trend_section

    sys_ = lambda v: {"metrics": {"em": {"value": v, "ci": [v - 0.1, v + 0.1]}}}  # noqa: E731
    m = {"headline": "em",
         "systems": {"collab_sft": sys_(0.40), "collab_aligned_r1": sys_(0.50), "collab_aligned_r2": sys_(0.30)},
         "paired": [
             # summary stores pairs in system order: a - b
             {"a": "collab_sft", "b": "collab_aligned_r1", "metric": "em", "diff": -0.10, "ci": [-0.20, -0.01]},
             {"a": "collab_aligned_r1", "b": "collab_aligned_r2", "metric": "em", "diff": 0.20, "ci": [0.05, 0.35]},
             {"a": "collab_sft", "b": "collab_aligned_r2", "metric": "em", "diff": 0.10, "ci": [-0.05, 0.25]},
         ]}
    text = "\n".join(round_trend_section(m))
    assert "| round 1 | 0.500 | collab_sft | +0.100 | [+0.010, +0.200] | better (CI excludes 0) |" in text
    assert "| round 2 | 0.300 | collab_aligned_r1 | -0.200 | [-0.350, -0.050] | worse (CI excludes 0) |" in text
    assert round_trend_section({"headline": "em", "systems": {"strong": sys_(0.1)}, "paired": []}) == []
