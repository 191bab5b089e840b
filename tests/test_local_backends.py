"""Real generation from the embedded GGUF models: llama.cpp (SmolLM2, Qwen-0.5B) and transformers (SmolLM2).

Run under the shared CPU lock: `flock /tmp/cowest-cpu.lock pytest tests/test_local_backends.py`.
"""

from __future__ import annotations

import pytest
from engines import needs_llama_cpp

from cowest.core.config import ModelConfig
from cowest.models.base import load_backend
from cowest.models.embedded import gguf_path
from cowest.core.records import SamplingParams

pytestmark = pytest.mark.slow

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
FRUITS = [{"role": "user", "content": "List three red fruits."}]
WHY = [{"role": "user", "content": "Why is the sky blue? One sentence."}]


@pytest.fixture(scope="module")
def smol_cpp():
    needs_llama_cpp()
    b = load_backend(ModelConfig(spec=f"llamacpp/{gguf_path('smollm2-135m')}", n_ctx=1024))
    yield b
    b.close()


@pytest.fixture(scope="module")
def smol_hf():
    pytest.importorskip("torch")
    b = load_backend(ModelConfig(spec=f"hf/{gguf_path('smollm2-135m')}", batch_size=2))
    yield b
    b.close()


def test_llamacpp_greedy_matches_create_chat_completion(smol_cpp):
    out = smol_cpp.generate([CAPITAL, FRUITS], SamplingParams(max_tokens=16))
    assert smol_cpp.has_chat_template and smol_cpp.identity.startswith("llamacpp/SmolLM2")
    assert "sha256:b179c952" in smol_cpp.identity
    assert "Paris" in out[0][0].text and out[0][0].finish_reason == "stop"
    g = out[1][0]
    assert g.prompt_tokens > 10 and 0 < g.completion_tokens <= 16
    # The library's own chat path with the GGUF template gives the same greedy text.
    ref = smol_cpp.llm.create_chat_completion(CAPITAL, max_tokens=16, temperature=0.0)
    assert ref["choices"][0]["message"]["content"] == out[0][0].text


def test_llamacpp_samples_are_seeded_per_index(smol_cpp):
    p = SamplingParams(max_tokens=8, temperature=1.0, n=3, seed=7)
    a = smol_cpp.generate([WHY], p)[0]
    b = smol_cpp.generate([WHY], p)[0]
    assert [g.text for g in a] == [g.text for g in b]  # same request, same samples
    assert len({g.text for g in a}) > 1  # distinct seeds give distinct samples
    # sample 1 of seed 7 is sample 0 of seed 8
    alone = smol_cpp.generate([WHY], p.model_copy(update={"n": 1, "seed": 8}))[0][0]
    assert alone.text == a[1].text


def test_llamacpp_length_stop_and_logprobs(smol_cpp):
    import llama_cpp

    from cowest.models.llamacpp import safe_model_params

    g = smol_cpp.generate([WHY], SamplingParams(max_tokens=5, logprobs=True))[0][0]
    assert g.finish_reason == "length" and g.completion_tokens == 5 and len(g.token_logprobs) == 5
    # reference: llama-cpp-python's own logprobs (logits_all=True) for the same prompt tokens
    with safe_model_params(llama_cpp):
        ref_llm = llama_cpp.Llama(model_path=str(gguf_path("smollm2-135m")), n_ctx=256, logits_all=True,
                                  n_threads=smol_cpp.n_threads, verbose=False)
    ref = ref_llm.create_completion(smol_cpp.prompt_tokens(WHY), max_tokens=5, temperature=0.0, logprobs=1)
    ref_llm.close()
    assert ref["choices"][0]["text"] == g.text
    assert g.token_logprobs == pytest.approx(ref["choices"][0]["logprobs"]["token_logprobs"], abs=2e-2)
    s = smol_cpp.generate([FRUITS], SamplingParams(max_tokens=30, stop=["\n"]))[0][0]
    assert "\n" not in s.text and s.text and s.finish_reason == "stop"


@pytest.mark.parametrize("alias", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])  # the demo's and the default strong
def test_llamacpp_qwen_strong_models_generate(alias):
    needs_llama_cpp()
    b = load_backend(ModelConfig(spec=f"embedded/{alias}", engine="llamacpp", n_ctx=512))
    try:
        g = b.generate([CAPITAL], SamplingParams(max_tokens=8))[0][0]
    finally:
        b.close()
    assert type(b).__name__ == "LlamaCppBackend" and b.has_chat_template
    assert "Paris" in g.text and g.completion_tokens <= 8


def test_hf_batched_left_padded_greedy_matches_single(smol_hf, smol_cpp):
    p = SamplingParams(max_tokens=10, logprobs=True)
    batched = smol_hf.generate([CAPITAL, FRUITS, WHY], p)  # batch_size=2: a full and a partial batch
    single = [smol_hf.generate([m], p)[0][0] for m in (CAPITAL, FRUITS)]
    assert [b[0].text for b in batched[:2]] == [s.text for s in single]
    assert smol_hf.identity == smol_cpp.identity.replace("llamacpp/", "hf/")  # same weights, same hash
    cap = batched[0][0]
    assert "Paris" in cap.text and cap.finish_reason == "stop"
    assert len(cap.token_logprobs) == cap.completion_tokens and all(x <= 0 for x in cap.token_logprobs)
    # the fp32 model and llama.cpp's quantized kernels agree on the first token's probability
    cpp = smol_cpp.generate([CAPITAL], p)[0][0]
    assert cap.token_logprobs[0] == pytest.approx(cpp.token_logprobs[0], abs=0.2)
    assert batched[2][0].completion_tokens == 10 and batched[2][0].finish_reason == "length"


def test_hf_sampling_is_reproducible(smol_hf):
    p = SamplingParams(max_tokens=6, temperature=1.0, n=2, seed=3)
    a = smol_hf.generate([WHY, CAPITAL], p)
    b = smol_hf.generate([WHY, CAPITAL], p)
    assert [[g.text for g in r] for r in a] == [[g.text for g in r] for r in b]
    assert a[0][0].text != a[0][1].text
    greedy = smol_hf.generate([CAPITAL], SamplingParams(max_tokens=6, n=3))[0]
    assert len(greedy) == 3 and len({g.text for g in greedy}) == 1


def test_llamacpp_rejects_peft_folder_and_missing_file(tmp_path):
    needs_llama_cpp()
    from cowest.core.errors import CowestError

    with pytest.raises(CowestError, match="not a GGUF LoRA file; PEFT adapter folders load with hf/"):
        load_backend(ModelConfig(spec=f"llamacpp/{gguf_path('smollm2-135m')}", adapter=str(tmp_path)))
    with pytest.raises(CowestError, match="GGUF file not found: .*nope.gguf"):
        load_backend(ModelConfig(spec=f"llamacpp/{tmp_path / 'nope.gguf'}"))


def test_hf_stop_strings(smol_hf):
    g = smol_hf.generate([FRUITS], SamplingParams(max_tokens=30, stop=["\n"]))[0][0]
    assert g.text and "\n" not in g.text and g.finish_reason == "stop" and g.completion_tokens < 30


def test_embedded_engine_hf_in_bfloat16(smol_hf):
    """`engine: hf` serves an embedded model with transformers; `dtype: bfloat16` rounds its weights, answers
    the same greedy question, and is a different model identity (so cached float32 replies are not reused)."""
    from cowest.models.hf import HFBackend

    b = load_backend(ModelConfig(spec="embedded/smollm2-135m", engine="hf", dtype="bfloat16", batch_size=2))
    try:
        import torch

        assert isinstance(b, HFBackend) and next(b.model.parameters()).dtype == torch.bfloat16
        assert b.identity == smol_hf.identity + "+bf16"
        p = SamplingParams(max_tokens=10, logprobs=True)
        cap = b.generate([CAPITAL, WHY], p)[0][0]
        assert "Paris" in cap.text and cap.finish_reason == "stop"
        ref = smol_hf.generate([CAPITAL], p)[0][0]
        assert cap.token_logprobs[0] == pytest.approx(ref.token_logprobs[0], abs=0.2)
    finally:
        b.close()
