"""Hostile paths and files (issue 38 items 1 and 3), through the real CLI: every file the tool reads is a regular
file read with a size limit, so a device, a FIFO, a `/proc` file or an oversize file is refused in one line naming
the path before it can fill memory or block; a run directory, cache or model path that is not what it must be, and
a config or row the parser cannot read, are one line naming the path or key, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cowest.core.errors import ConfigError, CowestError, DataError
from cowest.core.files import CONFIG_LIMIT, read_bounded


def cowest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowest", *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("[cowest] ")]  # progress lines
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("cowest: error: ") and "Traceback" not in proc.stderr, lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_a_device_as_the_config_is_refused_before_it_is_read():
    # Before: `cowest eval /dev/zero` read until the kernel killed it at 21 GB.
    one_line_error(cowest("eval", "/dev/zero"), "/dev/zero", "not a regular file")


def test_a_fifo_as_the_config_does_not_block(tmp_path: Path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    one_line_error(cowest("eval", str(fifo), timeout=30), str(fifo), "not a regular file")


def test_an_oversize_config_is_refused_naming_the_limit(tmp_path: Path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(CONFIG_LIMIT + 1)  # sparse: no disk used
    one_line_error(cowest("eval", str(big)), str(big), "larger than 4 MiB")


def test_a_symlink_loop_as_the_config_is_one_line(tmp_path: Path):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    one_line_error(cowest("eval", str(loop)), str(loop))


def test_mock_rules_on_a_device_do_not_hang(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: {weak: {spec: 'mock/rules:/dev/zero'}, strong: {spec: 'mock/answer:Answer: A'}}\n"
                   "task: {name: demo, eval_limit: 1}\n")
    proc = cowest("eval", str(cfg), f"run_dir={tmp_path / 'run'}", "eval.strategies=[weak_only]", timeout=120)
    one_line_error(proc, "/dev/zero", "mock rules file")


@pytest.mark.parametrize("target", ["/proc/self/mem", "/dev/zero"])
def test_data_check_refuses_what_is_not_a_data_file(target: str):
    proc = cowest("data", "check", target, "--task", "ifqa")
    line = one_line_error(proc, target)
    assert "cannot read" in line or "not a regular file" in line


def test_the_reader_cuts_at_the_limit_and_names_what_the_file_was_for(tmp_path: Path):
    f = tmp_path / "rows.jsonl"
    f.write_bytes(b"x" * 11)
    assert read_bounded(f, 11, "data file") == b"x" * 11
    with pytest.raises(DataError, match=r"rows.jsonl: the data file is larger than 10 bytes"):
        read_bounded(f, 10, "data file", DataError)
    with pytest.raises(ConfigError, match="is a folder, not the config file"):
        read_bounded(tmp_path, 10, "config file")


MOCK = ["models.weak.spec=mock/answer:A", "models.strong.spec=mock/answer:A", "task.eval_limit=1",
        "eval.strategies=[weak_only]"]


@pytest.mark.parametrize("kind", ["device", "file", "symlink loop"])
def test_a_run_dir_that_cannot_be_a_folder_is_one_line(tmp_path: Path, kind: str):
    target = {"device": Path("/dev/null"), "file": tmp_path / "afile", "symlink loop": tmp_path / "loop"}[kind]
    if kind == "file":
        target.write_text("x")
    elif kind == "symlink loop":
        target.symlink_to(target)
    proc = cowest("eval", "configs/demo.yaml", f"run_dir={target}", *MOCK)
    one_line_error(proc, f"run_dir {target}", "set run_dir to a folder")


def test_a_cache_that_cannot_be_opened_is_one_line(tmp_path: Path):
    from cowest.models.cache import ResponseCache

    with pytest.raises(CowestError, match=r"response cache /dev/null/cache.sqlite: cannot open it .*cache_dir"):
        ResponseCache("/dev/null/cache.sqlite")


def test_a_model_path_transformers_cannot_load_is_one_line(tmp_path: Path):
    proc = cowest("eval", "configs/demo.yaml", f"run_dir={tmp_path / 'run'}", "models.weak.spec=hf//dev/null",
                  "task.eval_limit=1", "eval.strategies=[weak_only]", timeout=300)
    one_line_error(proc, "model '/dev/null': cannot load it with transformers", "cowest models")


@pytest.mark.parametrize("text, needle", [
    ("task: {name: demo}\x00\n", "unacceptable character #x0000"),
    ("task: {eval_limit: " + "9" * 5000 + "}\n", "4300 digits"),
])
def test_a_config_the_parser_refuses_is_one_line(tmp_path: Path, text: str, needle: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    one_line_error(cowest("eval", str(cfg)), str(cfg), needle)


def test_a_row_with_a_number_python_will_not_read_names_the_line(tmp_path: Path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "q", "answer": "a"}\n{"question": "q", "answer": ' + "9" * 5000 + "}\n")
    one_line_error(cowest("data", "check", str(rows), "--task", "ifqa"), "rows.jsonl:2", "4300 digits")


def test_a_lone_surrogate_in_a_row_is_refused_naming_the_field(tmp_path: Path):
    # Before: `data check` passed it, and the eval stage failed writing the trace and lost its chunk (issue 38 item 4).
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "q", "answer": "a"}\n{"question": "a\\ud800b", "answer": "a"}\n')
    one_line_error(cowest("data", "check", str(rows), "--task", "ifqa"), "rows.jsonl:2, field 'question'",
                   "lone surrogate")


def test_a_row_that_cannot_be_stored_is_named_before_anything_is_written(tmp_path: Path):
    """The stages' backstop: a record holding text no file can store is refused whole (UnwritableRow, which the
    eval and feedback stages turn into that sample's failure) rather than torn mid-line."""
    from cowest.core.records import Sample, UnwritableRow, append_jsonl, jsonl_line

    path = tmp_path / "rows.jsonl"
    append_jsonl(path, Sample(id="ok", task="t", family="qa", question="q", answers=["a"]))
    with pytest.raises(UnwritableRow, match="cannot be stored as UTF-8"):
        append_jsonl(path, Sample(id="bad", task="t", family="qa", question="a\ud800b", answers=["a"]))
    assert path.read_text(encoding="utf-8") == jsonl_line(Sample(id="ok", task="t", family="qa", question="q", answers=["a"])) + "\n"


def test_a_full_disk_mid_stage_is_one_line_and_the_rerun_finishes(tmp_path: Path, monkeypatch, capsys):
    """Issue 38 item 3, by a patched write: the disk fills after the first trace rows of an eval. The command ends
    with one line naming the file and what to do; the same command then resumes and finishes every sample."""
    import errno

    from cowest.cli import main
    from cowest.core.records import append_jsonl
    from cowest.pipeline import evaluate

    writes = {"n": 0}

    def fills_up(path, row):
        writes["n"] += 1
        if writes["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        append_jsonl(path, row)

    args = ["eval", "configs/demo.yaml", f"run_dir={tmp_path / 'run'}", "models.weak.spec=mock/answer:five",
            "models.strong.spec=mock/answer:five", "task.eval_limit=6", "eval.strategies=[weak_only]",
            "models.weak.batch_size=1", "eval.recall_split=null"]
    monkeypatch.setattr(evaluate, "append_jsonl", fills_up)
    assert main(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("[cowest] ")]
    assert len(err) == 1 and err[0].startswith("cowest: error: ") and "No space left on device" in err[0]
    assert "traces/weak_only.seed0.jsonl" in err[0] and "rerun the same command to resume" in err[0]
    monkeypatch.setattr(evaluate, "append_jsonl", append_jsonl)
    assert main(args) == 0
    traces = (tmp_path / "run" / "eval" / "traces" / "weak_only.seed0.jsonl").read_text().splitlines()
    assert len(traces) == 6 and len({json.loads(t)["sample_id"] for t in traces}) == 6


def test_a_medmcqa_answer_that_is_a_list_names_the_row(tmp_path: Path):
    """Found by tests/test_property_fuzz.py: `cop: [1]` was a TypeError traceback while reading the answer base."""
    rows = tmp_path / "cop.jsonl"
    rows.write_text('{"id": "x", "question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": [1]}\n')
    one_line_error(cowest("data", "check", str(rows), "--task", "medmcqa"), "cop.jsonl:1, field 'cop'", "expected int")
