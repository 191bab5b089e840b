"""Stage bookkeeping: skip when done, refuse a different config or a changed upstream output, ignore speed knobs."""

from __future__ import annotations

import pytest

from cowest.config import ExperimentConfig
from cowest.errors import ConfigError
from cowest.stages import stage, stage_inputs


def cfg(tmp_path, **kw) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"run_dir": str(tmp_path), **kw})


def test_finished_stage_is_skipped_and_a_changed_key_is_named(tmp_path):
    st = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    assert st.begin() is True
    st.finish({"samples": 3})
    assert stage(cfg(tmp_path), "sft", tmp_path / "sft").begin() is False
    changed = cfg(tmp_path, sft={"lr": 1e-5})
    with pytest.raises(ConfigError, match=r"differing keys: sft\.lr\b.*--force sft"):
        stage(changed, "sft", tmp_path / "sft").begin()
    assert stage(changed, "sft", tmp_path / "sft").begin(force=True) is True


def test_a_crashed_stage_counts_its_attempts(tmp_path):
    stage(cfg(tmp_path), "sft", tmp_path / "sft").begin()  # killed before finish
    st = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    assert st.begin() is True  # not done: runs again
    st.finish()
    assert st.summary()["attempts"] == 2


def test_a_changed_upstream_output_is_refused(tmp_path):
    adapter = tmp_path / "sft" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    c = cfg(tmp_path)
    st = stage(c, "feedback1", tmp_path / "round1" / "feedback", upstream=[adapter])
    st.begin()
    st.finish()
    assert stage(c, "feedback1", tmp_path / "round1" / "feedback", upstream=[adapter]).begin() is False
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # SFT was redone
    with pytest.raises(ConfigError, match=r"upstream:sft/adapter"):
        stage(c, "feedback1", tmp_path / "round1" / "feedback", upstream=[adapter]).begin()


def test_speed_settings_are_not_inputs_and_later_rounds_depend_on_align(tmp_path):
    base = stage_inputs(cfg(tmp_path), "feedback")
    faster = stage_inputs(cfg(tmp_path, models={"strong": {"spec": "embedded/qwen2.5-coder-1.5b", "concurrency": 64,
                                                           "batch_size": 1, "n_threads": 1}}), "feedback")
    assert base == faster
    assert not any(k.startswith("align.") for k in base)
    assert "align.beta" in stage_inputs(cfg(tmp_path), "align")
    control = cfg(tmp_path, align={"sft_positive_control": True})
    assert stage_inputs(control, "align") == stage_inputs(cfg(tmp_path), "align")
    assert stage_inputs(control, "eval") != stage_inputs(cfg(tmp_path), "eval")
    st = stage(cfg(tmp_path), "feedback2", tmp_path / "f2", keys="align")
    assert "align.beta" in st.inputs


def test_eval_refuses_traces_of_another_config(tmp_path):
    from cowest.loop import do_eval

    c = cfg(tmp_path, task={"name": "demo", "eval_limit": 2},
            models={"weak": {"spec": "mock/answer:Answer: 1"}, "strong": {"spec": "mock/answer:Answer: 2"}},
            eval={"strategies": ["weak_only"]})
    m = do_eval(c)
    assert m["n_samples"] == 2
    other = c.model_copy(update={"models": c.models.model_copy(
        update={"weak": c.models.weak.model_copy(update={"spec": "mock/answer:Answer: 3"})})})
    with pytest.raises(ConfigError, match=r"models\.weak\.spec"):
        do_eval(other)
