"""Stage bookkeeping: skip when done, refuse a different config or a changed upstream output, ignore speed knobs."""

from __future__ import annotations

import pytest

from cowest.core.config import ExperimentConfig
from cowest.core.errors import ConfigError, CowestError
from cowest.pipeline.stage_inputs import AlignInputs, stage_inputs
from cowest.pipeline.stages import stage


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


def test_a_change_in_derived_keys_alone_is_redone_not_refused(tmp_path):
    from cowest.pipeline.stage_inputs import PAIR_SELECTION

    def feedback(c: ExperimentConfig):
        return stage(c, "feedback1", tmp_path / "fb", derived=PAIR_SELECTION)

    st = feedback(cfg(tmp_path))
    st.begin()  # killed before finish: a new pair rule goes on where it stopped
    st = feedback(cfg(tmp_path, feedback={"pair_rule": "best_vs_worst"}))
    assert st.begin() is True
    st.finish({"pairs": 5, "questions": 8})
    gap = feedback(cfg(tmp_path, feedback={"pair_rule": "best_vs_worst", "min_gap": 0.5}))
    assert gap.begin() is False and gap.rederive == ("feedback.min_gap",)
    gap.amend({"pairs": 2})
    assert gap.summary()["pairs"] == 2 and gap.summary()["questions"] == 8  # the generating run's keys stay
    again = feedback(cfg(tmp_path, feedback={"pair_rule": "best_vs_worst", "min_gap": 0.5}))
    assert again.begin() is False and again.rederive == ()  # amended: done for the new keys
    other = feedback(cfg(tmp_path, feedback={"k": 8, "min_gap": 0.0}))
    with pytest.raises(ConfigError, match=r"differing keys: feedback\.k\)"):  # only the key that needs a rerun
        other.begin()
    with pytest.raises(ConfigError, match=r"differing keys: feedback\.k\)"):
        other.check_config()


def test_speed_settings_are_not_inputs_and_later_rounds_depend_on_align(tmp_path):
    base = stage_inputs(cfg(tmp_path), "feedback")
    faster = stage_inputs(cfg(tmp_path, models={"strong": {"spec": "embedded/qwen2.5-coder-1.5b", "concurrency": 64,
                                                           "batch_size": 1, "n_threads": 1,
                                                           "batching": "static"}}), "feedback")
    assert base == faster
    assert not any(k.startswith("align.") for k in base)
    assert "align.beta" in stage_inputs(cfg(tmp_path), "align")
    control = cfg(tmp_path, align={"sft_positive_control": True})
    assert stage_inputs(control, "align") == stage_inputs(cfg(tmp_path), "align")
    assert stage_inputs(control, "eval") != stage_inputs(cfg(tmp_path), "eval")
    # the control (SFT on the chosen drafts) reads no DPO loss setting: a DPO variant reuses it
    plain, rpo = cfg(tmp_path), cfg(tmp_path, align={"rpo_alpha": 1.0, "beta": 0.2})
    assert AlignInputs.of(plain, "sft_positive").record() == AlignInputs.of(rpo, "sft_positive").record()
    assert AlignInputs.of(plain).record() != AlignInputs.of(rpo).record()
    assert "align.lr" in AlignInputs.of(plain, "sft_positive").record()
    st = stage(cfg(tmp_path), "feedback2", tmp_path / "f2")
    assert "align.beta" in st.inputs and stage_inputs(cfg(tmp_path), "feedback", 2) == st.inputs


@pytest.mark.parametrize("before", [{"cop_base": 0}, {}])
def test_a_changed_cop_base_redoes_sft(tmp_path, before):
    """MedMCQA's gold letters depend on task.options.cop_base: SFT trained on the old labels is not "done" for the
    new ones, whether the option was set before or left to its default."""
    st = stage(cfg(tmp_path, task={"name": "medmcqa", "options": before}), "sft", tmp_path / "sft")
    st.begin()
    st.finish()
    with pytest.raises(ConfigError, match=r"differing keys: task\.options\.cop_base\b"):
        stage(cfg(tmp_path, task={"name": "medmcqa", "options": {"cop_base": 1}}), "sft", tmp_path / "sft").begin()


@pytest.mark.parametrize("change", [{"engine": "llamacpp"}, {"dtype": "bfloat16"}, {"batch_size": 32}])
def test_how_the_weak_model_runs_is_no_sft_input(tmp_path, change):
    """SFT trains from the weak model's weights: the engine and dtype it answers with elsewhere change nothing."""
    weak = {"spec": "embedded/smollm2-135m"}
    st = stage(cfg(tmp_path, models={"weak": weak}), "sft", tmp_path / "sft")
    st.begin()
    st.finish()
    assert stage(cfg(tmp_path, models={"weak": {**weak, **change}}), "sft", tmp_path / "sft").begin() is False
    # ... but feedback drafts with it: the engine and dtype are inputs there
    if "batch_size" not in change:
        assert stage_inputs(cfg(tmp_path, models={"weak": {**weak, **change}}), "feedback") != stage_inputs(
            cfg(tmp_path, models={"weak": weak}), "feedback")


def test_only_the_prompts_sft_writes_its_rows_with_are_sft_inputs(tmp_path):
    """A refine prompt tuned after SFT leaves SFT done (it was refused before); feedback, which refines with it,
    is redone; a changed draft prompt redoes SFT."""
    def with_prompts(**prompts):
        return cfg(tmp_path, collaboration={"draft_format": "knowledge", "prompts": prompts})

    st = stage(with_prompts(refine="{question} {draft}"), "sft", tmp_path / "sft")
    st.begin()
    st.finish()
    assert stage(with_prompts(refine="{draft} {question}", **{"refine.mc": "x {draft}"}), "sft",
                 tmp_path / "sft").begin() is False
    assert stage_inputs(with_prompts(refine="{draft} {question}"), "feedback") != stage_inputs(
        with_prompts(refine="{question} {draft}"), "feedback")
    with pytest.raises(ConfigError, match=r"differing keys: collaboration\.prompts\b"):
        stage(with_prompts(refine="{question} {draft}", draft_knowledge="{question} Facts:"), "sft",
              tmp_path / "sft").begin()


def test_training_batch_sizes_are_inputs_generation_batch_sizes_are_not(tmp_path):
    base = cfg(tmp_path)
    assert stage_inputs(cfg(tmp_path, sft={"batch_size": 8}), "sft") != stage_inputs(base, "sft")
    assert stage_inputs(cfg(tmp_path, align={"batch_size": 8}), "align") != stage_inputs(base, "align")
    assert stage_inputs(cfg(tmp_path, align={"batch_size": 8}), "sft") == stage_inputs(base, "sft")
    faster = cfg(tmp_path, models={"strong": {"spec": "embedded/qwen2.5-coder-1.5b", "batch_size": 64}})
    assert stage_inputs(faster, "eval") == stage_inputs(base, "eval")


def test_a_record_of_an_earlier_version_is_compared_on_the_keys_it_holds(tmp_path):
    """inputs.json written before task.options and sft.batch_size were inputs (and while the weak engine was one)
    still reads as the same inputs; a key both hold with different values is still refused."""
    import json

    batch8 = cfg(tmp_path, sft={"batch_size": 8})  # not the default, and not recorded by that version
    st = stage(batch8, "sft", tmp_path / "sft")
    st.begin()
    st.finish()
    old = dict(st.inputs, **{"models.weak.engine": "hf"})
    del old["task.options"], old["sft.batch_size"]
    (tmp_path / "sft" / "inputs.json").write_text(json.dumps(old))
    assert stage(batch8, "sft", tmp_path / "sft").begin() is False
    with pytest.raises(ConfigError, match=r"differing keys: sft\.lr\b"):
        stage(cfg(tmp_path, sft={"lr": 1e-5}), "sft", tmp_path / "sft").begin()


def test_a_key_the_old_record_lacks_is_compared_with_its_default(tmp_path):
    """An eval finished before collaboration.weak_answer existed ran as `answer` (stage_inputs.ADDED_KEYS): the same
    config skips the stage, a config that sets the new key away from it is refused, not silently skipped."""
    import json

    st = stage(cfg(tmp_path), "eval", tmp_path / "eval")
    st.begin()
    st.finish()
    old = dict(st.inputs)
    del old["collaboration.weak_answer"]
    (tmp_path / "eval" / "inputs.json").write_text(json.dumps(old))
    assert stage(cfg(tmp_path), "eval", tmp_path / "eval").begin() is False
    with pytest.raises(ConfigError, match=r"differing keys: collaboration\.weak_answer\b.*--force eval"):
        stage(cfg(tmp_path, collaboration={"weak_answer": "draft"}), "eval", tmp_path / "eval").begin()


def test_eval_refuses_traces_of_another_config(tmp_path):
    from cowest.pipeline.loop import do_eval

    c = cfg(tmp_path, task={"name": "demo", "eval_limit": 2},
            models={"weak": {"spec": "mock/answer:Answer: 1"}, "strong": {"spec": "mock/answer:Answer: 2"}},
            eval={"strategies": ["weak_only"]})
    m = do_eval(c)
    assert m.n_samples == 2
    other = c.model_copy(update={"models": c.models.model_copy(
        update={"weak": c.models.weak.model_copy(update={"spec": "mock/answer:Answer: 3"})})})
    with pytest.raises(ConfigError, match=r"models\.weak\.spec"):
        do_eval(other)


@pytest.mark.parametrize("name, content", [("attempts", ""), ("attempts", "1\x00"), ("inputs.json", ""),
                                           ("inputs.json", '{"task.name": "de'), ("done.json", ""),
                                           ("done.json", '{"stage": "sft", "wall')])
def test_an_empty_or_torn_bookkeeping_file_means_not_done(tmp_path, name, content):
    st = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    st.begin()
    (tmp_path / "sft" / name).write_text(content)  # what a crash between truncate and write left
    again = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    assert again.begin() is True and not again.done
    again.finish()
    assert again.summary()["attempts"] >= 1 and stage(cfg(tmp_path), "sft", tmp_path / "sft").begin() is False


def test_bookkeeping_is_replaced_atomically(tmp_path, monkeypatch):
    """A crash after writing the new contents but before they replace the file leaves the old file whole."""
    import os

    real_replace = os.replace

    def crash_on(name):
        def replace(src, dst, *args, **kw):
            if os.path.basename(dst) == name:
                raise KeyboardInterrupt("killed")
            return real_replace(src, dst, *args, **kw)
        return replace

    st = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    st.begin()
    monkeypatch.setattr(os, "replace", crash_on("attempts"))
    with pytest.raises(KeyboardInterrupt):
        stage(cfg(tmp_path), "sft", tmp_path / "sft").begin()
    assert (tmp_path / "sft" / "attempts").read_text() == "1"
    monkeypatch.setattr(os, "replace", crash_on("done.json"))
    with pytest.raises(KeyboardInterrupt):
        st.finish()
    monkeypatch.undo()
    assert not (tmp_path / "sft" / "done.json").exists()
    assert [p.name for p in (tmp_path / "sft").iterdir() if p.name.endswith(".tmp")] == []
    again = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    assert again.begin() is True


def test_force_clears_only_declared_outputs(tmp_path):
    path = tmp_path / "eval"
    st = stage(cfg(tmp_path), "eval", path, outputs=("traces", "metrics.json"))
    st.begin()
    (path / "traces").mkdir()
    (path / "traces" / "a.jsonl").write_text("{}\n")
    (path / "metrics.json").write_text("{}")
    (path / "notes.txt").write_text("mine")
    st.finish()
    again = stage(cfg(tmp_path), "eval", path, outputs=("traces", "metrics.json"))
    assert again.begin(force=True) is True
    assert sorted(p.name for p in path.iterdir()) == ["attempts", "inputs.json", "notes.txt"]


def test_force_leaves_a_users_files_in_a_shared_output_folder(tmp_path):
    """Issue 38 item 6: `cowest eval --out o --force` removed o/traces/foreign.jsonl and o/traces/notes.txt; eval's
    stage owns only the trace names it writes there."""
    from cowest.pipeline.loop import eval_stage

    c = cfg(tmp_path)
    path = tmp_path / "o"
    st = eval_stage(c, path, [])
    st.begin()
    traces = path / "traces"
    traces.mkdir()
    for name in ("weak_sft.seed0.jsonl", "collab_sft.seed1.jsonl", "foreign.jsonl", "notes.txt"):
        (traces / name).write_text("{}\n")
    st.finish()
    assert eval_stage(c, path, []).begin(force=True) is True
    assert sorted(p.name for p in traces.iterdir()) == ["foreign.jsonl", "notes.txt"]
    (traces / "foreign.jsonl").unlink(), (traces / "notes.txt").unlink()
    (traces / "weak_sft.seed0.jsonl").write_text("{}\n")
    assert eval_stage(c, path, []).begin(force=True) is True
    assert not traces.exists()  # emptied by the stage: the folder goes too


def test_a_held_stage_names_its_holder_and_an_unwritable_folder_is_one_line(tmp_path):
    import subprocess
    import sys

    lock = tmp_path / "sft" / "stage.lock"
    lock.parent.mkdir()
    hold = ("import fcntl, os, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    st = stage(cfg(tmp_path), "sft", tmp_path / "sft")
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CowestError, match=rf"stage sft .* is in use by process {holder.pid} "):
            with st.locked():
                pass
    finally:
        holder.kill()
        holder.wait()
    with st.locked():  # its holder is gone: free again
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(CowestError, match=r"cannot open its lock file"):
        with stage(cfg(tmp_path), "eval", tmp_path / "file" / "eval").locked():
            pass
