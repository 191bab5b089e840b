"""Prompt builders: every family renders its options/labels, asks for "Answer:", and overrides apply by name."""

import pytest

from cowest.core.errors import ConfigError, UnknownNameError
from cowest.core.records import Sample
from cowest.scoring.extract import extract_answer
from cowest.tasks import prompts as P

MC = Sample(id="m1", task="medmcqa", family="mc", question="Which vessel?", answers=["B"],
            options={"A": "Left coronary", "B": "Right coronary"}, rationale="Inferior leads mean the RCA.")
CLS = Sample(id="c1", task="ethics", family="cls", question="I took the last cookie.", answers=["acceptable"],
             labels=["acceptable", "wrong"], label_descriptions={"wrong": "clearly morally wrong"})
QA = Sample(id="q1", task="ifqa", family="qa", question="If water boiled at 50 C, what would pasta need?",
            answers=["more time"])


def user(msgs):
    assert msgs[-1]["role"] == "user"
    return msgs[-1]["content"]


def test_families_render_options_labels_and_answer_format():
    mc = user(P.solo_messages(MC))
    assert "A. Left coronary" in mc and "B. Right coronary" in mc and '"Answer: <the option letter>"' in mc
    cls = user(P.solo_messages(CLS))
    assert "- wrong: clearly morally wrong" in cls and "- acceptable" in cls and "acceptable, wrong" in cls
    qa = user(P.answer_messages(QA))
    assert qa.startswith("Question: If water boiled") and "Options" not in qa and "Answer:" in qa


def test_draft_formats_differ_and_refine_embeds_draft():
    cot, know, direct = (user(P.draft_messages(MC, f)) for f in ("cot", "knowledge", "direct"))
    assert "step by step" in cot and "Do not give the answer" in know and "only one line" in direct
    ref = user(P.refine_messages(MC, "  The RCA supplies the inferior wall.\nAnswer: B  ", "knowledge"))
    assert "background knowledge" in ref and '"""\nThe RCA supplies the inferior wall.\nAnswer: B\n"""' in ref
    with pytest.raises(UnknownNameError, match="valid: cot, direct, knowledge"):
        P.draft_messages(MC, "essay")


def test_super_icl_and_self_refine():
    s = user(P.super_icl_messages(MC, "A", 0.8712))
    assert 'predicted "A" (confidence 0.87)' in s
    assert "confidence unknown" in user(P.super_icl_messages(MC, None, None)) and "(no answer)" in user(
        P.super_icl_messages(MC, None, None))
    assert "Your previous attempt" in user(P.self_refine_messages(MC, "Answer: A"))


def test_overrides_by_name_and_family_and_system():
    ov = {"solo": "Q: {question}\nEnd with Answer: <{answer_kind}>", "solo.cls": "Judge: {question}",
          "system": "Be terse."}
    mc = P.solo_messages(MC, ov)
    assert mc[0] == {"role": "system", "content": "Be terse."}
    assert user(mc).startswith("Q: Question: Which vessel?")
    assert user(P.solo_messages(CLS, ov)).startswith("Judge: I took the last cookie.")
    P.check_overrides(ov)
    with pytest.raises(UnknownNameError, match="prompt template.*valid:.*refine"):
        P.check_overrides({"refin": "x"})
    with pytest.raises(ConfigError, match="family must be"):
        P.check_overrides({"refine.xx": "x"})
    with pytest.raises(ConfigError, match="'solo' cannot be filled.*placeholders available"):
        P.solo_messages(MC, {"solo": "{nope}"})


def test_the_weak_system_message_goes_to_the_weak_models_prompts_only():
    ov = {"system_weak": "Catalogue.", "system": "Be terse."}
    for msgs in (P.draft_messages(MC, "knowledge", ov), P.answer_messages(MC, ov)):
        assert msgs[0] == {"role": "system", "content": "Catalogue."}
    for msgs in (P.solo_messages(MC, ov), P.refine_messages(MC, "d", "cot", ov)):
        assert msgs[0] == {"role": "system", "content": "Be terse."}
    assert P.answer_messages(MC, {"system": "Be terse."})[0]["content"] == "Be terse."  # unset: `system` for both
    assert P.answer_messages(MC, {"system_weak": "Catalogue."})[0]["content"] == "Catalogue."
    assert P.solo_messages(MC, {"system_weak": "Catalogue."})[0]["role"] == "user"  # the model's own default


def test_draft_target_from_gold_and_parseable():
    assert P.draft_target(MC, "cot") == "Inferior leads mean the RCA.\nAnswer: B"
    assert P.draft_target(MC, "direct") == "Answer: B"
    assert P.draft_target(MC, "knowledge") == "Inferior leads mean the RCA."
    assert P.draft_target(QA, "cot") is None and P.draft_target(QA, "knowledge") is None
    assert P.draft_target(MC.model_copy(update={"knowledge": "Lead II sees the inferior wall."}), "knowledge") == \
        "Lead II sees the inferior wall."
    # the targets teach the format the extractor reads
    assert extract_answer(P.draft_target(MC, "cot"), MC) == "B"
    assert extract_answer(P.draft_target(CLS, "direct"), CLS) == "acceptable"
