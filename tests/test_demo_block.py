"""benchmarks/demo.py's verdict lines: each claim read off its CI, and where alignment is not resolved above SFT
collaboration, what it learned from (pairs, DPO steps) and how many dev drafts it changed (a scripted run dir)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from demo import verdicts  # noqa: E402


def scripted_run(tmp_path: Path, sft: list[str], aligned: list[str], dpo_steps: int) -> Path:
    traces = tmp_path / "eval" / "traces"
    traces.mkdir(parents=True)
    for name, drafts in (("collab_sft", sft), ("collab_aligned_r1", aligned)):
        rows = [{"sample_id": f"q{i}", "steps": [{"output": {"text": d}}]} for i, d in enumerate(drafts)]
        (traces / f"{name}.seed0.jsonl").write_text("\n".join(map(json.dumps, rows)))
    log = tmp_path / "round1" / "align" / "adapter" / "train_log.jsonl"
    log.parent.mkdir(parents=True)
    diag = {"logps/chosen": -1.0, "logps/rejected": -2.0, "rewards/chosen": 0.0, "rewards/margins": 0.1}
    steps = [{"step": i + 1, "loss": 0.7, **diag} for i in range(dpo_steps)]
    steps += [{"step": dpo_steps, **diag}, {"train_runtime": 5.0}]  # TRL logs the last step again with its summary
    log.write_text("\n".join(map(json.dumps, steps)))
    return tmp_path


def metrics(aligned_ci: tuple[float, float], over_singles: float = 0.5) -> dict:
    paired = [("collab_sft", "weak_sft", 0.56, (0.42, 0.68)), ("collab_sft", "strong", -0.2, (-0.3, -0.1)),
              ("collab_aligned_r1", "collab_sft", sum(aligned_ci) / 2, aligned_ci),
              ("collab_aligned_r1", "weak_sft", over_singles + 0.1, (over_singles, over_singles + 0.2)),
              ("collab_aligned_r1", "strong", over_singles, (over_singles - 0.1, over_singles + 0.1))]
    return {"task": "demo", "n_samples": 3, "metrics": ["exact_match"], "headline": "exact_match",
            "paired": [{"a": a, "b": b, "metric": "exact_match", "diff": d, "ci": ci} for a, b, d, ci in paired]}


def test_each_claim_is_read_off_its_ci_and_no_gain_says_what_alignment_had(tmp_path: Path) -> None:
    run = scripted_run(tmp_path, ["a", "b", "c"], ["a", "B", "c"], dpo_steps=2)
    lines = verdicts(run, metrics((-0.03, 0.0)), {"pairs": 1, "questions": 24})
    assert lines[0] == "- collaboration, SFT weak is above weak SFT alone (+0.560 [+0.420, +0.680])."
    assert lines[1].startswith("- collaboration, SFT weak is below strong alone")
    assert "is not resolved above or below collaboration, SFT weak" in lines[2]
    assert lines[3] == "- collaboration, aligned weak is above weak SFT alone (+0.600 [+0.500, +0.700])."
    assert lines[5].startswith("- Goals: aligned − SFT collaboration ≥ +0.05 with its CI above 0: missed")
    assert lines[5].endswith("above both single models by ≥ 0.4: met (by +0.500 over the better one).")
    assert "1 preference pair of 24 feedback questions in 2 DPO steps" in lines[6]
    assert "changed 1 of 3 dev drafts" in lines[6]


def test_a_resolved_alignment_gain_needs_no_explanation(tmp_path: Path) -> None:
    run = scripted_run(tmp_path, ["a", "b", "c"], ["A", "B", "C"], dpo_steps=6)
    lines = verdicts(run, metrics((0.06, 0.2), over_singles=0.3), {"pairs": 12, "questions": 24})
    assert len(lines) == 6 and "is above collaboration, SFT weak" in lines[2]
    assert "CI above 0: met (+0.130 [+0.060, +0.200])" in lines[5]
    assert "above both single models by ≥ 0.4: missed (by +0.300 over the better one)" in lines[5]
