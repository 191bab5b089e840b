"""Strategy wiring on mock backends (pure logic), plus one real run with the embedded models (slow)."""

import math


import pytest
from engines import needs_llama_cpp

from cowest.core.config import ModelConfig
from cowest.models.mock import MockBackend
from cowest.core.records import Sample, SamplingParams
from cowest.strategies import STRATEGIES, StrategyContext, check_strategy, roles_of
from cowest.strategies.common import confidence
from cowest.core.errors import UnknownNameError

OPTS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}


def mc(i, gold, question=None):
    return Sample(id=f"s{i}", task="medmcqa", family="mc", question=question or f"Question number {i}?",
                  answers=[gold], options=OPTS)


def scripted(fn):
    return MockBackend("scripted", ModelConfig(spec="mock/scripted"), script=lambda msgs: fn(msgs[-1]["content"]))


def ctx(**kw):
    return StrategyContext(weak_params=SamplingParams(max_tokens=8), strong_params=SamplingParams(max_tokens=16), **kw)


def test_collaborate_batches_one_call_per_step_and_passes_the_draft():
    samples = [mc(1, "A"), mc(2, "B"), mc(3, "C")]
    weak = scripted(lambda u: "Draft says " + u.split("number ")[1].split("?")[0] + "\nAnswer: B")
    # The strong model copies the draft's answer, so the draft decides the prediction.
    strong = scripted(lambda u: "Reasoning.\nAnswer: B" if "Draft says" in u else "Answer: D")
    traces = STRATEGIES.get("collaborate")(samples, weak=weak, strong=strong, ctx=ctx(draft_format="cot", seed=3))
    assert len(weak.calls) == 1 and len(weak.calls[0][0]) == 3
    assert len(strong.calls) == 1 and len(strong.calls[0][0]) == 3
    assert weak.calls[0][1].seed == 3 and weak.calls[0][1].max_tokens == 8 and strong.calls[0][1].max_tokens == 16
    t = traces[1]
    assert [s.role for s in t.steps] == ["weak", "strong"] and [s.name for s in t.steps] == ["draft_cot", "refine"]
    assert "Draft says 2" in t.steps[1].messages[-1]["content"]
    assert [tr.prediction for tr in traces] == ["B", "B", "B"]
    assert [tr.scores["accuracy"] for tr in traces] == [0.0, 1.0, 0.0]
    assert t.metadata["draft_format"] == "cot" and t.seed == 3 and t.strategy == "collaborate"


@pytest.mark.parametrize("fmt,marker", [("knowledge", "Do not give the answer"), ("direct", "only one line")])
def test_collaborate_draft_formats(fmt, marker):
    weak = scripted(lambda u: "facts")
    strong = scripted(lambda u: "Answer: A")
    (t,) = STRATEGIES.get("collaborate")([mc(1, "A")], weak=weak, strong=strong, ctx=ctx(draft_format=fmt))
    assert marker in t.steps[0].messages[-1]["content"] and t.steps[0].name == f"draft_{fmt}"


def test_identical_prompts_are_sent_once_under_greedy_only():
    samples = [mc(1, "A", "Same?"), mc(2, "A", "Same?"), mc(3, "B", "Other?")]
    weak = scripted(lambda u: "Answer: A")
    traces = STRATEGIES.get("weak_only")(samples, weak=weak, strong=None, ctx=ctx())
    assert len(weak.calls[0][0]) == 2 and len(traces) == 3 and traces[1].steps[0].output.text == "Answer: A"
    hot = StrategyContext(weak_params=SamplingParams(temperature=0.7))
    STRATEGIES.get("weak_only")(samples, weak=weak, strong=None, ctx=hot)
    assert len(weak.calls[1][0]) == 3


def test_extraction_failures_are_kept_and_scored_wrong():
    strong = scripted(lambda u: "I am not sure." if "number 2" in u else "Answer: A")
    traces = STRATEGIES.get("strong_only")([mc(1, "A"), mc(2, "A")], weak=None, strong=strong, ctx=ctx())
    assert [t.extraction_failed for t in traces] == [False, True]
    assert traces[1].prediction is None and traces[1].scores == {"accuracy": 0.0}
    assert traces[1].final == "I am not sure." and traces[0].steps[0].name == "solo"


def test_super_icl_puts_prediction_and_logprob_confidence_in_the_prompt():
    weak = MockBackend("answer:Answer: C", ModelConfig(spec="mock/x"), logprob=math.log(0.5))
    strong = scripted(lambda u: "Answer: A")
    (t,) = STRATEGIES.get("super_icl")([mc(1, "A")], weak=weak, strong=strong, ctx=ctx())
    assert weak.calls[0][1].logprobs is True
    assert 'predicted "C" (confidence 0.50)' in t.steps[1].messages[-1]["content"]
    assert t.metadata["weak_prediction"] == "C" and t.metadata["weak_confidence"] == pytest.approx(0.5)
    assert t.prediction == "A"  # the strong model overrode the weak prediction


def test_weak_answer_draft_makes_the_weak_model_answer_with_the_draft_it_was_trained_on():
    """collaboration.weak_answer=draft: weak_only and SuperICL's prediction come from the cot draft prompt, not the
    answer prompt (which a model trained on drafts alone never saw)."""
    from cowest.core.config import load_config
    from cowest.tasks import prompts as P

    cot = P.draft_messages(mc(1, "C"), "cot", {})[-1]["content"]
    weak = MockBackend("scripted", ModelConfig(spec="mock/scripted"), logprob=math.log(0.5),
                       script=lambda msgs: "Because gamma.\nAnswer: C" if msgs[-1]["content"] == cot else "Well, it")
    strong = scripted(lambda u: "Answer: A")
    drafted = ctx(weak_answer_format="cot")
    (t,) = STRATEGIES.get("weak_only")([mc(1, "C")], weak=weak, strong=None, ctx=drafted)
    assert t.steps[0].name == "draft_cot" and t.prediction == "C" and t.scores["accuracy"] == 1.0
    (t,) = STRATEGIES.get("weak_only")([mc(1, "C")], weak=weak, strong=None, ctx=ctx())  # the answer prompt
    assert t.steps[0].name == "answer" and t.prediction is None
    (t,) = STRATEGIES.get("super_icl")([mc(1, "C")], weak=weak, strong=strong, ctx=drafted)
    assert weak.calls[-1][1].logprobs is True and t.steps[0].name == "draft_cot"
    assert 'predicted "C" (confidence 0.50)' in t.steps[1].messages[-1]["content"]
    cfg = load_config(None, ["collaboration.weak_answer=draft", "collaboration.draft_format=direct"])
    assert StrategyContext.from_config(cfg).weak_answer_format == "direct"
    assert StrategyContext.from_config(load_config(None, [])).weak_answer_format is None


@pytest.mark.parametrize("overrides, message", [
    (["collaboration.weak_answer=draft", "collaboration.draft_format=knowledge"], r"needs a draft that ends in an answer line"),
    (["collaboration.weak_answer=draft", "sft.answer_rows=direct"], r"sft\.answer_rows=direct trains the answer prompt"),
])
def test_weak_answer_draft_refuses_configs_it_cannot_serve(overrides, message):
    from cowest.core.config import load_config
    from cowest.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_confidence_is_geometric_mean_probability():
    from cowest.core.records import Generation

    assert confidence(Generation(text="x", token_logprobs=[math.log(0.25), math.log(1.0)])) == pytest.approx(0.5)
    assert confidence(Generation(text="x")) is None


def test_self_refine_feeds_its_own_answer_back():
    strong = scripted(lambda u: "Fixed.\nAnswer: B" if "previous attempt" in u else "First.\nAnswer: A")
    (t,) = STRATEGIES.get("self_refine")([mc(1, "B")], weak=None, strong=strong, ctx=ctx())
    assert [s.name for s in t.steps] == ["solo", "self_refine"] and "First.\nAnswer: A" in t.steps[1].messages[-1][
        "content"]
    assert t.prediction == "B" and len(strong.calls) == 2


def test_names_and_roles():
    assert roles_of("weak_only") == ("weak",) and roles_of("collaborate") == ("weak", "strong")
    with pytest.raises(UnknownNameError, match="unknown strategy 'colab'; valid: collaborate, route, self_refine"):
        check_strategy("colab")
    with pytest.raises(UnknownNameError, match="draft format 'essay'"):
        check_strategy("collaborate", "essay")
    with pytest.raises(Exception, match="needs a weak model"):
        STRATEGIES.get("collaborate")([mc(1, "A")], weak=None, strong=scripted(str), ctx=ctx())


@pytest.mark.slow
def test_collaborate_with_embedded_models_via_llamacpp(tmp_path, shared_data):
    needs_llama_cpp()
    from cowest.core.config import TaskConfig
    from cowest.models.base import load_backend
    from cowest.models.embedded import gguf_path
    from cowest.tasks.base import load_samples

    samples = load_samples(TaskConfig(name="medmcqa", data=str(shared_data)), "dev", 2)
    weak = load_backend(ModelConfig(spec=f"llamacpp/{gguf_path('smollm2-135m')}", n_ctx=2048, n_threads=2))
    strong = load_backend(ModelConfig(spec=f"llamacpp/{gguf_path('qwen2.5-coder-0.5b')}", n_ctx=2048, n_threads=2))
    try:
        c = StrategyContext(weak_params=SamplingParams(max_tokens=48), strong_params=SamplingParams(max_tokens=48))
        traces = STRATEGIES.get("collaborate")(samples, weak=weak, strong=strong, ctx=c)
    finally:
        weak.close()
        strong.close()
    assert [t.sample_id for t in traces] == [s.id for s in samples]
    for t in traces:
        draft, final = t.steps[0].output, t.steps[1].output
        assert draft.text.strip() and final.text.strip() and draft.completion_tokens > 0
        assert draft.text.strip()[:40] in t.steps[1].messages[-1]["content"]  # the real draft reached the strong
        assert t.extraction_failed == (t.prediction is None) and set(t.scores) == {"accuracy"}


def test_weak_draft_scores_the_facts_draft_and_refuses_one_naming_several_numbers():
    def fact(name, gold):
        return Sample(id=name, task="demo", family="qa", question=f"How much does the {name} weigh, in kg?",
                      answers=[gold], answer_format="number")

    drafts = {"lamp": "The lamp weighs 15 kg.", "tent": "The tent weighs 2 kg. It costs 40 dollars.",
              "kettle": "The kettle weighs 7 kg."}
    weak = scripted(lambda u: next(v for k, v in drafts.items() if k in u))
    traces = STRATEGIES.get("weak_draft")([fact("lamp", "15"), fact("tent", "2"), fact("kettle", "8")], weak=weak, strong=None,
                                          ctx=ctx(draft_format="knowledge", prompts={"system_weak": "Catalogue."}))
    assert [t.steps[0].name for t in traces] == ["draft_knowledge"] * 3
    assert traces[0].steps[0].messages[0] == {"role": "system", "content": "Catalogue."}
    assert [t.scores["exact_match"] for t in traces] == [1.0, 0.0, 0.0]
    assert traces[1].extraction_failed and not traces[2].extraction_failed
    assert roles_of("weak_draft") == ("weak",)
