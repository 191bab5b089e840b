"""Answer extraction: letters, labels and short answers, and None (never a guess) when the text is ambiguous."""

from __future__ import annotations

import pytest

from cowest.core.records import Sample
from cowest.scoring.extract import answer_segment, extract_answer, is_bare_answer

MC = Sample(id="1", task="t", family="mc", question="q", answers=["B"],
            options={"A": "Vimentin", "B": "Keratin", "C": "Desmin", "D": "Tubulin"})
ETHICS = Sample(id="1", task="t", family="cls", question="q", answers=["wrong"], labels=["not wrong", "wrong"])
YNM = Sample(id="1", task="t", family="cls", question="q", answers=["yes"], labels=["yes", "no", "maybe"])
SAFETY = Sample(id="1", task="t", family="cls", question="q", answers=["__casual__"],
                labels=["__casual__", "__possibly_needs_caution__", "__probably_needs_caution__", "__needs_caution__",
                        "__needs_intervention__"])
QA = Sample(id="1", task="t", family="qa", question="q", answers=["4"])


@pytest.mark.parametrize("text,expected", [
    ("B", "B"),
    ("(C)", "C"),
    ("D)", "D"),
    ("Answer: B", "B"),
    ("The answer is B.", "B"),
    ("**Answer:** (D) Tubulin", "D"),
    ("Answer: A. Vimentin", "A"),
    ("Answer: Option C", "C"),
    ("So the correct option is (C).", "C"),
    ("Answer: D is correct", "D"),
    ("Answer: <C>", "C"),                                    # the prompt's placeholder brackets copied
    ("Answer:\n\nB", "B"),
    ("Let's check: A is wrong, B too.\nAnswer: C", "C"),     # the last marker decides, not letters in reasoning
    ("Answer: A\nOn reflection, the final answer: D", "D"),  # last marker wins
    ("Answer: Tubulin", "D"),                                # the option text instead of the letter
    ("The answer is keratin.", "B"),
    ("Answer: A patient with this finding", None),           # the article A is not option A
    ("Final answer: B or C", None),                          # two letters: no guess
    ("Answer: (A) or (B)", None),
    ("Answer: E", None),                                     # not an option
    ("I am not sure.", None),
    ("", None),
])
def test_option_letters(text: str, expected: str | None) -> None:
    assert extract_answer(text, MC) == expected


@pytest.mark.parametrize("sample,text,expected", [
    (ETHICS, "wrong", "wrong"),
    (ETHICS, "not wrong", "not wrong"),                       # the longer label shadows the one it contains
    (ETHICS, "Answer: Not wrong, although it is a bit wrong to ...", "not wrong"),  # first label after the marker
    (ETHICS, "Reasoning...\nThe action is wrong.", "wrong"),
    (ETHICS, "It is not wrong, yet it is wrong", None),      # unmarked line naming both: no guess
    (ETHICS, "Answer: yes", None),
    (YNM, "Answer: Yes.", "yes"),
    (YNM, "The results are mixed.\nFinal answer: maybe", "maybe"),
    (YNM, "**Answer**: no", "no"),
    (YNM, "Answer: yes\nWait, final answer: no", "no"),
    (YNM, "There is no clear evidence and maybe yes", None),
    (SAFETY, "__needs_caution__", "__needs_caution__"),
    (SAFETY, "Label: possibly needs caution", "__possibly_needs_caution__"),
    (SAFETY, "Answer: needs intervention", "__needs_intervention__"),
    (SAFETY, "casual", "__casual__"),
])
def test_class_labels(sample: Sample, text: str, expected: str | None) -> None:
    assert extract_answer(text, sample) == expected


def test_short_description_is_a_synonym_and_long_one_is_not() -> None:
    s = Sample(id="1", task="t", family="cls", question="q", answers=["pos"], labels=["pos", "neg"],
               label_descriptions={"pos": "positive", "neg": "the text expresses a negative sentiment overall"})
    assert extract_answer("Answer: positive", s) == "pos"
    assert extract_answer("Answer: the text expresses a negative sentiment overall", s) is None


@pytest.mark.parametrize("text,expected", [
    ("Answer: 4 hours.", "4 hours"),
    ("So the answer is 4.\nFinal answer: 5 hours", "5 hours"),  # last marker wins
    ("The answer is: 1,200,000.", "1,200,000"),
    ('Answer: "Paris"', "Paris"),
    ("Answer: <Paris>", "Paris"),
    ("Answer: **Kathy Hochul**", "Kathy Hochul"),
    ("Final answer:\nMay", "May"),
    ("Some reasoning.\n\nJune 12, 2009", "June 12, 2009"),       # no marker: a short last line
    ("China spans five geographical time zones, so the difference between its east and west would be four hours.",
     None),                                                      # no marker, long last line: reasoning, not an answer
    ("Answer:", None),
    ("", None),
])
def test_short_answers(text: str, expected: str | None) -> None:
    assert extract_answer(text, QA) == expected


def test_answer_segment_reports_the_marker() -> None:
    assert answer_segment("x\nAnswer: B") == ("B", True)
    assert answer_segment("x\nB\n\n") == ("B", False)
    assert answer_segment("the answer depends on it\nB") == ("B", False)  # "answer" without ':'/'is' is no marker


@pytest.mark.parametrize("text,sample,expected", [
    ("Step 1: count.\n3. The mascot is not named after a wild", QA, None),  # cut mid-reasoning: no guess
    ("Answer: The Roman Emp", QA, None),                                  # the answer itself may be cut
    ("Answer: 4 hours.\nTo check: 2 + 2 is", QA, "4 hours"),              # a finished marked line counts
    ("Hmm.\nB", MC, None),
    ("Answer: B\nBecause keratin is", MC, "B"),
])
def test_a_truncated_reply_gives_only_a_finished_marked_answer(text: str, sample: Sample, expected: str | None) -> None:
    assert extract_answer(text, sample, truncated=True) == expected
    assert extract_answer(text, sample) is not None  # the same text, not cut, would have given an answer


def test_metrics_re_read_answers_from_trace_texts(tmp_path) -> None:
    """A trace file written under older rules (here: a guessed answer in a cut-off reply) is scored by the current
    rules when metrics are computed."""
    from cowest.core.config import ExperimentConfig
    from cowest.pipeline.evaluate import System
    from cowest.core.layout import EvalDir
    from cowest.core.records import Generation, Step, Trace, append_jsonl
    from cowest.pipeline.summary import summarize

    cfg = ExperimentConfig.model_validate({"task": {"name": "demo"}, "run_dir": str(tmp_path)})
    cut = Generation(text="Reasoning about it.\n4", finish_reason="length")
    trace = Trace(sample_id=QA.id, strategy="strong_only", steps=[Step(role="strong", name="solo", messages=[],
                                                                        output=cut)],
                  prediction="4", scores={"exact_match": 1.0, "f1": 1.0})  # as an old run scored it
    path = EvalDir(tmp_path).trace("strong", 0)
    path.parent.mkdir(parents=True)
    append_jsonl(path, trace)
    m = summarize(cfg, [QA], [System("strong", "strong_only")], tmp_path)
    assert m.value("strong", "exact_match").value == 0.0
    assert m.systems["strong"].extraction_failures.total == 1


def _closed(fmt: str, gold: str, choices: list[str] | None = None) -> Sample:
    return Sample(id="c", task="demo", family="qa", question="q", answers=[gold], answer_format=fmt,
                  choices=choices)


@pytest.mark.parametrize("text,expected", [
    ("Answer: 990 dollars", "990"),
    ("The total is $1,200.\nAnswer: $1,200.", "1200"),
    ("Answer: 13 years", "13"),
    ("12 + 7 = 19.\nThey weigh 19 kg together.", "19"),  # unmarked: the last line, inside a sentence
    ("Answer: **2019**", "2019"),
    ("Answer: 19 kg (12 + 7)", None),  # several numbers: no single answer
    ("Answer: nineteen", None),
    ("12 + 7 = 19", None),  # unmarked last line with three numbers
])
def test_number_answers_inside_a_sentence(text, expected):
    assert extract_answer(text, _closed("number", "19")) == expected


@pytest.mark.parametrize("text,expected", [
    ("The Pyxora speaker weighs 9 kg, the Malvora compass 4 kg.\nAnswer: Pyxora speaker", "Pyxora"),
    ("So the Pyxora speaker is the heaviest.", "Pyxora"),
    ("Answer: the pyxora", "Pyxora"),
    ("Answer: The Pyxora speaker is heavier than the Malvora compass", None),  # names two candidates
    ("Answer: the speaker", "the speaker"),  # names no candidate: read as it stands, a wrong answer
    ("Answer: Pyxoras", "Pyxoras"),  # not the name as a word
    ("Answer: San Francisco.", "San Francisco"),
    ("It is the heaviest of them.", None),  # unmarked and naming none: no answer
])
def test_choice_answers_name_exactly_one_candidate(text, expected):
    assert extract_answer(text, _closed("choice", "Pyxora", ["Pyxora", "Malvora", "Kelmari"])) == expected


def test_closed_answers_follow_the_truncation_rule():
    s = _closed("number", "19")
    assert extract_answer("Answer: 19\nBecause 12 + 7", s, truncated=True) == "19"  # a finished marked line
    assert extract_answer("12 + 7 = 19, so the answer is 1", s, truncated=True) is None  # cut mid-answer


@pytest.mark.parametrize("text, bare", [
    ("Answer: reasonable", True), ("**Answer:** C", True), ("  \nFinal answer: 990", True),
    ("It is unfair.\nAnswer: unreasonable", False), ("The Kelmari heater weighs 11 kg.", False), ("", False),
])
def test_a_bare_answer_is_a_marker_with_no_reasoning_before_it(text: str, bare: bool) -> None:
    assert is_bare_answer(text) is bare
