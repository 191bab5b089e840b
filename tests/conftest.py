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


TINY = [
    "task.train_limit=24", "task.eval_limit=3", "feedback.questions=8", "feedback.k=4", "feedback.evaluator=hybrid",
    "feedback.temperature=1.5", "sft.knowledge_epochs=0", "eval.recall_split=facts",
    # Engines pinned, so every machine kind runs the same arithmetic (auto may pick bf16 on one and not another).
    "models.weak.engine=hf", "models.weak.dtype=float32", "models.strong.engine=llamacpp",
    "sft.max_steps=3", "sft.lr=1e-3", "sft.batch_size=4", "align.max_steps=2", "align.lr=5e-4",
    "models.strong.spec=embedded/qwen2.5-coder-0.5b", "models.strong.n_threads=2",
    "generation.weak.max_tokens=32", "generation.strong.max_tokens=48", "generation.judge.max_tokens=12",
    # The demo's facts-or-chain-of-thought drafts and unseen feedback questions need a full SFT to give pairs; three
    # steps give none there. The loop here is the paper's: feedback on the SFT questions, one draft format.
    "sft.draft_mix=null", "feedback.split=null", "align.select_split=null",
]


@pytest.fixture(scope="session")
def loop_run(tmp_path_factory):
    """The whole loop on the embedded models, tiny (tests/test_loop.py checks it; tests/test_view.py browses it)."""
    from cowest.core.config import load_config
    from cowest.pipeline.loop import run_all

    run = tmp_path_factory.mktemp("loop")
    cfg = load_config("configs/demo.yaml", [f"run_dir={run}", *TINY])
    report = run_all(cfg)
    return cfg, run, report

