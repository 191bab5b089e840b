"""The typed experiment config: unknown keys and wrong types are named, dotted overrides apply, and the resolved
config dumps and reloads unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cowest.core.config import ExperimentConfig, diff_keys, dump_config, load_config, parse_overrides, validate_config
from cowest.core.errors import ConfigError


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


# ---- issue 13 items 10, 11, 13, 14: ranges, strict YAML, unreadable files, secrets in URL paths -------------------


@pytest.mark.parametrize("override,key", [
    ("task.eval_limit=-1", "task.eval_limit"),
    ("task.train_limit=-5", "task.train_limit"),
    ("feedback.questions=-2", "feedback.questions"),
    ("feedback.k=0", "feedback.k"),
    ("feedback.k=-3", "feedback.k"),
    ("eval.bootstrap_samples=0", "eval.bootstrap_samples"),
    ("eval.seeds=[0, 0]", "eval.seeds"),
    ("eval.seeds=[]", "eval.seeds"),
    ("eval.strategies=[]", "eval.strategies"),
    ("collaboration.eval_draft_formats=[cot, cot]", "collaboration.eval_draft_formats"),
    ("models.strong.max_retries=-1", "models.strong.max_retries"),
    ("models.strong.concurrency=0", "models.strong.concurrency"),
    ("models.weak.timeout_s=-1", "models.weak.timeout_s"),
    ("generation.strong.max_tokens=-1", "generation.strong.max_tokens"),
    ("generation.weak.temperature=-3", "generation.weak.temperature"),
    ("generation.judge.top_p=7", "generation.judge.top_p"),
    ("generation.weak.n=0", "generation.weak.n"),
    ("feedback.top_p=0", "feedback.top_p"),
    ("rounds=0", "rounds"),
    ("max_failed_share=1.5", "max_failed_share"),
])
def test_out_of_range_values_are_refused_naming_the_key(override: str, key: str) -> None:
    spec = [f"models.{key.split('.')[1]}.spec=openai/x"] if key.startswith("models.") else []
    with pytest.raises(ConfigError) as e:
        load_config(None, [override, *spec])
    msg = str(e.value)
    assert f"'{key}'" in msg and "\n" not in msg and msg.count("<overrides>: ") == 1


def test_duplicate_keys_are_refused_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"exp.yaml:3: key 'eval_limit' appears twice"):
        load_config(write(tmp_path, "task:\n  eval_limit: 5\n  eval_limit: 50\n"))
    with pytest.raises(ConfigError, match=r"exp.yaml:2: key 'task' appears twice"):
        load_config(write(tmp_path, "task: {name: a}\ntask: {name: b}\n"))


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path: Path) -> None:
    import time

    text = billion_laughs()
    assert len(text) < 500
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="aliases expand to more than") as e:
        load_config(write(tmp_path, text))
    assert time.monotonic() - t0 < 5 and len(str(e.value)) < 300
    with pytest.raises(ConfigError, match="aliases expand"):
        load_config(write(tmp_path, "a: &a [*a]\n"))  # a recursive alias
    # A few small aliases, as people write them, still work.
    cfg = load_config(write(tmp_path, "generation:\n  weak: &g {max_tokens: 32}\n  strong: *g\n"))
    assert cfg.generation.strong.max_tokens == 32


def test_an_invalid_value_is_echoed_only_briefly(tmp_path: Path) -> None:
    big = "x" * 100_000
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"sft: {{lr: {big}}}\n"))
    assert "'sft.lr'" in str(e.value) and len(str(e.value)) < 300
    nested = "task:\n  eval_limit: [" + ", ".join(["[" * 20 + "x" * 40 + "]" * 20] * 2000) + "]\n"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, nested))
    assert "'task.eval_limit'" in str(e.value) and len(str(e.value)) < 300


def test_unreadable_config_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("task: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin1)
    with pytest.raises(ConfigError, match="YAML nested too deep|invalid YAML"):
        load_config(write(tmp_path, "a: " + "[" * 100_000 + "\n"))


@pytest.mark.parametrize("override", ["task.eval_limit=[1", "sft.lr={a: b", "task.name=*x", "a=\t- x"])
def test_an_override_with_invalid_yaml_names_the_override(override: str) -> None:
    with pytest.raises(ConfigError, match=rf"override '{override.split('=')[0]}'.*invalid YAML") as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1#sk-secret", "http://host/v1#"])
def test_a_base_url_with_a_fragment_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"models\.strong\.base_url.*fragment") as e:
        load_config(None, [f"models.strong.base_url={url}", "models.strong.spec=openai/x"])
    assert "sk-secret" not in str(e.value)


def test_a_key_in_the_base_url_path_is_redacted_in_what_is_written(tmp_path: Path) -> None:
    """Issue 13 item 10: config.yaml and the stage's inputs.json never hold a key-like path segment."""
    from cowest.models.identity import __name__ as _  # noqa: F401 - the package imports
    from cowest.pipeline.stage_inputs import stage_inputs

    secret = "sk-proj-A1b2C3d4E5f6G7h8I9j0"
    url = f"https://gateway.example/v1/{secret}/openai"
    cfg = load_config(None, [f"models.strong.base_url={url}", "models.strong.spec=openai/gpt-4o"])
    assert cfg.models.strong.base_url == url  # the backend still gets the real URL, in memory
    text = dump_config(cfg)
    assert secret not in text and "https://gateway.example/v1/***/openai" in text
    assert secret not in str(stage_inputs(cfg, "eval"))


@pytest.mark.parametrize("text,old,new", [
    ("feedback: {draft_format: knowledge}\n", "feedback.draft_format", "collaboration.draft_format"),
    ("eval: {draft_formats: [cot, direct]}\n", "eval.draft_formats", "collaboration.eval_draft_formats"),
    ("eval:\n  prompts: {answer: '{question}'}\n", "eval.prompts", "collaboration.prompts"),
    ("task: {name: medmcqa, cop_base: 1}\n", "task.cop_base", "task.options.cop_base"),
    ("task: {name: ifqa, show_context: true}\n", "task.show_context", "task.options.show_context"),
    ("task: {name: jsonl, family: qa}\n", "task.family", "task.options.family"),
    ("task: {name: jsonl, fields: {question: q}}\n", "task.fields", "task.options.fields"),
    ("task: {name: jsonl, labels: [a, b]}\n", "task.labels", "task.options.labels"),
])
def test_a_moved_key_names_the_file_and_its_new_place(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      text: str, old: str, new: str) -> None:
    from cowest.cli import main

    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: '{old}' has moved: write it as '{new}'"
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"cowest: error: {path}: '{old}' has moved: write it as '{new}'\n"


def test_a_moved_key_in_an_override_names_its_new_place() -> None:
    with pytest.raises(ConfigError, match=r"^override 'eval\.prompts\.refine': 'eval\.prompts' has moved: write it "
                                          r"as 'collaboration\.prompts\.refine'$"):
        load_config(None, ["eval.prompts.refine=x"])


def test_collaboration_formats_default_to_the_draft_format() -> None:
    c = ExperimentConfig.model_validate({"collaboration": {"draft_format": "knowledge"}}).collaboration
    assert c.formats_evaluated == ["knowledge"]
    c = ExperimentConfig.model_validate({"collaboration": {"eval_draft_formats": ["direct", "cot"]}}).collaboration
    assert (c.draft_format, c.formats_evaluated) == ("cot", ["direct", "cot"])
