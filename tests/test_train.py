"""Training recipes with real TRL steps on SmolLM2-135M: SFT, DPO on top of it, the SFT-positive control, bad pairs.

Tiny on purpose (a few steps, batch 2, max_length 256, LoRA r 8); learning rates are raised so a couple of steps
move the logits measurably.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cowest.core.config import AlignConfig, DPOLoss, ExperimentConfig, validate_config
from cowest.core.errors import ConfigError, CowestError, DataError
from cowest.core.records import PreferencePair, Sample, write_jsonl
from cowest.tasks import demo
from cowest.tasks.prompts import draft_messages, draft_target
from cowest.pipeline.train.dpo import load_pairs, loss_kwargs, positive_rows, run_dpo, run_sft_positive
from cowest.pipeline.train.common import device_kwargs
from cowest.pipeline.train.sft import sft_rows, sft_target

TINY = {"max_steps": 2, "batch_size": 2, "max_length": 256, "lora_r": 8, "lora_alpha": 16}


def _cfg(**align) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"sft": {**TINY, "lr": 1e-3}, "align": {**TINY, "lr": 5e-4, **align}})


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
    assert row["prompt"] == draft_messages(s, "cot", cfg.collaboration.prompts)
    assert row["completion"] == [{"role": "assistant", "content": f"{s.rationale}\nAnswer: {s.gold}"}]


def test_knowledge_drafts_with_answer_rows_train_both_prompts():
    cfg = ExperimentConfig.model_validate({
        "sft": {"answer_rows": "auto"}, "collaboration": {
            "draft_format": "knowledge", "prompts": {"answer": "{question}", "draft_knowledge": "{question}\nThe facts:"}}})
    s = demo.build("train", cfg.task)[8 * demo.N_PRODUCTS]  # the first reasoning question, after the plain facts
    draft, alone = sft_rows([s], cfg)
    assert draft["prompt"] == draft_messages(s, "knowledge", cfg.collaboration.prompts)
    assert draft["completion"][0]["content"] == s.knowledge  # the facts alone: no step, no answer
    assert "Answer:" not in s.knowledge and s.knowledge != s.rationale
    assert alone["prompt"][-1]["content"] == f"Question: {s.question}"
    assert alone["completion"][0]["content"] == f"{s.rationale}\nAnswer: {s.gold}"
    direct = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"answer_rows": "direct"})})
    assert sft_rows([s], direct)[1]["completion"][0]["content"] == f"Answer: {s.gold}"


def test_answer_rows_refuse_one_prompt_with_two_targets():
    cfg = ExperimentConfig.model_validate({
        "sft": {"answer_rows": "auto"}, "collaboration": {
            "draft_format": "knowledge", "prompts": {"answer": "{question}", "draft_knowledge": "{question}"}}})
    with pytest.raises(ConfigError, match="answer prompt is its 'knowledge' draft prompt"):
        sft_rows(_samples(1), cfg)


def test_sft_target_fallbacks():
    bare = Sample(id="b", task="t", family="qa", question="Q?", answers=["x"])
    assert sft_target(bare, "cot", "auto") == "Answer: x"
    assert sft_target(_samples(1)[0], "cot", "answer").startswith("Answer: ")
    with pytest.raises(DataError, match="sample 'b' has no rationale"):
        sft_target(bare, "cot", "rationale")


def test_without_rationale_drop_leaves_out_bare_rows():
    bare = Sample(id="b", task="t", family="qa", question="Q?", answers=["x"])
    reasoned = _samples(1)[0]
    keep = _cfg()
    assert [r["completion"][0]["content"] for r in sft_rows([bare, reasoned], keep)][0] == "Answer: x"
    for target in ("auto", "rationale"):  # target rationale refuses the bare sample unless it is dropped
        drop = ExperimentConfig.model_validate({"sft": {"without_rationale": "drop", "target": target}})
        (row,) = sft_rows([bare, reasoned], drop)
        assert row["completion"][0]["content"] == f"{reasoned.rationale}\nAnswer: {reasoned.gold}"
    with pytest.raises(DataError, match="no training row has a rationale.*sft.without_rationale=answer"):
        sft_rows([bare], drop)
    # Answer rows (the weak model answering alone) are not drafts: every sample keeps its own.
    answers = ExperimentConfig.model_validate({"sft": {"without_rationale": "drop", "answer_rows": "direct"},
                                               "collaboration": {"prompts": {"answer": "{question}"}}})
    rows = sft_rows([bare, reasoned], answers)
    assert [r["completion"][0]["content"] for r in rows] == [
        f"{reasoned.rationale}\nAnswer: {reasoned.gold}", "Answer: x", f"Answer: {reasoned.gold}"]
    with pytest.raises(ValueError, match="without_rationale=drop has no effect with sft.target=answer"):
        ExperimentConfig.model_validate({"sft": {"without_rationale": "drop", "target": "answer"}})


def test_balance_evens_out_the_gold_labels_of_the_draft_rows():
    """ETHICS-justice's bootstrapped rows were 178 `unreasonable` to 23 `reasonable`; sft.balance evens the draft rows
    out (after rows without a rationale are dropped), down by a seeded subsample or up by repeating the rarer label."""
    from collections import Counter

    from cowest.pipeline.stage_inputs import stage_inputs
    from cowest.pipeline.stages import differing_keys

    mk = lambda i, gold, why="Because.": Sample(  # noqa: E731
        id=f"e{i}", task="ethics", family="cls", question=f"Claim {i}", answers=[gold],
        labels=["reasonable", "unreasonable"], rationale=why)
    rows = [mk(i, "unreasonable") for i in range(7)] + [mk(7, "reasonable"), mk(8, "reasonable"),
                                                         mk(9, "reasonable", None)]  # no rationale: dropped first
    cfg = lambda how, seed=0: ExperimentConfig.model_validate(  # noqa: E731
        {"sft": {"without_rationale": "drop", "balance": how, "seed": seed}})
    gold = lambda rs: Counter(r["completion"][0]["content"].rsplit(" ", 1)[1] for r in rs)  # noqa: E731
    assert gold(sft_rows(rows, cfg("none"))) == {"unreasonable": 7, "reasonable": 2}
    down = sft_rows(rows, cfg("down"))
    assert gold(down) == {"unreasonable": 2, "reasonable": 2}
    assert [r["prompt"][-1]["content"] for r in down] != [r["prompt"][-1]["content"]
                                                          for r in sft_rows(rows, cfg("down", seed=1))]
    up = sft_rows(rows, cfg("up"))
    assert gold(up) == {"unreasonable": 7, "reasonable": 7}
    assert Counter(r["prompt"][-1]["content"].split("\n")[0] for r in up)["Claim 7"] in (3, 4)  # 7 = 2 x 3 + 1
    with pytest.raises(ConfigError, match="sft.balance=up evens out class labels.*free answers"):
        sft_rows(_samples(2), ExperimentConfig.model_validate({"sft": {"balance": "up"}}))
    old = {k: v for k, v in stage_inputs(cfg("none"), "sft").items() if k != "sft.balance"}  # a record from before
    assert differing_keys(old, stage_inputs(cfg("none"), "sft")) == []
    assert differing_keys(old, stage_inputs(cfg("up"), "sft")) == ["sft.balance"]


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

    from cowest.core.errors import ConfigError
    from cowest.models import calibrate
    from cowest.pipeline.train.common import device_kwargs, train_precision

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


# --- bootstrapped rationales for label-only data (scripted backends) ----------------------------------------------

class ScriptedDrafter:
    """Replies from a per-question list of (text, finish_reason); records what it was asked."""

    has_chat_template = True

    def __init__(self, replies: dict[str, list[tuple[str, str]]]):
        self.replies, self.asked, self.params = replies, [], None

    def generate(self, prompts, params):
        from cowest.core.records import Generation

        self.params = params
        out = []
        for msgs in prompts:
            key = next(k for k in self.replies if k in msgs[-1]["content"])
            self.asked.append(key)
            out.append([Generation(text=t, finish_reason=f) for t, f in self.replies[key]][: params.n])
        return out

    def close(self):
        pass


def _label_only() -> list[Sample]:
    mk = lambda i, gold, rationale=None: Sample(  # noqa: E731
        id=f"e{i}", task="ethics", family="cls", question=f"Claim {i}: I deserve a break because I worked.",
        answers=[gold], labels=["reasonable", "unreasonable"], rationale=rationale)
    return [mk(1, "reasonable"), mk(2, "unreasonable"), mk(3, "reasonable", "Given in the data."),
            mk(4, "reasonable"), mk(5, "unreasonable")]


def test_bootstrapped_rationales_keep_only_reasoning_that_reaches_the_gold_label(tmp_path):
    from cowest.pipeline.rationales import bootstrap_rationales

    replies = {
        "Claim 1": [("Breaks are owed for work done.\nAnswer: unreasonable", "stop"),  # wrong label
                    ("Work earns rest, so the claim holds.\nAnswer: reasonable", "stop")],  # kept
        "Claim 2": [("Answer: reasonable", "stop"), ("It is fine.\nAnswer: reasonable", "stop")],  # never right
        "Claim 4": [("Work earns rest, so the claim holds and\nAnswer: reasonable and", "length"),  # cut
                    ("Answer: reasonable", "stop")],  # right, but no reasoning to learn
        "Claim 5": [("The break does not follow from the work. Answer: unreasonable", "stop")],  # inline marker
    }
    drafter = ScriptedDrafter(replies)
    cfg = _cfg()
    cfg.sft.rationales, cfg.sft.rationale_samples = "weak", 2
    out = bootstrap_rationales(_label_only(), drafter, cfg, tmp_path)
    assert drafter.asked == ["Claim 1", "Claim 2", "Claim 4", "Claim 5"]  # e3 has its own rationale
    assert drafter.params.n == 2 and drafter.params.temperature == cfg.sft.rationale_temperature
    assert [s.rationale for s in out] == ["Work earns rest, so the claim holds.", None, "Given in the data.", None,
                                          "The break does not follow from the work."]
    rows = sft_rows(out, cfg)
    assert rows[0]["completion"][0]["content"] == "Work earns rest, so the claim holds.\nAnswer: reasonable"
    assert rows[1]["completion"][0]["content"] == "Answer: unreasonable"  # sft.target=auto falls back
    stats = json.loads((tmp_path / "rationales_stats.json").read_text())
    assert stats == {"samples": 5, "with_rationale_in_data": 1, "bootstrapped": 2, "rationalized": 0,
                     "without_rationale": 2, "source": "weak", "samples_per_question": 2}
    kept = [json.loads(x) for x in (tmp_path / "rationales.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["e1", "e5"]


@pytest.mark.parametrize("reply, rationale", [
    ("Joe works double shifts. Therefore, the answer is: unreasonable", "Joe works double shifts."),
    ("It is owed.\nSo the final answer is:\nreasonable", "It is owed."),
    ("It is owed. Answer: reasonable", "It is owed."),
    ("He said \"no.\" So the answer is reasonable", "He said \"no.\""),
    ("Because of this:\nAnswer: reasonable", "Because of this:"),
    ("So the final answer is: reasonable", ""),  # no reasoning before the sentence that holds the marker
])
def test_a_marker_inside_a_sentence_takes_that_sentence_out_of_the_rationale(reply, rationale):
    """Cut at the marker, "... Therefore, the answer is: X" left rationales ending in "Therefore, the" (40 of 201 on
    ETHICS), and SFT taught drafts that stop mid-sentence."""
    from cowest.pipeline.rationales import strip_answer

    assert strip_answer(reply) == rationale


def test_rationalize_asks_the_rows_left_again_with_the_gold_answer_as_a_hint(tmp_path):
    """STaR's rationalization: rows whose replies all missed gold get a hinted second try, so the kept rows do not
    follow the model's own label bias; a hinted reply that cites the hint is refused, and SFT trains the unhinted
    prompt."""
    from cowest.pipeline.rationales import bootstrap_rationales
    from cowest.pipeline.stages import differing_keys
    from cowest.pipeline.stage_inputs import stage_inputs

    hint = "worked.\n\n(Hint: the correct answer is"
    replies = {
        f"Claim 2: I deserve a break because I {hint} unreasonable.": [
            ("A break is not owed for ordinary work.\nAnswer: unreasonable", "stop")],
        f"Claim 5: I deserve a break because I {hint} unreasonable.": [
            ("As the hint says, it is not owed.\nAnswer: unreasonable", "stop")],  # cites the hint: refused
        "Claim 1": [("Work earns rest.\nAnswer: reasonable", "stop")],
        "Claim 2": [("It is fine.\nAnswer: reasonable", "stop")],  # the model's favoured label, wrong
        "Claim 4": [("Work earns rest.\nAnswer: reasonable", "stop")],
        "Claim 5": [("It is fine.\nAnswer: reasonable", "stop")],
    }
    drafter = ScriptedDrafter(replies)
    cfg = _cfg()
    cfg.sft.rationales, cfg.sft.rationale_samples, cfg.sft.rationalize = "strong", 1, True
    out = bootstrap_rationales(_label_only(), drafter, cfg, tmp_path)
    assert drafter.asked[:4] == ["Claim 1", "Claim 2", "Claim 4", "Claim 5"]
    assert [a.split(":")[0] for a in drafter.asked[4:]] == ["Claim 2", "Claim 5"]  # only the rows left, hinted
    assert [s.rationale for s in out] == ["Work earns rest.", "A break is not owed for ordinary work.",
                                          "Given in the data.", "Work earns rest.", None]
    assert "Hint" not in out[1].question  # the hint is the asking prompt's, never the training row's
    stats = json.loads((tmp_path / "rationales_stats.json").read_text())
    assert (stats["bootstrapped"], stats["rationalized"], stats["without_rationale"]) == (3, 1, 1)
    kept = [json.loads(x) for x in (tmp_path / "rationales.jsonl").read_text().splitlines()]
    assert [(k["id"], k.get("hinted", False)) for k in kept] == [("e1", False), ("e4", False), ("e2", True)]
    # Off (the default) asks nothing more; switching it on later redoes a finished SFT stage.
    plain = ScriptedDrafter(replies)
    cfg.sft.rationalize = False
    bootstrap_rationales(_label_only(), plain, cfg, tmp_path / "off")
    assert len(plain.asked) == 4
    old = {k: v for k, v in stage_inputs(cfg, "sft").items() if k != "sft.rationalize"}  # a record from before
    cfg.sft.rationalize = True
    assert differing_keys(old, stage_inputs(cfg, "sft")) == ["sft.rationalize"]


def test_rationales_resume_from_the_last_finished_chunk(tmp_path):
    """Bootstrapping asks a chunk at a time through the response cache: killed in its third call, a rerun asks only
    what that call and the ones after it had to ask."""
    from cowest.models.cache import CachedBackend
    from cowest.pipeline.rationales import bootstrap_rationales

    class Killed(ScriptedDrafter):
        identity = "scripted/strong"

        def __init__(self, replies, die_at: int = 0):
            super().__init__(replies)
            self.calls, self.die_at = 0, die_at

        def generate(self, prompts, params):
            self.calls += 1
            if self.calls == self.die_at:
                raise KeyboardInterrupt
            return super().generate(prompts, params)

    replies = {f"Claim {i}": [(f"Reason {i}.\nAnswer: {gold}", "stop")]
               for i, gold in [(1, "reasonable"), (2, "unreasonable"), (4, "reasonable"), (5, "unreasonable")]}
    cfg = _cfg()
    cfg.sft.rationales, cfg.sft.rationale_samples = "strong", 1
    first = Killed(replies, die_at=3)
    with pytest.raises(KeyboardInterrupt):
        bootstrap_rationales(_label_only(), CachedBackend(first, tmp_path / "cache.sqlite"), cfg, tmp_path, chunk=1)
    assert first.asked == ["Claim 1", "Claim 2"]
    again = Killed(replies)
    out = bootstrap_rationales(_label_only(), CachedBackend(again, tmp_path / "cache.sqlite"), cfg, tmp_path, chunk=1)
    assert again.asked == ["Claim 4", "Claim 5"]
    assert [s.rationale for s in out] == ["Reason 1.", "Reason 2.", "Given in the data.", "Reason 4.", "Reason 5."]


def test_rationales_from_the_strong_model_through_its_backend(tmp_path):
    from cowest.core.config import validate_config
    from cowest.pipeline.rationales import with_rationales
    from cowest.pipeline.stage_inputs import stage_inputs

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([["Claim 1", "Resting after work is fair.\nAnswer: reasonable"],
                                 ["", "Answer: reasonable"]]))
    cfg = validate_config({"run_dir": str(tmp_path / "run"), "models": {"strong": {"spec": f"mock/rules:{rules}"}},
                           "sft": {"rationales": "strong"}})
    out = with_rationales(cfg, _label_only(), tmp_path / "run" / "sft", tmp_path / "cache")
    assert out[0].rationale == "Resting after work is fair." and out[1].rationale is None
    assert json.loads((tmp_path / "run" / "sft" / "rationales_stats.json").read_text())["bootstrapped"] == 1
    # The SFT stage then depends on the strong model; with the dataset's rationales it does not.
    assert "models.strong.spec" in stage_inputs(cfg, "sft")
    assert "models.strong.spec" not in stage_inputs(validate_config({}), "sft")
    assert with_rationales(validate_config({}), _label_only(), tmp_path / "none", None) == _label_only()
    assert not (tmp_path / "none").exists()


# --- the DPO loss options (TRL's DPOConfig, no model) ----------------------------------------------------------------

def test_loss_types_are_trls():
    import re
    from typing import get_args

    import trl

    help_text = trl.DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert set(get_args(DPOLoss)) == set(re.findall(r"`'(\w+)'`", help_text))


def test_rpo_alpha_and_label_smoothing_reach_trl():
    import trl

    assert loss_kwargs(_cfg()) == {"loss_type": ["sigmoid"], "loss_weights": [1.0], "label_smoothing": 0.0}
    rpo = loss_kwargs(_cfg(rpo_alpha=0.5))
    assert rpo == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5], "label_smoothing": 0.0}
    robust = loss_kwargs(_cfg(loss_type="robust", label_smoothing=0.1, rpo_alpha=1.0))
    args = trl.DPOConfig(output_dir="unused", **device_kwargs(), **robust)
    assert (args.loss_type, args.loss_weights, args.label_smoothing) == (["robust", "sft"], [1.0, 1.0], 0.1)


@pytest.mark.parametrize("align, message", [
    ({"loss_type": "cdpo"}, r"'align\.loss_type': Input should be 'sigmoid', 'hinge', 'ipo'"),
    ({"label_smoothing": 0.1}, r"label_smoothing=0\.1 has no effect with loss_type=sigmoid; use it with loss_type "
                               r"one of robust, exo_pair, aot, aot_unpaired"),
    ({"loss_type": "robust", "label_smoothing": 0.5}, r"'align\.label_smoothing': Input should be less than 0\.5"),
    ({"loss_type": "exo_pair"}, r"exo_pair needs label_smoothing > 0"),
    ({"rpo_alpha": -1}, r"'align\.rpo_alpha': Input should be greater than or equal to 0"),
])
def test_bad_loss_options_fail_in_one_line(align, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate_config({"align": align}, source="x.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("x.yaml: 'align")


def test_defaults_are_the_papers_plain_sigmoid_dpo():
    a = AlignConfig()
    assert (a.loss_type, a.rpo_alpha, a.label_smoothing) == ("sigmoid", None, 0.0)


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
    from cowest.pipeline.train.sft import run_sft

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
    from cowest.pipeline.train.common import train_precision

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
    from cowest.pipeline.train.common import train_precision

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


@pytest.mark.slow
def test_rpo_alpha_adds_the_nll_of_the_chosen_drafts(dpo_dir, sft_dir, base):
    """Same start, pairs and seed as the plain DPO run; only align.rpo_alpha differs."""
    pairs = sft_dir.parent / "pairs.jsonl"
    out = run_dpo(_cfg(rpo_alpha=1.0), pairs, sft_dir.parent / "rpo", weak_source=base[0],
                  reference_adapter=str(sft_dir))
    loss = lambda d: [json.loads(x)["loss"] for x in (d / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]  # noqa: E731
    plain, rpo = loss(dpo_dir), loss(out)
    assert len(rpo) == 2 and abs(plain[0] - 0.6931) < 1e-3
    # Step 1 (policy == reference): the DPO term is log 2 in both; RPO adds α × the chosen drafts' mean NLL per
    # token, which for drafts the SFT model saw once is well above 0 and below the loss of a random guess.
    nll = rpo[0] - plain[0]
    assert 0.05 < nll < 10
    meta = json.loads((out / "cowest_adapter.json").read_text())
    assert meta["rpo_alpha"] == 1.0 and meta["loss_type"] == "sigmoid" and meta["chosen_tokens_mean"] > 5


@pytest.mark.slow
def test_lm_head_on_labelled_positions_only_same_loss_and_gradients_for_fewer_rows(base, monkeypatch):
    """TRL's fused LM head, on SmolLM2 in bf16 autocast as SFT runs it: with `labelled_positions_only` it projects
    only the positions that carry a label (56 of 4 x 39 here), and the loss and gradients are the same."""
    import torch
    from trl.trainer import utils as trl_utils

    from cowest.models.hf_loading import load_model_and_tokenizer
    from cowest.pipeline.train.common import labelled_positions_only

    model, _ = load_model_and_tokenizer(base[0])  # its own copy: the fused head replaces the model's forward
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    projected: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *rest: projected.append(hidden.shape[0]) or apply(hidden, *rest))
    ids = torch.randint(0, 49000, (4, 40), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :20] = -100  # the prompt: rows 0 and 1 score 20 positions (labels shift by one)
    labels[2, 28:] = -100  # padding: 8
    labels[3, 9:] = -100  # a row without a prompt, padded: 8 (its first token is no label)
    labels[3, :9] = ids[3, :9]

    def loss_and_grad():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.item(), model.model.layers[-1].mlp.down_proj.weight.grad.clone()

    plain = loss_and_grad()
    with labelled_positions_only():
        compact = loss_and_grad()
    assert trl_utils._use_triton(torch.device("cpu")) is False  # put back
    assert projected == [4 * 39, 20 + 20 + 8 + 8]
    assert compact[0] == pytest.approx(plain[0], abs=1e-5)
    assert torch.allclose(compact[1], plain[1], atol=1e-5)



@pytest.mark.slow
def test_report_to_tensorboard_writes_the_training_metrics_beside_the_adapter(dpo_dir, sft_dir, base):
    """Issue 39 item 4: align.report_to passes through to TRL; TensorBoard's event files land in the adapter folder
    (under the run directory) and hold the same losses as train_log.jsonl."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard (the test extra has it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pairs = sft_dir.parent / "pairs.jsonl"
    out = run_dpo(_cfg(report_to="tensorboard"), pairs, sft_dir.parent / "tb", weak_source=base[0],
                  reference_adapter=str(sft_dir))
    events = sorted(out.glob("runs/**/events.out.tfevents.*"))
    assert events, sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    logged = [r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses == pytest.approx(logged, rel=1e-4) and len(losses) == 2
    assert "rewards/margins" in " ".join(acc.Tags()["scalars"])


def test_report_to_a_tracker_that_is_not_installed_is_one_line():
    with pytest.raises(ConfigError, match="report_to=mlflow: its package is not installed; pip install mlflow"):
        device_kwargs("sft", "mlflow")
    with pytest.raises(Exception, match="report_to"):
        validate_config({"sft": {"report_to": "comet"}})
