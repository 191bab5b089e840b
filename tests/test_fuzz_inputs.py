"""Fuzz of user inputs (issue 13 items 11, 13, 14): malformed configs, overrides and data rows, the cases the
issue names plus generated variants, each through the real CLI. Every one must end with exit status 2, exactly one
line `cowest: error: ...` on stderr, no traceback, and nothing echoed at length."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cowest.cli import main

MOCK = "models: {weak: {spec: 'mock/answer:Answer: A'}, strong: {spec: 'mock/answer:Answer: A'}}\n"


def billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# (name, config text, overrides)
CONFIG_CASES: list[tuple[str, str, list[str]]] = [
    ("negative eval_limit", "task: {eval_limit: -1}\n", []),
    ("negative feedback.questions", "feedback: {questions: -3}\n", []),
    ("zero bootstrap", "eval: {bootstrap_samples: 0}\n", []),
    ("max_retries -1", MOCK + "", ["models.strong.max_retries=-1"]),
    ("repeated seeds", "eval: {seeds: [0, 0]}\n", []),
    ("override invalid YAML", "", ["task.eval_limit=[1"]),
    ("k zero", "feedback: {k: 0}\n", []),
    ("concurrency zero", MOCK, ["models.weak.concurrency=0"]),
    ("max_tokens -1", "generation: {strong: {max_tokens: -1}}\n", []),
    ("temperature -3", "generation: {weak: {temperature: -3}}\n", []),
    ("top_p 7", "generation: {judge: {top_p: 7}}\n", []),
    ("no strategies", "eval: {strategies: []}\n", []),
    ("duplicate key", "task: {name: demo}\ntask: {name: ifqa}\n", []),
    ("duplicate nested key", "sft:\n  lr: 1.0e-4\n  lr: 2.0e-4\n", []),
    ("timeout -1", MOCK, ["models.strong.timeout_s=-1"]),
    ("alias bomb 9", billion_laughs(9), []),
    ("alias bomb 12", billion_laughs(12), []),
    ("recursive alias", "a: &a [*a, *a]\n", []),
    ("fragment in base_url", "models: {strong: {spec: openai/x, base_url: 'http://h/v1#sk-abc'}}\n", []),
    ("query in base_url", "models: {strong: {spec: openai/x, base_url: 'http://h/v1?key=sk-abc'}}\n", []),
    ("not a URL", "models: {strong: {spec: openai/x, base_url: 'http://h:port/v1'}}\n", []),
    ("top-level list", "- a\n- b\n", []),
    ("top-level scalar", "just text\n", []),
    ("tab indentation", "task:\n\tname: demo\n", []),
    ("unclosed bracket", "task: {name: [\n", []),
    ("deep YAML", "a: " + "[" * 50_000 + "\n", []),
    ("huge invalid value", "sft: {lr: " + "x" * 200_000 + "}\n", []),
    ("unknown key", "taks: {name: demo}\n", []),
    ("override without =", "", ["task.eval_limit"]),
    ("override into a scalar", "", ["task.name.x=1"]),
    ("override alias", "", ["task.name=*x"]),
    ("unknown task", "", ["task.name=nope"]),
    ("huge unknown task name", "", ["task.name=" + "n" * 100_000]),
    ("unknown strategy", MOCK, ["eval.strategies=[nope]"]),
    ("unknown draft format", MOCK, ["eval.strategies=[collaborate]", "collaboration.eval_draft_formats=[nope]"]),
    ("unknown provider", "models: {strong: {spec: nope/x}}\n", ["eval.strategies=[strong_only]"]),
    ("bad spec", "models: {strong: {spec: nothing}}\n", ["eval.strategies=[strong_only]"]),
    ("max_failed_share 2", "max_failed_share: 2\n", []),
    ("rounds 0", "rounds: 0\n", []),
    # issue 38 item 2: settings that are not finite or not in range, refused before the first stage
    *[(f"out of range {o}", "", [o]) for o in ("sft.batch_size=0", "sft.lr=-1", "sft.lora_r=0", "sft.max_length=0",
                                               "align.beta=-1", "align.batch_size=0", "task.eval_limit=0",
                                               "eval.max_cut_share=2")],
    *[(f"not finite {o}", "", [o]) for o in ("route.threshold=.nan", "route.threshold=.inf", "feedback.margin=.nan",
                                             "eval.max_cut_share=.nan", "sft.lr=.inf", "align.beta=-.inf")],
    ("price past any bound", "prices: {embedded/qwen2.5-coder-1.5b: {input: 1.0e+308}}\n", []),
    # issue 38 item 5: templates accept the named fields only
    *[(f"template {t}", MOCK, ["eval.strategies=[collaborate]", f"collaboration.prompts={{refine: '{t}'}}"])
      for t in ("{question.__class__.__init__.__globals__}", "{draft[0]}", "{0}", "{nope}", "a { b")],
]
# Generated variants: every ranged numeric key with values below its range or of the wrong type.
RANGED = ["task.eval_limit", "task.train_limit", "feedback.k", "feedback.questions", "feedback.top_p",
          "eval.bootstrap_samples", "generation.weak.max_tokens", "generation.strong.n", "generation.judge.top_p",
          "feedback.max_pairs_per_question"]
BAD_VALUES = ["-1", "-1000000000000", "[1, 2]", "{a: 1}", "abc"]
for key, value in itertools.product(RANGED, BAD_VALUES):
    CONFIG_CASES.append((f"{key}={value}", "", [f"{key}={value}"]))

DATA_CASES: list[tuple[str, bytes]] = [
    ("nested 100k deep", b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b', "answer": "a"}\n'),
    ("nested array file", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    ("torn JSON", b'{"question": "q", "answer": "a"}\n{"question": "q2", "ans\n'),
    ("not an object", b'[1, 2, 3]\n'),
    ("a number row", b'5\n'),
    ("missing question", b'{"answer": "a"}\n'),
    ("missing answer", b'{"question": "q"}\n'),
    ("question a number", b'{"question": 5, "answer": "a"}\n'),
    ("question null", b'{"question": null, "answer": "a"}\n'),
    ("empty file", b""),
    ("only blank lines", b"\n\n\n"),
    ("not UTF-8", "{\"question\": \"caf\xe9\", \"answer\": \"a\"}\n".encode("latin-1")),
    ("NaN answer", b'{"question": "q", "answer": NaN}\n'),
    ("unterminated array", b'[{"question": "q", "answer": "a"},\n'),
]


def assert_one_line_error(rc: int, err: str) -> None:
    assert rc == 2, err[-500:]
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("cowest: error:")]
    assert len(errors) == 1, err[-2000:]
    assert len(errors[0]) < 600, errors[0][:300]
    assert "sk-abc" not in err


@pytest.mark.parametrize("name,text,overrides", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_malformed_config_is_one_line_error(tmp_path: Path, capsys, monkeypatch, name, text, overrides) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\n" + text if not text.startswith("- ") and text != "just text\n"
                   else text, encoding="utf-8")
    rc = main(["eval", str(cfg), *overrides])
    assert_one_line_error(rc, capsys.readouterr().err)


@pytest.mark.parametrize("name,data", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_malformed_data_row_is_one_line_error(tmp_path: Path, capsys, name, data) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    rc = main(["data", "check", "--task", "jsonl", "--family", "qa", str(path)])
    assert_one_line_error(rc, capsys.readouterr().err)


def test_config_paths_that_are_not_config_files(tmp_path: Path, capsys) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("task: {name: caf\xe9}\n".encode("latin-1"))
    for path in (tmp_path, latin1, tmp_path / "missing.yaml"):
        assert_one_line_error(main(["eval", str(path)]), capsys.readouterr().err)


@pytest.mark.parametrize("name,text,overrides", [CONFIG_CASES[i] for i in (0, 4, 5, 12, 15)],
                         ids=[CONFIG_CASES[i][0] for i in (0, 4, 5, 12, 15)])
def test_the_installed_cli_in_a_subprocess(tmp_path: Path, name, text, overrides) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run([sys.executable, "-m", "cowest", "eval", str(cfg), *overrides], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)
    assert_one_line_error(res.returncode, res.stderr)


def test_there_are_at_least_fifty_cases() -> None:
    assert len(CONFIG_CASES) + len(DATA_CASES) + 3 >= 50
