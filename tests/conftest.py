"""Fixtures shared by the tests: the real data sets (skipped, naming the path, where absent) and a config whose run
directory is the test's own folder. pytest puts this folder on sys.path, so helper modules beside the tests
(feedback_fakes, fault_server, sse_upstream) import by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from cowest.core.config import ExperimentConfig, validate_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
"""The real data sets, `../shared/data` from the project's root (CI lays shared/ beside its clone)."""


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; the test is skipped with the path it looked in when the data is not there."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found: {SHARED_DATA / 'README.md'} does not exist")
    return SHARED_DATA


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., ExperimentConfig]:
    """`make_config(task={...}, models={...})`: a validated config (sections as dicts) with run_dir = tmp_path."""
    def make(**sections: Any) -> ExperimentConfig:
        return validate_config({"run_dir": str(tmp_path), **sections})

    return make
