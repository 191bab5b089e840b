"""Issue 13 item 6: a request that fails for good fails its sample, not the stage. The eval and feedback stages run
through the real CLI over the `openai` provider against a fault-injecting server on 127.0.0.1; finished work is
written, failed samples are counted (metrics.json, pairs_stats.json, faults.json) and retried by the next run, and
past `max_failed_share` the stage stops with a one-line error, keeping what it finished. A killed feedback stage keeps
the chunks it finished."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fault_server import FaultServer

from cowest.cli import main

pytest.importorskip("openai")


def write_task(tmp_path: Path, questions: list[str]) -> Path:
    data = tmp_path / "qa.jsonl"
    rows = [{"id": f"q{i}", "question": q, "answer": "echo"} for i, q in enumerate(questions)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data


def write_config(tmp_path: Path, srv: FaultServer, data: Path, **top) -> Path:
    model = {"base_url": srv.base_url, "api_key_env": "COWEST_TEST_NO_SUCH_KEY", "timeout_s": 2, "max_retries": 1,
             "concurrency": 4}
    cfg = {"run_dir": str(tmp_path / "run"),
           "task": {"name": "jsonl", "data": str(data), "options": {"family": "qa"}, "train_split": "train", "eval_split": "dev"},
           "models": {"weak": {"spec": "openai/weak", **model}, "strong": {"spec": "openai/strong", **model}},
           "eval": {"strategies": ["weak_only", "strong_only"], "bootstrap_samples": 20},
           "feedback": {"k": 2}, **top}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def ids_in(path: Path, key: str) -> list[str]:
    return [json.loads(line)[key] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_eval_keeps_going_past_a_failed_sample_and_the_rerun_retries_it(tmp_path: Path, capsys) -> None:
    questions = [f"question {i}" for i in range(6)]
    questions[2] = "plan:500,500,ok;flaky"  # two 500s: fails with max_retries 1, succeeds on the next run
    with FaultServer() as srv:
        cfg = write_config(tmp_path, srv, write_task(tmp_path, questions), max_failed_share=0.2)
        assert main(["eval", str(cfg)]) == 0
        out = tmp_path / "run" / "eval"
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_samples"] == 5 and metrics["failed_samples"] == 1
        faults = metrics["faults"]
        assert faults["failed_samples"] == 2  # the flaky sample, once per system
        assert faults["faults"]["http_5xx"] == 4 and faults["gave_up"] == {"http_5xx": 2}
        assert faults["retried"]["http_5xx"] == 2 and faults["failed_reasons"] == {"http_5xx": 2}
        assert faults["failed_ids"] == ["strong_only/seed0/q2", "weak_only/seed0/q2"]
        for system in ("weak_only", "strong_only"):
            assert sorted(ids_in(out / "traces" / f"{system}.seed0.jsonl", "sample_id")) == ["q0", "q1", "q3", "q4", "q5"]
        assert not (out / "done.json").exists()  # the stage stays open: the next run retries q2
        assert "eval: 2 sample runs failed" in capsys.readouterr().err

        assert main(["eval", str(cfg)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_samples"] == 6 and metrics["failed_samples"] == 0
        assert metrics["faults"]["failed_samples"] == 0 and metrics["faults"]["faults"]["http_5xx"] == 4
        for system in ("weak_only", "strong_only"):
            assert sorted(ids_in(out / "traces" / f"{system}.seed0.jsonl", "sample_id")) == [f"q{i}" for i in range(6)]
        assert (out / "done.json").exists()


def test_past_the_failure_budget_the_stage_stops_with_one_line_keeping_its_work(tmp_path: Path, capsys) -> None:
    questions = [f"question {i}" for i in range(8)]
    questions[1] = questions[5] = "plan:400;bad"  # a client error: not retried
    with FaultServer() as srv:
        cfg = write_config(tmp_path, srv, write_task(tmp_path, questions), max_failed_share=0.05)
        assert main(["eval", str(cfg), "eval.strategies=[strong_only]"]) == 2
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("cowest: error:")]
    assert len(line) == 1 and "Traceback" not in err
    assert "samples failed for good" in line[0] and "max_failed_share 0.05" in line[0] and "HTTP 400" in line[0]
    out = tmp_path / "run" / "eval"
    kept = ids_in(out / "traces" / "strong_only.seed0.jsonl", "sample_id")
    assert "q0" in kept and "q1" not in kept and len(kept) == len(set(kept))
    faults = json.loads((out / "faults.json").read_text())
    assert faults["gave_up"]["http_4xx"] >= 1 and faults["failed_samples"] >= 1


def test_feedback_counts_a_failed_question_in_pairs_stats_and_finishes_it_on_a_rerun(tmp_path: Path) -> None:
    questions = [f"question {i}" for i in range(5)]
    questions[3] = "plan:503,503,ok;flaky"
    with FaultServer() as srv:
        cfg = write_config(tmp_path, srv, write_task(tmp_path, questions), max_failed_share=0.5)
        assert main(["feedback", str(cfg)]) == 0
        out = tmp_path / "run" / "round1" / "feedback"
        stats = json.loads((out / "pairs_stats.json").read_text())
        assert stats["questions"] == 4 and stats["faults"]["failed_samples"] == 1
        assert stats["faults"]["faults"]["http_5xx"] >= 2 and stats["faults"]["gave_up"]["http_5xx"] >= 1
        assert sorted(ids_in(out / "feedback.jsonl", "question_id")) == ["q0", "q1", "q2", "q4"]
        assert not (out / "done.json").exists()
        for _ in range(3):  # each rerun gets further (the refinement prompts of q3 meet their own two 503s)
            assert main(["feedback", str(cfg)]) == 0
            if (out / "done.json").exists():
                break
    assert (out / "done.json").exists()
    assert sorted(ids_in(out / "feedback.jsonl", "question_id")) == [f"q{i}" for i in range(5)]
    stats = json.loads((out / "pairs_stats.json").read_text())
    assert stats["questions"] == 5 and stats["faults"]["failed_samples"] == 0


def test_a_killed_feedback_stage_keeps_the_chunks_it_finished(tmp_path: Path) -> None:
    # Each question sends K + 1 strong prompts, so a chunk of eval's size counted in questions (16 here) held all
    # 15 questions: every one was asked before the first was written, and a kill lost the whole stage.
    questions = [f"plan:slow;question {i}" for i in range(15)]  # every request 0.3 s: a chunk takes seconds
    with FaultServer() as srv:
        cfg = write_config(tmp_path, srv, write_task(tmp_path, questions))
        out = tmp_path / "run" / "round1" / "feedback" / "feedback.jsonl"
        err = tmp_path / "stderr.txt"
        with err.open("w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "cowest", "feedback", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=f)
        asked: set[int] | None = None  # the questions the server had seen when the first row reached the disk
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if out.exists() and out.read_text(encoding="utf-8").count("\n"):
                    with srv.lock:
                        asked = {int(i) for p in srv.hits for i in re.findall(r"question (\d+)", p)}
                    break
                time.sleep(0.01)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert asked is not None, err.read_text()[-2000:]
        kept = ids_in(out, "question_id")
        assert len(asked) < 15, "the first chunk must be on disk before the last questions are asked"
        assert 0 < len(kept) < 15
        assert main(["feedback", str(cfg)]) == 0
    ids = ids_in(out, "question_id")
    assert ids[:len(kept)] == kept and sorted(ids) == sorted(f"q{i}" for i in range(15))


def test_a_reply_that_cannot_be_stored_fails_its_sample_alone(tmp_path: Path, capsys) -> None:
    """Issue 38 item 4: a model reply holding a lone surrogate (valid JSON, not UTF-8) once failed the eval stage at
    its write and lost the chunk. Now it is a malformed reply, retried and counted; past the retries that sample
    fails alone, as a failed request does, and the others are written."""
    questions = [f"question {i}" for i in range(5)]
    questions[3] = "plan:surrogate;bad"
    with FaultServer() as srv:
        cfg = write_config(tmp_path, srv, write_task(tmp_path, questions), max_failed_share=0.5)
        assert main(["eval", str(cfg)]) == 0
    out = tmp_path / "run" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 4 and metrics["failed_samples"] == 1
    assert metrics["faults"]["failed_ids"] == ["strong_only/seed0/q3", "weak_only/seed0/q3"]
    assert metrics["faults"]["faults"]["malformed"] == 4  # two tries (max_retries 1) per system
    for system in ("weak_only", "strong_only"):
        assert sorted(ids_in(out / "traces" / f"{system}.seed0.jsonl", "sample_id")) == ["q0", "q1", "q2", "q4"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "eval: 2 sample runs failed" in err
