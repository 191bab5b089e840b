"""Training recipes with real TRL steps on SmolLM2-135M: SFT, DPO on top of it, the SFT-positive control, bad pairs.

Tiny on purpose (a few steps, batch 2, max_length 256, LoRA r 8); learning rates are raised so a couple of steps
move the logits measurably.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cowest.config import ExperimentConfig
from cowest.errors import CowestError, DataError
from cowest.records import PreferencePair, Sample, write_jsonl
from cowest.tasks import demo
from cowest.tasks.prompts import draft_messages, draft_target
from cowest.train.dpo import load_pairs, positive_rows, run_dpo, run_sft_positive
from cowest.train.sft import sft_rows, sft_target

TINY = {"max_steps": 2, "batch_size": 2, "max_length": 256, "lora_r": 8, "lora_alpha": 16}


def _cfg() -> ExperimentConfig:
    return ExperimentConfig.model_validate({"sft": {**TINY, "lr": 1e-3}, "align": {**TINY, "lr": 5e-4}})


def _samples(n: int = 4) -> list[Sample]:
    return demo.build("train", _cfg().task)[60:60 + n]


def _pairs(samples: list[Sample]) -> list[PreferencePair]:
    return [
        PreferencePair(prompt=draft_messages(s, "cot"),
                       chosen=[{"role": "assistant", "content": draft_target(s, "cot")}],
                       rejected=[{"role": "assistant", "content": "I have never heard of that product.\nAnswer: 7"}],
                       question_id=s.id, delta_chosen=1.0, delta_rejected=0.0)
        for s in samples
    ]


# --- data preparation (no model) ---------------------------------------------------------------------------------

def test_sft_rows_are_the_drafting_prompt_and_gold_draft():
    cfg = _cfg()
    s = _samples(1)[0]
    (row,) = sft_rows([s], cfg)
    assert row["prompt"] == draft_messages(s, "cot", cfg.eval.prompts)
    assert row["completion"] == [{"role": "assistant", "content": f"{s.rationale}\nAnswer: {s.gold}"}]


def test_sft_target_fallbacks():
    bare = Sample(id="b", task="t", family="qa", question="Q?", answers=["x"])
    assert sft_target(bare, "cot", "auto") == "Answer: x"
    assert sft_target(_samples(1)[0], "cot", "answer").startswith("Answer: ")
    with pytest.raises(DataError, match="sample 'b' has no rationale"):
        sft_target(bare, "cot", "rationale")


def test_positive_rows_dedupe_chosen():
    pairs = _pairs(_samples(2))
    rows = positive_rows(pairs + pairs)
    assert [r["completion"] for r in rows] == [p.chosen for p in pairs]


def test_empty_pairs_file_says_why_and_what_to_change(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("")
    with pytest.raises(CowestError, match=r"no preference pairs.*feedback\.k.*feedback\.temperature"):
        run_dpo(_cfg(), tmp_path / "pairs.jsonl", tmp_path / "out", weak_source="unused", reference_adapter=None)
    assert not (tmp_path / "out").exists()


def test_one_sided_pairs_rejected(tmp_path):
    p = _pairs(_samples(2))
    same = [q.model_copy(update={"rejected": q.chosen}) for q in p]
    write_jsonl(tmp_path / "pairs.jsonl", same)
    with pytest.raises(CowestError, match="one-sided"):
        run_sft_positive(_cfg(), tmp_path / "pairs.jsonl", tmp_path / "out", weak_source="unused",
                         reference_adapter=None)
    # A mix keeps only the informative pairs.
    write_jsonl(tmp_path / "mix.jsonl", same + p)
    assert load_pairs(tmp_path / "mix.jsonl") == p


def test_malformed_pair_row_names_the_line(tmp_path):
    good = _pairs(_samples(1))[0].model_dump_json()
    (tmp_path / "pairs.jsonl").write_text(good + "\n" + good.replace('"chosen"', '"choosen"') + "\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl:2"):
        run_dpo(_cfg(), tmp_path / "pairs.jsonl", tmp_path / "out", weak_source="unused", reference_adapter=None)
    (tmp_path / "pairs.jsonl").write_text(good + "\n{not json\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: malformed JSON"):
        load_pairs(tmp_path / "pairs.jsonl")


def test_train_precision_follows_the_hardware(monkeypatch):
    pytest.importorskip("torch")
    import torch

    from cowest.errors import ConfigError
    from cowest.models import calibrate
    from cowest.train.common import device_kwargs, train_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("COWEST_TRAIN_PRECISION", raising=False)
    for flags, want in ((["avx512_bf16", "avx512f", "avx2"], "bfloat16"), (["amx_bf16", "amx_tile"], "bfloat16"),
                        (["avx2"], "float32")):
        monkeypatch.setattr(calibrate, "cpu_identity", lambda flags=flags, **kw: {"cpu": "x", "flags": flags,
                                                                                   "threads": 2})
        assert train_precision() == want
        assert device_kwargs()["bf16"] is (want == "bfloat16") and device_kwargs()["use_cpu"]
        assert train_precision("dpo") == "float32"  # DPO stays float32 on CPUs (see train_precision)
    monkeypatch.setenv("COWEST_TRAIN_PRECISION", "bfloat16")
    assert train_precision() == "bfloat16" and train_precision("dpo") == "bfloat16"
    monkeypatch.setenv("COWEST_TRAIN_PRECISION", "fp8")
    with pytest.raises(ConfigError, match="COWEST_TRAIN_PRECISION='fp8': valid values are auto, bfloat16, float32"):
        train_precision()


# --- real training ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base():
    from cowest.models.hf_loading import load_model_and_tokenizer, resolve_source

    source = resolve_source("embedded/smollm2-135m")
    model, tok = load_model_and_tokenizer(source)
    return source, model, tok


def _logits(model, tok, sample: Sample):
    import torch

    text = tok.apply_chat_template(draft_messages(sample, "cot"), tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        return model(tok(text, return_tensors="pt").input_ids).logits[0, -8:]


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, base):
    from cowest.train.sft import run_sft

    return run_sft(_cfg(), _samples(4), tmp_path_factory.mktemp("run") / "adapter")


@pytest.fixture(scope="module")
def dpo_dir(sft_dir, base):
    source = base[0]
    pairs = sft_dir.parent / "pairs.jsonl"
    write_jsonl(pairs, _pairs(_samples(4)))
    return run_dpo(_cfg(), pairs, sft_dir.parent / "aligned", weak_source=source, reference_adapter=str(sft_dir))


@pytest.mark.slow
def test_sft_saves_adapter_log_and_changes_the_model(sft_dir, base):
    from cowest.models.hf_loading import load_model_and_tokenizer

    source, base_model, tok = base
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "trainer_state.json"):
        assert (sft_dir / name).exists(), name
    assert not sft_dir.with_name("adapter.partial").exists()
    meta = json.loads((sft_dir / "cowest_adapter.json").read_text())
    assert meta["method"] == "sft" and meta["parent"] is None and meta["base"] == "embedded/smollm2-135m"
    from cowest.train.common import train_precision

    assert meta["precision"] == train_precision()  # bf16 autocast where the hardware has native bf16, recorded
    steps = [json.loads(line) for line in (sft_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2]
    sft_model, _ = load_model_and_tokenizer(source, adapter=str(sft_dir))
    s = _samples(1)[0]
    assert (_logits(sft_model, tok, s) - _logits(base_model, tok, s)).abs().max() > 1e-3


@pytest.mark.slow
def test_dpo_on_top_of_sft(dpo_dir, sft_dir, base, tmp_path):
    from cowest.models.hf_loading import load_model_and_tokenizer

    source, base_model, tok = base
    assert (dpo_dir / "adapter_model.safetensors").exists()
    meta = json.loads((dpo_dir / "cowest_adapter.json").read_text())
    assert meta["method"] == "dpo" and (dpo_dir / meta["parent"]).resolve() == sft_dir.resolve()
    from cowest.train.common import train_precision

    assert meta["precision"] == train_precision("dpo")
    logs = [json.loads(line) for line in (dpo_dir / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) == 2 and abs(losses[0] - 0.6931) < 1e-3  # step 1: policy == reference (the SFT model)
    assert all("rewards/margins" in r for r in logs if "loss" in r)

    s = _samples(1)[0]
    sft_model, _ = load_model_and_tokenizer(source, adapter=str(sft_dir))
    dpo_model, _ = load_model_and_tokenizer(source, adapter=str(dpo_dir))
    aligned = _logits(dpo_model, tok, s)
    assert (aligned - _logits(sft_model, tok, s)).abs().max() > 1e-3
    # The chain matters: the DPO adapter applied to the bare base (no SFT parent) is a different model.
    orphan = tmp_path / "orphan"
    shutil.copytree(dpo_dir, orphan)
    (orphan / "cowest_adapter.json").unlink()
    orphan_model, _ = load_model_and_tokenizer(source, adapter=str(orphan))
    assert (aligned - _logits(orphan_model, tok, s)).abs().max() > 1e-3


@pytest.mark.slow
def test_sft_positive_control(sft_dir, dpo_dir, base):
    source = base[0]
    out = run_sft_positive(_cfg(), sft_dir.parent / "pairs.jsonl", sft_dir.parent / "positive", weak_source=source,
                           reference_adapter=str(sft_dir))
    meta = json.loads((out / "cowest_adapter.json").read_text())
    assert meta["method"] == "sft_positive" and meta["examples"] == 4
    assert (out / meta["parent"]).resolve() == sft_dir.resolve()
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in x] == [1, 2]
