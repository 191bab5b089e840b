"""Prompt templates of the three task families, and the builders every strategy and trainer calls.

Templates are named `str.format` strings (the constants below); `cfg.collaboration.prompts` overrides any of them by name,
either for every family (`refine`) or for one (`refine.mc`). Every final answer is asked for as a last line
`Answer: <x>`, which `cowest.scoring.extract.extract_answer` parses. Prompts are kept short: the weak model is a
135M model with a 2k context.

Placeholders: `{question}` (the question block: question plus options or labels), `{answer_kind}` (what goes after
`Answer:` for the family), `{draft}`, `{draft_kind}`, `{prediction}`, `{confidence}`.
"""

from __future__ import annotations

from typing import Mapping

from cowest.core.errors import ConfigError, UnknownNameError
from cowest.core.records import Message, Sample

DRAFT_FORMATS = ("cot", "knowledge", "direct")

# Question blocks, one per family.
QUESTION_QA = "Question: {text}"
QUESTION_MC = "Question: {text}\n\nOptions:\n{options}"
QUESTION_CLS = "{text}\n\nLabels:\n{labels}"

# What goes after "Answer:", one per family.
ANSWER_KIND_QA = "a short answer, a few words"
ANSWER_KIND_MC = "the option letter"
ANSWER_KIND_CLS = "one label: {label_list}"

SYSTEM = ""
"""System message; empty = none (the model's chat template then applies its own default)."""
SYSTEM_WEAK = ""
"""The weak model's system message (its draft and answer prompts); empty = `system`. A short one here keeps the
chat template's default out of every SFT row (SmolLM2's adds ~15 tokens to a ~60-token row)."""

SOLO = (
    "{question}\n\nThink step by step in one to three short sentences, then give the final answer on the last line as "
    "\"Answer: <{answer_kind}>\"."
)
DRAFT_COT = SOLO
DRAFT_KNOWLEDGE = (
    "{question}\n\nWrite the background knowledge (facts, definitions, rules) needed to answer this. "
    "Do not give the answer. Be brief."
)
DRAFT_DIRECT = "{question}\n\nReply with only one line: \"Answer: <{answer_kind}>\"."
ANSWER = DRAFT_DIRECT
REFINE = (
    "{question}\n\nA smaller assistant wrote this {draft_kind}; it may contain mistakes:\n"
    "\"\"\"\n{draft}\n\"\"\"\n\n"
    "Use it where it helps. Think step by step in one to three short sentences, then give the final answer on the last "
    "line as \"Answer: <{answer_kind}>\"."
)
SUPER_ICL = (
    "{question}\n\nA smaller fine-tuned model predicted \"{prediction}\" (confidence {confidence}). "
    "It may be wrong; override it if needed. Think step by step in one to three short sentences, then give the final "
    "answer on the last line as \"Answer: <{answer_kind}>\"."
)
SELF_REFINE = (
    "{question}\n\nYour previous attempt:\n\"\"\"\n{draft}\n\"\"\"\n\n"
    "Check it for mistakes and correct them. Then give the final answer on the last line as "
    "\"Answer: <{answer_kind}>\"."
)

FRAME = ("system", "system_weak", "question_qa", "question_mc", "question_cls", "answer_kind_qa", "answer_kind_mc", "answer_kind_cls")
"""The templates every prompt is framed with, whatever it asks."""


def overrides_of(overrides: Overrides, names: tuple[str, ...] | set[str]) -> dict[str, str]:
    """The overrides of the named templates only (`refine` and its per-family forms like `refine.mc`): what a stage
    that builds only those prompts depends on."""
    return {k: v for k, v in (overrides or {}).items() if k.split(".")[0] in names}


DRAFT_KINDS = {"cot": "reasoning", "knowledge": "background knowledge", "direct": "answer"}

TEMPLATES: dict[str, str] = {
    "system": SYSTEM,
    "system_weak": SYSTEM_WEAK,
    "question_qa": QUESTION_QA,
    "question_mc": QUESTION_MC,
    "question_cls": QUESTION_CLS,
    "answer_kind_qa": ANSWER_KIND_QA,
    "answer_kind_mc": ANSWER_KIND_MC,
    "answer_kind_cls": ANSWER_KIND_CLS,
    "solo": SOLO,
    "draft_cot": DRAFT_COT,
    "draft_knowledge": DRAFT_KNOWLEDGE,
    "draft_direct": DRAFT_DIRECT,
    "answer": ANSWER,
    "refine": REFINE,
    "super_icl": SUPER_ICL,
    "self_refine": SELF_REFINE,
}
"""Every overridable template by name."""

Overrides = Mapping[str, str] | None


PLACEHOLDERS = ("question", "answer_kind", "draft", "draft_kind", "prediction", "confidence", "text", "options",
                "labels", "label_list")
"""Every name a template may hold in braces; each builder fills the ones its template uses."""


def check_overrides(overrides: Overrides) -> None:
    """Fail on an override that names no template (`name` or `name.family`), listing the valid names, or that holds
    a placeholder other than a bare name of PLACEHOLDERS: `str.format` would otherwise reach into the filled objects
    (`{question.__class__}`, `{draft[0]}`)."""
    import string

    for key, text in (overrides or {}).items():
        name, _, family = key.partition(".")
        if name not in TEMPLATES:
            raise UnknownNameError("prompt template (collaboration.prompts)", key, list(TEMPLATES))
        if family and family not in ("qa", "mc", "cls"):
            raise ConfigError(f"collaboration.prompts: '{key}': family must be qa, mc or cls")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as e:
            raise ConfigError(f"collaboration.prompts.{key}: not a template ({e}); write a literal brace as {{{{ or }}}}") from None
        for f in fields:
            if f not in PLACEHOLDERS:
                raise ConfigError(f"collaboration.prompts.{key}: placeholder {{{f[:40]}}} is not one of "
                                  f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} (no attributes, indexes or "
                                  "positional fields)")


def check_draft_format(fmt: str) -> None:
    if fmt not in DRAFT_FORMATS:
        raise UnknownNameError("draft format", fmt, list(DRAFT_FORMATS))


def template(name: str, family: str, overrides: Overrides = None) -> str:
    """The template `name` for `family`: `name.family` override, then `name` override, then the default."""
    ov = overrides or {}
    for key in (f"{name}.{family}", name):
        if key in ov:
            return ov[key]
    return TEMPLATES[name]


def _fill(name: str, family: str, overrides: Overrides, **values: str) -> str:
    tpl = template(name, family, overrides)
    try:
        return tpl.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"collaboration.prompts: template '{name}' cannot be filled ({type(e).__name__}: {e}); "
            f"placeholders available: {', '.join(sorted(values))}"
        ) from None


def question_block(sample: Sample, overrides: Overrides = None) -> str:
    """The question with its options (mc) or labels (cls) rendered from the sample."""
    fam = sample.family
    options = "\n".join(f"{k}. {v}" for k, v in (sample.options or {}).items())
    descs = sample.label_descriptions or {}
    labels = "\n".join(f"- {lab}: {descs[lab]}" if lab in descs else f"- {lab}" for lab in sample.labels or [])
    return _fill(f"question_{fam}", fam, overrides, text=sample.question, options=options, labels=labels)


def answer_kind(sample: Sample, overrides: Overrides = None) -> str:
    label_list = ", ".join(sample.labels or [])
    return _fill(f"answer_kind_{sample.family}", sample.family, overrides, label_list=label_list)


def _messages(name: str, sample: Sample, overrides: Overrides, weak: bool = False, **extra: str) -> list[Message]:
    user = _fill(name, sample.family, overrides, question=question_block(sample, overrides),
                 answer_kind=answer_kind(sample, overrides), **extra)
    system = (weak and template("system_weak", sample.family, overrides)) or template("system", sample.family, overrides)
    msgs: list[Message] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": user})
    return msgs


def solo_messages(sample: Sample, overrides: Overrides = None) -> list[Message]:
    """The strong model alone: chain of thought ending with `Answer: ...`."""
    return _messages("solo", sample, overrides)


def draft_messages(sample: Sample, fmt: str, overrides: Overrides = None) -> list[Message]:
    """The weak model's draft: `cot` (reasoning + answer), `knowledge` (background only) or `direct` (answer only)."""
    check_draft_format(fmt)
    return _messages(f"draft_{fmt}", sample, overrides, weak=True)


def refine_messages(sample: Sample, draft: str, fmt: str, overrides: Overrides = None) -> list[Message]:
    """The strong model reads the question and the weak model's draft and writes the final answer."""
    check_draft_format(fmt)
    return _messages("refine", sample, overrides, draft=draft.strip(), draft_kind=DRAFT_KINDS[fmt])


def answer_messages(sample: Sample, overrides: Overrides = None) -> list[Message]:
    """The weak model alone: a direct answer."""
    return _messages("answer", sample, overrides, weak=True)


def super_icl_messages(sample: Sample, weak_prediction: str | None, confidence: float | None,
                       overrides: Overrides = None) -> list[Message]:
    """SuperICL: the weak model's prediction and confidence go into the strong model's prompt."""
    pred = weak_prediction if weak_prediction is not None else "(no answer)"
    conf = f"{confidence:.2f}" if confidence is not None else "unknown"
    return _messages("super_icl", sample, overrides, prediction=pred, confidence=conf)


def self_refine_messages(sample: Sample, draft: str, overrides: Overrides = None) -> list[Message]:
    """Self-refine: the strong model reviews and corrects its own first attempt."""
    return _messages("self_refine", sample, overrides, draft=draft.strip())


def draft_target(sample: Sample, fmt: str) -> str | None:
    """The SFT target for a draft format from gold data, or None when the sample cannot supply one.

    cot: rationale + `Answer: X` (needs a rationale); direct: `Answer: X`; knowledge: the sample's knowledge, else
    the rationale alone.
    """
    check_draft_format(fmt)
    answer = f"Answer: {sample.gold}"
    rationale = (sample.rationale or "").strip() or None
    if fmt == "direct":
        return answer
    if fmt == "knowledge":
        return (sample.knowledge or "").strip() or rationale
    return f"{rationale}\n{answer}" if rationale else None
