"""Every shipped config loads and validates, names only known tasks, strategies and draft formats, and (when its
data folder is present) its eval split loads."""

from pathlib import Path

import pytest

from cowest.core.config import load_config
from cowest.pipeline.evaluate import check_systems, default_systems

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert {"demo.yaml", "eval_ifqa.yaml", "eval_medmcqa.yaml", "eval_ethics.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads_and_names_valid_choices(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # data paths in configs are relative to the project root
    cfg = load_config(path)
    check_systems(cfg, default_systems(cfg))
    if cfg.task.data and Path(cfg.task.data).exists():
        from cowest.tasks.base import load_samples

        samples = load_samples(cfg.task, cfg.task.eval_split, 3)
        assert len(samples) == 3
