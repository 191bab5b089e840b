"""Every file the tool reads is a regular file read with a size limit (issue 38 item 1): a device, a FIFO, a
`/proc` file or an oversize file is refused in one line naming the path, through the real CLI, before it can fill
memory or block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cowest.core.errors import ConfigError, DataError
from cowest.core.files import CONFIG_LIMIT, read_bounded


def cowest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowest", *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
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
