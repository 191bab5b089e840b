"""Continuous batching in the hf engine (cowest.models.hf_refill) on the embedded SmolLM2 in float32.

Run under the shared CPU lock: `flock /tmp/cowest-cpu.lock pytest tests/test_hf_refill.py`.
"""

from __future__ import annotations

import pytest

from cowest.core.config import ModelConfig
from cowest.models.base import load_backend
from cowest.models.embedded import gguf_path
from cowest.core.records import SamplingParams

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France? Answer in one word.", "List three red fruits.",
             "Why is the sky blue? One sentence.", "Count from one to ten in words.", "Say yes.",
             "Write two sentences about a cat.", "What is 2 + 3? Answer with the number only."]
PROMPTS = [[{"role": "user", "content": q}] for q in QUESTIONS]


def smol(**kw):
    pytest.importorskip("torch")
    return load_backend(ModelConfig(spec=f"hf/{gguf_path('smollm2-135m')}", **kw))


@pytest.fixture(scope="module")
def continuous():
    b = smol(batch_size=3)  # batching: continuous is the default
    yield b
    b.close()


@pytest.fixture(scope="module")
def one_at_a_time():
    b = smol(batch_size=1, batching="static")
    yield b
    b.close()


def test_greedy_matches_one_at_a_time_generate(continuous, one_at_a_time):
    """7 prompts through 3 slots: rows end at different steps, waiting prompts join mid-batch, and every reply is
    token for token what `generate` gives for the prompt alone."""
    assert continuous.refill is not None and one_at_a_time.refill is None
    p = SamplingParams(max_tokens=40, logprobs=True)
    before, prefilled = continuous.decode_stats.steps, continuous.decode_stats.prompt_tokens
    got = [r[0] for r in continuous.generate(PROMPTS, p)]
    ref = [one_at_a_time.generate([m], p)[0][0] for m in PROMPTS]
    assert [g.text for g in got] == [r.text for r in ref]
    assert [g.completion_tokens for g in got] == [r.completion_tokens for r in ref]
    assert [g.finish_reason for g in got] == [r.finish_reason for r in ref]
    assert {g.finish_reason for g in got} == {"stop", "length"}  # both ways of ending are exercised
    assert len({g.completion_tokens for g in got}) > 3  # replies of different lengths: rows left at different steps
    for g, r in zip(got, ref):
        assert g.prompt_tokens == r.prompt_tokens
        assert g.token_logprobs == pytest.approx(r.token_logprobs, abs=1e-3)
    # fewer steps than running the prompts in static batches of 3 (each as long as its longest reply)
    lengths = [r.completion_tokens + (r.finish_reason == "stop") for r in ref]
    static_steps = sum(max(lengths[i:i + 3]) for i in range(0, len(lengths), 3))
    assert continuous.decode_stats.steps - before < static_steps
    # the chat template's system turn, shared by the prompts prefilled together, was computed once
    assert continuous.decode_stats.prompt_tokens - prefilled < sum(r.prompt_tokens for r in ref)


def test_shared_runs_keep_the_longest_useful_prefix():
    from cowest.models.hf_refill import shared_runs

    system, q1, q2 = list(range(20)), [100] * 30, [200] * 30
    refine = [system + q1 + [1, 2, 3], system + q1 + [4, 5], system + q1 + [6], system + q2 + [1], system + q2 + [7]]
    # the refinements of one question share the question block, not only the system turn
    assert shared_runs(refine, 16) == [(0, 3, 50), (3, 5, 50)]
    assert shared_runs([system + q1 + [1], system + q2 + [1]], 16) == [(0, 2, 20)]
    assert shared_runs([[5, 1, 2], [6, 1, 2]], 16) == [(0, 1, 1), (1, 2, 1)]  # nothing shared: one token each
    assert shared_runs([q1 + [1], q1], 16) == [(0, 2, 29)]  # every prompt keeps a token after the prefix


def test_stop_strings_and_max_tokens(continuous, one_at_a_time):
    p = SamplingParams(max_tokens=30, stop=["\n"])
    got = continuous.generate(PROMPTS[1:4], p)
    ref = [one_at_a_time.generate([m], p)[0][0] for m in PROMPTS[1:4]]
    assert [g[0].text for g in got] == [r.text for r in ref]
    assert [g[0].completion_tokens for g in got] == [r.completion_tokens for r in ref]
    assert all("\n" not in g[0].text for g in got)
    short = continuous.generate([PROMPTS[5]], SamplingParams(max_tokens=3))[0][0]
    assert short.completion_tokens == 3 and short.finish_reason == "length"


def test_sampling_is_seeded_per_request_not_per_batch(continuous):
    p = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, n=3, seed=7)
    a = continuous.generate([PROMPTS[2], PROMPTS[0]], p)
    b = continuous.generate([PROMPTS[2], PROMPTS[0]], p)
    assert [[g.text for g in r] for r in a] == [[g.text for g in r] for r in b]  # same request, same samples
    assert len({g.text for g in a[0]}) > 1  # distinct seeds give distinct samples
    # a prompt's samples do not depend on the other prompts of the call, and sample 1 of seed 7 is sample 0 of 8
    alone = continuous.generate([PROMPTS[2]], p)[0]
    assert [g.text for g in alone] == [g.text for g in a[0]]
    assert continuous.generate([PROMPTS[2]], p.model_copy(update={"n": 1, "seed": 8}))[0][0].text == a[0][1].text
    greedy = continuous.generate([PROMPTS[0]], SamplingParams(max_tokens=6, n=3))[0]
    assert len(greedy) == 3 and len({g.text for g in greedy}) == 1


def test_samples_of_a_prompt_share_one_prefill_and_waste_less(continuous):
    """The K drafts of a question prefill their prompt once; and continuous batching computes fewer row-steps per
    kept token than static batches."""
    static = smol(batch_size=3, batching="static")
    try:
        p = SamplingParams(max_tokens=24, temperature=1.0, n=3, seed=1)
        for b in (continuous, static):
            b.decode_stats = type(b.decode_stats)()
            b.generate(PROMPTS[:2], p)
        prompt_len = max(len(continuous.tok(continuous._render(m), add_special_tokens=False)["input_ids"]) for m in PROMPTS[:2])
        assert continuous.decode_stats.prompt_tokens <= 2 * prompt_len  # two prompts, prefilled once each
        assert static.decode_stats.prompt_tokens == 3 * 2 * prompt_len  # every draw prefills both again
        greedy = SamplingParams(max_tokens=40)
        for b in (continuous, static):
            b.decode_stats = type(b.decode_stats)()
            b.generate(PROMPTS, greedy)
        c, s = continuous.decode_stats, static.decode_stats
        assert c.useful == s.useful  # the same replies ...
        assert c.computed < s.computed  # ... for fewer row-steps
        assert c.as_dict()["useful_share"] > s.as_dict()["useful_share"]
    finally:
        static.close()


def test_settings_the_loop_does_not_apply_fall_back_to_static(continuous):
    from cowest.models.hf_refill import supports_refill

    gc = continuous.model.generation_config
    assert supports_refill(continuous.model) is None
    gc.repetition_penalty = 1.3
    try:
        assert supports_refill(continuous.model) == "its generation_config sets repetition_penalty"
    finally:
        gc.repetition_penalty = 1.0


def test_run_record_shows_batching_and_waste(continuous, one_at_a_time):
    """engines.json (cowest.models.calibrate.engine_record) says how the hf engine batched and what it wasted."""
    from cowest.models.calibrate import engine_record

    continuous.generate(PROMPTS[:2], SamplingParams(max_tokens=8))
    rec = engine_record(continuous)
    assert rec["batching"] == "continuous" and rec["identity"] == continuous.identity
    assert 0 < rec["decode"]["useful"] <= rec["decode"]["computed"]
    assert 0 < rec["decode"]["useful_share"] <= 1
    assert engine_record(one_at_a_time)["batching"] == "static"
