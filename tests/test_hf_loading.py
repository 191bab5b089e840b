"""Loading weights into transformers: spec resolution, the cached GGUF -> safetensors conversion, adapter chains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cowest.core.errors import ConfigError, CowestError
from cowest.models import hf_loading
from cowest.models.hf_loading import adapter_chain, load_model_and_tokenizer, resolve_source, write_adapter_meta


def test_resolve_source():
    assert resolve_source("hf/HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_source("llamacpp/models/x.gguf") == "models/x.gguf"
    assert resolve_source("embedded/smollm2-135m").endswith(".gguf")
    with pytest.raises(ConfigError, match="no local weights"):
        resolve_source("openai/gpt-4o")
    with pytest.raises(ConfigError, match="provider/model"):
        resolve_source("smollm2")


def _fake_adapter(d: Path, parent: Path | None) -> Path:
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    write_adapter_meta(d, base="embedded/smollm2-135m", parent=parent, method="x")
    return d


def test_adapter_chain_root_to_leaf_with_relative_parents(tmp_path):
    sft = _fake_adapter(tmp_path / "run" / "adapter", None)
    dpo = _fake_adapter(tmp_path / "run" / "aligned" / "round1", sft)
    r2 = _fake_adapter(tmp_path / "run" / "aligned" / "round2", dpo)
    assert json.loads((dpo / hf_loading.ADAPTER_META).read_text())["parent"] == "../../adapter"
    assert [p.resolve() for p in adapter_chain(r2)] == [sft.resolve(), dpo.resolve(), r2.resolve()]
    # The run folder can move: parents are relative.
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    assert [p.name for p in adapter_chain(moved / "aligned" / "round2")] == ["adapter", "round1", "round2"]


def test_adapter_chain_errors(tmp_path):
    with pytest.raises(CowestError, match="no adapter_config.json"):
        adapter_chain(tmp_path)
    a = _fake_adapter(tmp_path / "a", None)
    b = _fake_adapter(tmp_path / "b", a)
    write_adapter_meta(a, base="x", parent=b, method="x")
    with pytest.raises(CowestError, match="loops"):
        adapter_chain(b)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert the embedded SmolLM2 GGUF into a fresh models cache (a real conversion, once for the module)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COWEST_MODELS_DIR", str(tmp_path_factory.mktemp("models")))
    gguf = resolve_source("embedded/smollm2-135m")
    model, tok = load_model_and_tokenizer(gguf)
    yield gguf, model, tok
    mp.undo()


@pytest.mark.slow
def test_gguf_converted_once_to_safetensors(converted, monkeypatch):
    import transformers

    gguf, model, tok = converted
    folder = hf_loading.gguf_cache_dir(gguf)
    assert folder.parent.name == "hf" and len(folder.name) == 64  # keyed by the file's SHA-256
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    # The GGUF quantizer flag is gone, both from the saved config and the loaded model.
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert getattr(model, "hf_quantizer", None) is None
    assert tok.pad_token is not None and tok.padding_side == "left"
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)

    calls = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append((str(args[0]), kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    model2, _ = load_model_and_tokenizer(gguf)
    assert calls == [(str(folder), {"dtype": model.dtype})]  # the cached folder, never the GGUF again
    import torch

    ids = tok("The Zorvex lamp", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model2(ids).logits)


@pytest.mark.slow
def test_bf16_copy_is_half_the_size_hash_checked_and_reconverted_when_damaged(converted, capsys):
    """The bf16 copy is cast from the float32 one, recorded with each file's SHA-256; a damaged file is found by
    the hash check at load and the copy converted again, giving the same model."""
    import torch

    gguf, model, tok = converted
    bf16_model, _ = load_model_and_tokenizer(gguf, dtype="bfloat16")
    folder = hf_loading.gguf_cache_dir(gguf, "bfloat16")
    assert folder.name == hf_loading.gguf_cache_dir(gguf).name + "-bfloat16"
    assert bf16_model.dtype == torch.bfloat16
    meta = json.loads((folder / hf_loading.SOURCE_META).read_text())
    assert meta["dtype"] == "bfloat16" and "model.safetensors" in meta["files"]
    fp32_size = (hf_loading.gguf_cache_dir(gguf) / "model.safetensors").stat().st_size
    assert (folder / "model.safetensors").stat().st_size < 0.55 * fp32_size
    assert hf_loading.verify_converted(folder) is None

    ids = tok("The Zorvex lamp", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = bf16_model(ids).logits
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor: same size, a new mtime
    weights.write_bytes(bytes(data))
    assert "does not match" in hf_loading.verify_converted(folder)
    capsys.readouterr()
    again, _ = load_model_and_tokenizer(gguf, dtype="bfloat16")
    assert "converting" in capsys.readouterr().err
    assert hf_loading.verify_converted(folder) is None
    with torch.no_grad():
        assert torch.equal(again(ids).logits, ref)


@pytest.mark.slow
def test_lm_head_gets_a_contiguous_input_and_the_same_logits():
    """A merged adapter leaves weights that do not require grad; then torch multiplies the strided last-position slice
    of a prefill by a batch-expanded copy of the head's weight. The loader's hook hands the head a contiguous input."""
    import torch

    model, _ = load_model_and_tokenizer(resolve_source("embedded/smollm2-135m"), dtype="bfloat16")
    model.requires_grad_(False)  # as merge_and_unload leaves the weights
    seen: list[bool] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    ids = torch.randint(0, 49000, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        hooked = model(input_ids=ids, logits_to_keep=1).logits
        model.get_output_embeddings()._forward_pre_hooks.popitem(last=False)  # the loader's hook, registered first
        plain = model(input_ids=ids, logits_to_keep=1).logits
    assert seen == [True, False]
    assert torch.equal(hooked, plain)
