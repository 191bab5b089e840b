"""The run directory through the real CLI: `--force` removes only a stage's own files, one process at a time (a
second stops naming the first; `kill -9` leaves no stale lock), config.yaml kept when a stage refuses the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

MOCK_EVAL = {"task": {"name": "demo", "eval_limit": 3},
             "models": {"weak": {"spec": "mock/answer:Answer: 1"}, "strong": {"spec": "mock/answer:Answer: 2"}},
             "eval": {"strategies": ["weak_only"]}}


def write_config(path: Path, run_dir: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump({"run_dir": str(run_dir), **body}))
    return path


def cowest(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cowest", *args], capture_output=True, text=True, cwd=cwd,
                          env=_env(), timeout=120, **kw)


def _env() -> dict[str, str]:
    src = str(Path(__file__).parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "GATE_KEY": "k"}


def trace_ids(out: Path) -> Counter:
    return Counter(json.loads(line)["sample_id"] for f in (out / "traces").glob("*.jsonl")
                   for line in f.read_text().splitlines())


def test_force_removes_only_what_the_stage_wrote(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", MOCK_EVAL)
    victim = tmp_path / "victim"
    (victim / "mine").mkdir(parents=True)
    (victim / "important.txt").write_text("x")
    (victim / "mine" / "notes.txt").write_text("y")
    for _ in range(2):  # the first run evaluates into a folder with the user's files, the second forces it
        proc = cowest("eval", str(cfg), "--out", str(victim), "--force")
        assert proc.returncode == 0, proc.stderr
    assert (victim / "important.txt").read_text() == "x" and (victim / "mine" / "notes.txt").read_text() == "y"
    assert json.loads((victim / "metrics.json").read_text())["n_samples"] == 3
    assert json.loads((victim / "done.json").read_text())["attempts"] == 1  # forced: a fresh stage
    assert set(trace_ids(victim).values()) == {1}

    cwd = tmp_path / "work"  # `--out .`: the working directory itself
    cwd.mkdir()
    (cwd / "thesis.tex").write_text("z")
    for _ in range(2):
        proc = cowest("eval", str(cfg), "--out", ".", "--force", cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    assert (cwd / "thesis.tex").read_text() == "z" and (cwd / "metrics.json").exists()


class GateServer:
    """An OpenAI-compatible chat server on 127.0.0.1 that holds every request until `gate` is set: the process
    calling it stays inside its stage for as long as the test needs."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.gate = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                srv.arrived.set()
                srv.gate.wait(60)
                body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "Answer: 2"}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client was killed while we held it
                    self.close_connection = True

        return Handler


@pytest.fixture
def gate():
    srv = GateServer()
    yield srv
    srv.close()


def gated_config(tmp_path: Path, srv: GateServer, run: str) -> Path:
    body = {**MOCK_EVAL, "eval": {"strategies": ["strong_only"]},
            "models": {"weak": {"spec": "mock/answer:Answer: 1"},
                       "strong": {"spec": "openai/gate", "base_url": srv.base_url, "api_key_env": "GATE_KEY",
                                  "concurrency": 1, "max_retries": 0, "timeout_s": 90}}}
    return write_config(tmp_path / f"{run}.yaml", tmp_path / run, body)


def start_holder(cfg: Path, srv: GateServer, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "cowest", "eval", str(cfg), *extra], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert srv.arrived.wait(60), "the first process never reached the model"
    return proc


def test_a_second_process_stops_at_once_naming_the_first(tmp_path, gate):
    cfg = gated_config(tmp_path, gate, "run")
    first = start_holder(cfg, gate)
    try:
        t0 = time.monotonic()
        second = cowest("eval", str(cfg))  # the same run directory
        other = gated_config(tmp_path, gate, "other")
        third = cowest("eval", str(other), "--out", str(tmp_path / "run" / "eval"))  # the same stage folder
        assert time.monotonic() - t0 < 60
    finally:
        gate.gate.set()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    for proc in (second, third):
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by process {first.pid}" in lines[0], proc.stderr
    assert "run directory" in second.stderr and "stage eval" in third.stderr
    ids = trace_ids(tmp_path / "run" / "eval")
    assert len(ids) == 3 and set(ids.values()) == {1}  # every sample once


def test_kill_9_leaves_no_stale_lock(tmp_path, gate):
    cfg = gated_config(tmp_path, gate, "run")
    first = start_holder(cfg, gate)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    gate.gate.set()
    again = cowest("eval", str(cfg))
    assert again.returncode == 0, again.stderr
    ids = trace_ids(tmp_path / "run" / "eval")
    assert len(ids) == 3 and set(ids.values()) == {1}  # every sample once
    assert json.loads((tmp_path / "run" / "eval" / "done.json").read_text())["attempts"] == 2


def test_a_refused_config_leaves_config_yaml_as_it_was(tmp_path, capsys):
    from cowest.cli import main

    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", MOCK_EVAL)
    assert main(["eval", str(cfg)]) == 0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "Answer: 1" in saved
    capsys.readouterr()
    assert main(["eval", str(cfg), "models.weak.spec=mock/echo"]) == 2
    assert "differing keys: models.weak.spec" in capsys.readouterr().err  # refused: traces of another config
    assert (tmp_path / "run" / "config.yaml").read_text() == saved


def test_feedback_without_its_adapter_is_refused_before_it_records_anything(tmp_path, capsys):
    """Else its inputs would name the adapter missing, and once SFT made it, the stage would refuse the run."""
    from cowest.cli import main

    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", {**MOCK_EVAL, "models": {
        "weak": {"spec": f"hf/{tmp_path}"}, "strong": {"spec": "mock/answer:Answer: 2"}}})
    assert main(["feedback", str(cfg)]) == 2
    assert "sft/adapter does not exist: run `cowest sft` first" in capsys.readouterr().err
    assert not (tmp_path / "run" / "round1").exists()
