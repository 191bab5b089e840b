"""configs/scale: the experiment configs load as cowest configs, the accelerate configs load with accelerate's own
parser (which rejects unknown keys) and point at DeepSpeed JSON files with the ZeRO stage they are named for."""

import json
from pathlib import Path

import pytest

from cowest.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCALE = ROOT / "configs" / "scale"


@pytest.mark.parametrize("path", sorted(SCALE.glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.run_dir.startswith("runs/")


def test_vllm_weak_config_drafts_through_the_openai_provider() -> None:
    cfg = load_config(SCALE / "vllm_weak.yaml")
    assert cfg.models.weak.spec.startswith("openai/") and cfg.models.weak.base_url.endswith("/v1")


@pytest.mark.parametrize("name,stage", [("accelerate_ddp.yml", None), ("accelerate_zero2.yml", 2),
                                        ("accelerate_zero3.yml", 3)])
def test_accelerate_configs_parse(name: str, stage: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = pytest.importorskip("accelerate.commands.config.config_args")
    monkeypatch.chdir(ROOT)  # the DeepSpeed file paths are relative to the project root, as in docs/scale.md
    cfg = cluster.ClusterConfig.from_yaml_file(str(SCALE / name))
    assert cfg.mixed_precision == "bf16" and cfg.num_processes >= 1 and not cfg.use_cpu
    if stage is None:
        assert str(cfg.distributed_type).endswith("MULTI_GPU")
        return
    assert str(cfg.distributed_type).endswith("DEEPSPEED")
    ds_file = Path(cfg.deepspeed_config["deepspeed_config_file"])
    ds = json.loads(ds_file.read_text())
    assert ds["zero_optimization"]["stage"] == stage
    # "auto" lets the HF Trainer fill batch sizes, accumulation and clipping from the cowest config
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        assert ds[key] == "auto"


def test_cli_runs_as_a_module() -> None:
    """`accelerate launch -m cowest.cli ...` needs `python -m cowest.cli` to run main()."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "cowest.cli", "sft", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0 and "CONFIG" in p.stdout.upper()
