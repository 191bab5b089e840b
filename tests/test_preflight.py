"""`cowest run` checks every stage's inputs before the first stage starts, and the ETHICS loader finds test_hard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cowest.core.config import ExperimentConfig, TaskConfig
from cowest.core.errors import CowestError
from cowest.tasks.base import load_samples


def ethics_data(root: Path, splits: tuple[str, ...]) -> Path:
    folder = root / "data" / "ethics" / "commonsense"
    folder.mkdir(parents=True)
    for split in splits:
        rows = [{"label": i % 2, "input": f"I did thing {i} ({split})."} for i in range(4)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data"


def test_ethics_finds_test_hard_in_the_shared_layout(tmp_path):
    data = ethics_data(tmp_path, ("train", "dev", "test_hard"))
    samples = load_samples(TaskConfig(name="ethics", data=str(data)), "test_hard")
    assert len(samples) == 4 and "(test_hard)" in samples[0].question


def loop_config(tmp_path: Path, **overrides) -> ExperimentConfig:
    weak = tmp_path / "weak-model"  # a local model folder: resolvable without loading it
    weak.mkdir(exist_ok=True)
    body = {"run_dir": str(tmp_path / "run"),
            "task": {"name": "ethics", "data": str(ethics_data(tmp_path, ("train", "dev"))), "train_limit": 4},
            "models": {"weak": {"spec": f"hf/{weak}"}, "strong": {"spec": "mock/answer:Answer: wrong"}}}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        body.setdefault(section, {})[field] = value
    return ExperimentConfig.model_validate(body)


@pytest.fixture
def sft_spy(monkeypatch):
    """Fails the test as soon as SFT starts: every check must come before it."""
    def started(*args, **kw):
        raise AssertionError("SFT started before the run's inputs were checked")

    monkeypatch.setattr("cowest.pipeline.train.sft.run_sft", started)


@pytest.mark.parametrize("overrides, message", [
    ({"task__eval_split": "test_hard"}, r"split of task 'ethics'.*test_hard.*valid: .*train"),
    ({"models__strong": {"spec": "embedded/no-such-model"}}, r"no-such-model"),
    ({"models__judge": {"spec": "mock/answer:x", "adapter": "/no/such/adapter"}}, r"models\.judge\.adapter"),
    ({"models__weak": {"spec": "openai/gpt-x", "base_url": "http://127.0.0.1:9/v1"}}, r"no local weights"),
    ({"feedback__questions": 0}, r"feedback\.questions: 0"),
    ({"eval__strategies": ["weak_only", "no_such_strategy"]}, r"no_such_strategy"),
])
def test_run_checks_every_stage_before_the_first(tmp_path, sft_spy, overrides, message):
    from cowest.pipeline.loop import run_all

    cfg = loop_config(tmp_path, **overrides)
    with pytest.raises(CowestError, match=message):
        run_all(cfg)
    run = tmp_path / "run"
    assert not (run / "sft").exists() and not (run / "config.yaml").exists()


def test_run_refuses_a_changed_later_stage_before_sft(tmp_path, sft_spy):
    """An eval folder of another config is refused before SFT runs, and config.yaml keeps the old config."""
    from cowest.pipeline.loop import eval_stage, eval_systems, run_all

    old = loop_config(tmp_path)
    st = eval_stage(old, Path(old.run_dir) / "eval", eval_systems(old))
    with st.locked():
        st.begin()
    (Path(old.run_dir) / "config.yaml").write_text("old\n")
    changed = old.model_copy(update={"eval": old.eval.model_copy(update={"bootstrap_samples": 50})})
    with pytest.raises(CowestError, match=r"differing keys: eval\.bootstrap_samples.*--force eval"):
        run_all(changed)
    assert (Path(old.run_dir) / "config.yaml").read_text() == "old\n"


def test_run_stops_on_an_eval_question_that_is_a_training_question(tmp_path, sft_spy):
    from cowest.pipeline.loop import run_all

    cfg = loop_config(tmp_path)
    dev = Path(cfg.task.data) / "ethics" / "commonsense" / "dev.jsonl"
    train_row = (Path(cfg.task.data) / "ethics" / "commonsense" / "train.jsonl").read_text().splitlines()[2]
    dev.write_text(dev.read_text() + train_row + "\n")
    with pytest.raises(CowestError, match=r"1 questions of the 'dev' split are also in the training data"):
        run_all(cfg)
    (tmp_path / "r").mkdir()
    with pytest.raises(CowestError, match=r"unknown split of task 'ethics'.*'facts'"):
        run_all(loop_config(tmp_path / "r", eval__recall_split="facts"))
