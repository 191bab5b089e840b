"""The typed experiment config: unknown keys and wrong types are named, dotted overrides apply, and the resolved
config dumps and reloads unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cowest.config import ExperimentConfig, diff_keys, dump_config, load_config, parse_overrides, validate_config
from cowest.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    cfg = load_config()
    assert cfg == ExperimentConfig()
    assert cfg.task.name == "demo" and cfg.models.weak.spec == "embedded/smollm2-135m"
    assert cfg.generation.weak.max_tokens == 128 and cfg.models.judge is None


def test_yaml_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: runs/x\ntask: {name: ifqa, data: ../shared/data, eval_limit: 20}\n"
                           "models:\n  strong: {spec: openai/gpt-4o, base_url: 'http://127.0.0.1:8000/v1'}\n"
                           "sft: {lr: 1.0e-4}\n")
    cfg = load_config(path)
    assert (cfg.run_dir, cfg.task.name, cfg.task.eval_limit) == ("runs/x", "ifqa", 20)
    assert cfg.models.strong.spec == "openai/gpt-4o" and cfg.models.strong.base_url == "http://127.0.0.1:8000/v1"
    assert cfg.models.weak.spec == "embedded/smollm2-135m"  # untouched sections keep their defaults
    assert cfg.sft.lr == 1e-4


@pytest.mark.parametrize("text,key", [
    ("sft: {learning_rate: 0.1}\n", "'sft.learning_rate': unknown key"),
    ("taks: {name: ifqa}\n", "'taks': unknown key"),
    ("models: {weak: {spec: x, adaptor: y}}\n", "'models.weak.adaptor': unknown key"),
    ("generation: {strong: {temprature: 0.5}}\n", "'generation.strong.temprature': unknown key"),
])
def test_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"exp.yaml: {key}"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text,key,got", [
    ("sft: {lr: fast}\n", "'sft.lr'", "'fast'"),
    ("task: {eval_limit: [1, 2]}\n", "'task.eval_limit'", "[1, 2]"),
    ("feedback: {evaluator: oracle}\n", "'feedback.evaluator'", "'oracle'"),
    ("align: {beta: {x: 1}}\n", "'align.beta'", "{'x': 1}"),
])
def test_wrong_type_is_named_with_the_value(tmp_path: Path, text: str, key: str, got: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    msg = str(e.value)
    assert key in msg and f"(got {got})" in msg


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "sft: {lr: fast, lora_rr: 8}\n"))
    assert "'sft.lr'" in str(e.value) and "'sft.lora_rr': unknown key" in str(e.value)


def test_dotted_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "task: {name: ifqa, eval_limit: 20}\n")
    cfg = load_config(path, ["task.eval_limit=5", "sft.lr=1e-4", "eval.seeds=[0, 1, 2]",
                             "models.judge.spec=openai/gpt-4o", "task.data=", "feedback.k=8"])
    assert cfg.task.eval_limit == 5 and cfg.sft.lr == 1e-4 and cfg.eval.seeds == [0, 1, 2]
    assert cfg.models.judge is not None and cfg.models.judge.spec == "openai/gpt-4o"  # a None section is created
    assert cfg.task.data is None and cfg.feedback.k == 8
    assert cfg.task.name == "ifqa"  # keys not overridden keep the file's value
    with pytest.raises(ConfigError, match="override 'task.name.x': 'name' is not a section"):
        load_config(path, ["task.name.x=1"])
    assert parse_overrides(["a.b=yes", "c=1.5", "d=x=y"]) == [("a.b", True), ("c", 1.5), ("d", "x=y")]


@pytest.mark.parametrize("override,match", [
    ("sft.lrr=1", "'sft.lrr': unknown key"),
    ("sft.lr=abc", "'sft.lr'"),
    ("sft", "'sft' is not KEY=VALUE"),
    ("run_dir.x=1", "'run_dir': Input should be a valid string"),
])
def test_bad_overrides_are_named(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "task: {name: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_resolved_config_dumps_and_reloads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "task: {name: ethics, subset: virtue}\n"),
                      ["models.judge.spec=openai/gpt-4o", "generation.weak.stop=['\\n\\n']", "align.beta=0.2"])
    text = dump_config(cfg)
    dumped = yaml.safe_load(text)
    assert dumped["task"]["subset"] == "virtue" and dumped["align"]["beta"] == 0.2
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    saved.write_text(text, encoding="utf-8")
    again = load_config(saved)
    assert again == cfg and dump_config(again) == text
    assert diff_keys(cfg.model_dump(mode="json"), again.model_dump(mode="json")) == []


def test_diff_keys_names_changed_dotted_keys() -> None:
    a = ExperimentConfig().model_dump(mode="json")
    b = load_config(None, ["sft.lr=1e-3", "task.name=ifqa"]).model_dump(mode="json")
    assert diff_keys(a, b) == ["sft.lr", "task.name"]


def test_assignment_is_validated() -> None:
    cfg = validate_config({})
    with pytest.raises(ValueError):
        cfg.sft.lr = "fast"  # validate_assignment: later code cannot smuggle in a wrong type either


@pytest.mark.parametrize("url", ["http://user:secret@host:8000/v1", "https://host/v1?api-key=abc"])
def test_a_secret_in_base_url_is_refused_before_it_reaches_disk(url):
    with pytest.raises(ConfigError, match=r"models\.strong\.base_url.*api_key_env") as e:
        load_config(None, [f"models.strong.base_url={url}", "models.strong.spec=openai/x"])
    assert "secret" not in str(e.value) and "abc" not in str(e.value)
