"""The run directory's paths (RunLayout) and the loop's system names (SystemId): one owner each, and the names of
run directories written before them (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cowest.core.config import ExperimentConfig
from cowest.core.layout import RunLayout
from cowest.core.system_id import SystemId


def test_the_paths_are_those_of_existing_run_directories(tmp_path: Path) -> None:
    run = RunLayout(tmp_path)
    assert run.sft_adapter == tmp_path / "sft" / "adapter"
    assert run.aligned_adapter(2) == tmp_path / "round2" / "align" / "adapter"
    assert run.aligned_adapter(1, "sft_positive") == tmp_path / "round1" / "sft_positive" / "adapter"
    assert run.pairs(3) == tmp_path / "round3" / "feedback" / "pairs.jsonl"
    assert run.eval.trace("collab_sft", 1) == tmp_path / "eval" / "traces" / "collab_sft.seed1.jsonl"
    assert run.recall.metrics == tmp_path / "recall" / "metrics.json"
    assert run.cache(None) == tmp_path / "cache" and run.cache("/elsewhere") == Path("/elsewhere")


def test_serve_finds_the_latest_aligned_adapter_past_the_configs_rounds(tmp_path: Path, make_config) -> None:
    from cowest.serve import latest_aligned_adapter

    cfg = make_config(rounds=1)
    assert latest_aligned_adapter(cfg) is None
    run = RunLayout(tmp_path)
    for rnd in (1, 2, 12):
        run.aligned_adapter(rnd).mkdir(parents=True)
    (run.aligned_adapter(1) / "adapter_config.json").write_text("{}")
    (run.aligned_adapter(12) / "adapter_config.json").write_text("{}")  # round 2 has no adapter (crashed)
    assert latest_aligned_adapter(cfg) == run.aligned_adapter(12)
    other = cfg.model_copy(update={"align": cfg.align.model_copy(update={"method": "sft_positive"})})
    assert latest_aligned_adapter(other) is None


def test_every_loop_system_name_reads_back_as_its_id() -> None:
    from cowest.pipeline.loop import eval_systems

    cfg = ExperimentConfig.model_validate({
        "rounds": 2, "align": {"sft_positive_control": True},
        "collaboration": {"eval_draft_formats": ["cot", "direct"]},
        "eval": {"strategies": ["weak_only", "strong_only", "collaborate",
                                                                    "super_icl"]}})
    names = [s.name for s in eval_systems(cfg)]
    assert names == ["weak_sft", "strong", "collab_sft", "collab_aligned_r1", "collab_sft_positive_r1",
                     "collab_aligned_r2", "collab_sft_positive_r2", "collab_sft_direct", "collab_aligned_r2_direct",
                     "super_icl_sft"]
    for name in names:
        sid = SystemId.parse(name)
        assert sid is not None and sid.name == name
    assert SystemId.parse("collab_aligned_r2_direct") == SystemId.collab("aligned", 2, "direct")
    assert [n for n in names if SystemId.parse(n).is_aligned_collab] == ["collab_aligned_r1", "collab_aligned_r2"]


@pytest.mark.parametrize("name", ["collaborate-cot", "smollm2-135m", "collab_aligned", "collab_sft_r1", "weak_only"])
def test_names_the_loop_does_not_build_have_no_id(name: str) -> None:
    assert SystemId.parse(name) is None


def test_summary_table_reads_the_aligned_difference_with_its_sign(tmp_path: Path, make_config) -> None:
    from cowest.pipeline.loop import summary_table

    cfg = make_config()
    sys_ = lambda v: {"strategy": "collaborate", "metrics": {"em": {"value": v, "ci": [v - 0.1, v + 0.1]}}}  # noqa: E731
    m = {"task": "demo", "n_samples": 4, "metrics": ["em"], "headline": "em",
         "systems": {"collab_sft": sys_(0.5), "collab_aligned_r1": sys_(0.75)},
         "paired": [{"a": "collab_sft", "b": "collab_aligned_r1", "metric": "em", "diff": -0.25, "ci": [-0.5, 0.0]}]}
    RunLayout(tmp_path).eval.path.mkdir()
    RunLayout(tmp_path).eval.metrics.write_text(json.dumps(m))
    table = summary_table(cfg)
    assert "collab_aligned_r1 - collab_sft: +0.250 [+0.000, +0.500]" in table
    assert "collab_aligned_r1" in table.splitlines()[3] and "0.750" in table


def test_a_run_directory_records_what_produced_it(tmp_path: Path, make_config) -> None:
    import re

    import pydantic

    from cowest.pipeline.loop import entered
    from cowest.pipeline.stages import stage

    cfg = make_config()
    with entered(cfg, stage(cfg, "sft", tmp_path / "sft"), False):
        pass
    v = json.loads(RunLayout(tmp_path).versions.read_text())
    assert v["libraries"]["pydantic"] == pydantic.VERSION and v["python"].count(".") == 2
    if (Path(__file__).resolve().parents[1] / ".git").exists():  # a checkout (an installed wheel has no commit)
        assert re.fullmatch(r"[0-9a-f]{40}", v["git"]["commit"]) and isinstance(v["git"]["dirty"], bool)


def test_later_rounds_draft_with_and_align_from_the_previous_rounds_adapter(make_config) -> None:
    """rounds > 1 with align.reference=previous and the sft_positive control: which stages run, in which order, and
    which upstream files each one is fingerprinted on (pure logic: nothing trains)."""
    from cowest.pipeline.loop import planned_stages

    cfg = make_config(rounds=2, align={"reference": "previous", "sft_positive_control": True})
    stages = planned_stages(cfg)
    assert [st.name for _, st in stages] == ["sft", "feedback1", "align1-dpo", "align1-sft_positive", "feedback2",
                                             "align2-dpo", "align2-sft_positive", "eval"]
    by_name = {st.name: st for _, st in stages}
    assert "upstream:sft/adapter" in by_name["feedback1"].inputs
    assert "upstream:round1/align/adapter" in by_name["feedback2"].inputs  # drafts with round 1's aligned model
    assert {"upstream:round2/feedback/pairs.jsonl", "upstream:round1/align/adapter"} <= set(by_name["align2-dpo"].inputs)
    assert "align.beta" in by_name["feedback2"].inputs and "align.beta" not in by_name["feedback1"].inputs
    assert by_name["align2-sft_positive"].path == RunLayout.of(cfg).align_dir(2, "sft_positive")
    sft_ref = make_config(rounds=2, align={"reference": "sft"})
    align2 = next(st for _, st in planned_stages(sft_ref) if st.name == "align2-dpo")
    assert "upstream:sft/adapter" in align2.inputs and "upstream:round1/align/adapter" not in align2.inputs
