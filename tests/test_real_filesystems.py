"""Issue 38 item 3 on real filesystems, not patched writes: a run directory on a small tmpfs that fills up mid-stage,
and one on a read-only mount. Each ends the command with one line naming the path and what to do; after the disk
is freed, the same command resumes and finishes with every sample written once. Mounting needs root (the CI
machine runs as root); elsewhere these skip, saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EVAL = ["models.weak.spec=mock/answer:five", "models.strong.spec=mock/answer:five", "task.eval_limit=100",
        "eval.strategies=[weak_only, strong_only]", "eval.recall_split=null"]


def cowest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowest", *args], capture_output=True, text=True, timeout=300)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("[cowest] ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("cowest: error: "), lines
    return lines[0]


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.strip()[:80] or 'not root'}): run as root to test real mounts")


@pytest.fixture
def tmpfs(tmp_path: Path):
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("real mounts need root and mount(8); the patched-write test in test_hostile_paths.py still runs")
    where = tmp_path / "disk"
    where.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("left_kib, where", [(96, "the response cache"), (200, "the traces")])
def test_a_disk_that_fills_mid_eval_is_one_line_and_the_rerun_finishes(tmpfs: Path, left_kib: int,
                                                                       where: str) -> None:
    """With 96 KiB left the cache cannot open; with 200 KiB the eval writes about half its traces first (the whole
    run takes ~256 KiB)."""
    filler = tmpfs / "filler"
    free = shutil.disk_usage(tmpfs).free
    filler.write_bytes(b"\0" * (free - left_kib * 1024))
    run = tmpfs / "run"
    msg = one_line(cowest("eval", "configs/demo.yaml", f"run_dir={run}", *EVAL))
    assert "No space left on device" in msg or "disk is full" in msg, msg
    assert str(run) in msg and "rerun the same command to resume" in msg, msg
    written = {p.name: len(p.read_text().splitlines()) for p in (run / "eval" / "traces").glob("*.jsonl")}
    assert sum(written.values()) < 200  # it did stop part-way
    if where == "the traces":
        assert "/eval/traces/" in msg and sum(written.values()) > 0, (msg, written)
    filler.unlink()
    done = cowest("eval", "configs/demo.yaml", f"run_dir={run}", *EVAL)
    assert done.returncode == 0, done.stderr[-2000:]
    for system in ("weak_only", "strong_only"):
        ids = [json.loads(x)["sample_id"] for x in (run / "eval" / "traces" / f"{system}.seed0.jsonl").read_text()
               .splitlines()]
        assert len(ids) == 100 and len(set(ids)) == 100  # none lost, none twice, no torn line
    assert json.loads((run / "eval" / "metrics.json").read_text())["n_samples"] == 100


def test_a_read_only_run_directory_is_one_line_naming_it(tmpfs: Path) -> None:
    run = tmpfs / "run"
    run.mkdir()
    mount("-o", "remount,ro", str(tmpfs))
    msg = one_line(cowest("eval", "configs/demo.yaml", f"run_dir={run}", *EVAL))
    assert "Read-only file system" in msg and str(run) in msg, msg
