"""The command line: `cowest tasks`, `cowest data check`, one-line errors with exit 2, and a light `--help`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cowest.cli import main

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "README.md").is_file(), reason=f"shared data not found at {DATA}")


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys\nfrom cowest.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'llama_cpp', 'openai', 'numpy')"
            " if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "usage: cowest" in out and "tasks" in out and "data" in out
    assert "HEAVY []" in out


def test_every_subcommand_is_registered_from_the_cli_package() -> None:
    import argparse

    from cowest.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["tasks", "data", "eval", "report", "sft", "feedback", "align", "run", "models",
                                 "serve", "router", "view"]
    assert all(p.get_default("func").__module__.startswith("cowest.cli.") for p in sub.choices.values()
               if p.get_default("func"))


def test_module_entry_point_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "cowest", "tasks"], capture_output=True, text=True)
    assert proc.returncode == 0 and "ifqa" in proc.stdout and "subsets: commonsense" in proc.stdout
    assert "options: cop_base" in proc.stdout and "options: family, fields, labels" in proc.stdout


@needs_data
def test_tasks_with_data_prints_readme_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--data", str(DATA)]) == 0
    out = capsys.readouterr().out
    for line in ["train 2,400, dev 700", "train 2,091, dev 500", "train 450, dev 50",
                 "commonsense: train 3,385, dev 500", "deontology: train 18,164, dev 3,596",
                 "justice: train 21,791, dev 2,704", "virtue: train 28,245, dev 4,975",
                 "utilitarianism: train 13,738, dev 4,808"]:
        assert line in out, line
    assert "prosocial_dialog" in out and f"no files in {DATA}" in out


def test_data_check_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "dev.jsonl"
    good.write_text("".join(json.dumps({"label": i % 2, "scenario": f"claim {i}"}) + "\n" for i in range(5)))
    assert main(["data", "check", str(good), "--task", "ethics", "--subset", "justice"]) == 0
    out = capsys.readouterr().out
    assert "5 rows OK (task ethics/justice, family cls)" in out and "unreasonable 3, reasonable 2" in out

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": 1, "scenario": "x"}\n{"label": 7, "scenario": "y"}\n')
    assert main(["data", "check", str(bad), "--task", "ethics", "--subset", "justice"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cowest: error: ") and "bad.jsonl:2, field 'label': unknown label 7" in err
    assert "Traceback" not in err

    assert main(["data", "check", str(good), "--task", "ethics", "--subset", "fairness"]) == 2
    assert "valid: commonsense, deontology, justice, utilitarianism, virtue" in capsys.readouterr().err
    assert main(["data", "check", str(good), "--task", "nosuch"]) == 2
    assert "unknown task 'nosuch'; valid:" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "missing.jsonl"), "--task", "ifqa"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_data_check_jsonl_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"text": "great film", "y": "pos"}) + "\n" + json.dumps({"text": "dull", "y": "neg"}) + "\n")
    argv = ["data", "check", str(path), "--task", "jsonl", "--family", "cls", "--labels", "pos,neg",
            "--fields", "question=text,label=y"]
    assert main(argv) == 0
    assert "2 rows OK (task jsonl, family cls)" in capsys.readouterr().out
    assert main(argv[:-2] + ["--fields", "question"]) == 2
    assert "expected COWEST_FIELD=FILE_KEY" in capsys.readouterr().err
    assert main(["data", "check", str(path), "--task", "jsonl"]) == 2
    assert "'task.options.family'" in capsys.readouterr().err


def test_subprocess_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("{not json\n")
    proc = subprocess.run([sys.executable, "-m", "cowest", "data", "check", str(bad), "--task", "ifqa"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "x.jsonl:1: malformed JSON" in proc.stderr


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: cowest" in capsys.readouterr().out
