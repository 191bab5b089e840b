"""Reading the final answer out of a model's text: an option letter, a class label or a short answer.

The rule everywhere: the text after the last answer marker ("Answer:", "Final answer:", "the answer is") decides;
without a marker, the last non-empty line does. When that part names no answer, or more than one, the result is
None (an extraction failure, scored as wrong), never a guess.
"""

from __future__ import annotations

import re

from cowest.core.records import Sample

_MARKER = re.compile(
    r"(?:\b(?:final|correct|right|best)\s+)?\b(?:answer|label|prediction|classification|option|choice)\b"
    r"(?:\s*:|\s+(?:is|would\s+be|will\s+be|should\s+be)\b\s*:?)",
    re.IGNORECASE,
)
_DECOR = re.compile(r"[*_`#]+")  # markdown emphasis and headings around answers
QA_MAX_WORDS = 12


def before_answer(text: str) -> str | None:
    """The text before the last answer marker (a reply's reasoning); None without a marker."""
    markers = list(_MARKER.finditer(text))
    return text[: markers[-1].start()] if markers else None


def is_bare_answer(text: str) -> bool:
    """A reply that is only its answer line: an answer marker with no reasoning before the last one."""
    head = before_answer(text)
    return head is not None and not _DECOR.sub("", head).strip()


def answer_segment(text: str) -> tuple[str | None, bool]:
    """The part of `text` holding the final answer and whether a marker introduced it.

    After the last marker: the rest of that line, or the next non-empty line when the marker ends its line.
    Without a marker: the last non-empty line.
    """
    text = text or ""
    markers = list(_MARKER.finditer(text))
    if markers:
        rest = text[markers[-1].end():]
        for line in rest.split("\n"):
            if line.strip(" \t*_`#"):
                return line.strip(), True
        return None, True
    lines = [ln.strip() for ln in text.split("\n") if ln.strip(" \t*_`#")]
    return (lines[-1] if lines else None), False


def _clean(s: str) -> str:
    s = _DECOR.sub("", s).strip()
    s = s.strip(" \t\"'“”‘’<>[]")
    return s.rstrip(".").strip() if not re.search(r"\.\.\.$", s) else s


def extract_answer(text: str, sample: Sample, truncated: bool = False) -> str | None:
    """The answer in `text` for `sample`'s family, or None when it cannot be read unambiguously.

    `truncated`: the reply hit its token limit. Its last line is then reasoning cut off mid-way, not an answer, and
    a marked answer on that last line may itself be cut ("Answer: The Roman Emp"): only a marked answer on an
    earlier, finished line counts.
    """
    if truncated:
        segment, marked = answer_segment(text)
        if not marked or segment is None or not text[text.rindex(segment) + len(segment):].strip(" \t\n*_`#"):
            return None
    if sample.family == "mc":
        return extract_option(text, sample.options or {})
    if sample.family == "cls":
        return extract_label(text, sample.labels or [], sample.label_descriptions)
    if sample.answer_format == "number":
        return extract_number(text)
    if sample.answer_format == "choice":
        return extract_choice(text, sample.choices or [])
    return extract_short_answer(text)


_NUMBER = re.compile(r"(?<![\w.])-?\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")


def _number_form(whole: str, frac: str | None) -> str:
    value = float(whole.replace(",", "") + (frac or ""))
    return str(int(value)) if value.is_integer() else f"{value:g}"


def extract_number(text: str) -> str | None:
    """qa with a numeric answer: the one number in the answer part ("Answer: 990 dollars", "It weighs 13 kg."),
    in plain form ("1,200" -> "1200", "$45" -> "45"); None when it holds no number or several different ones."""
    segment, _ = answer_segment(text)
    if segment is None:
        return None
    found = {_number_form(m.group(1), m.group(2)) for m in _NUMBER.finditer(_DECOR.sub("", segment))}
    return found.pop() if len(found) == 1 else None


def extract_choice(text: str, choices: list[str]) -> str | None:
    """qa with a closed set of answers: the one choice named in the answer part, also inside a sentence ("The
    Pyxora speaker is the heaviest." -> "Pyxora"); None when it names several (no single answer). A marked answer
    that names none of them ("Answer: San Francisco") is read as it stands: a wrong answer, not an unreadable one."""
    segment, marked = answer_segment(text)
    if segment is None:
        return None
    seg = f" {_norm(segment)} "
    named = {c for c in choices if _norm(c) and f" {_norm(c)} " in seg}
    if len(named) == 1:
        return named.pop()
    if named or not marked:  # several candidates, or an unmarked line naming none: no single answer
        return None
    return _clean(segment) or None


def extract_short_answer(text: str) -> str | None:
    """qa: the text after the last marker (a trailing period dropped); without a marker the last line, if short."""
    segment, marked = answer_segment(text)
    if segment is None:
        return None
    answer = _clean(segment)
    if not answer:
        return None
    if not marked and len(answer.split()) > QA_MAX_WORDS:
        return None  # a long last line is reasoning, not an answer
    return answer


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def extract_option(text: str, options: dict[str, str]) -> str | None:
    """mc: one option letter ("B", "(B)", "B)", "Answer: B", "option B", or the option's text), else None."""
    segment, _ = answer_segment(text)
    if segment is None or not options:
        return None
    seg = _DECOR.sub("", segment).strip()
    letters = "".join(sorted(options))
    # A letter standing alone at the start: "(B)", "[B]", "B)", "B.", "B:", "B" alone, "B is ...", "Option B";
    # "A patient ..." (the article) is not the letter A.
    lead = re.match(rf"^\W*?(?:(?i:option|choice)\s+)?[(\[<]?([{letters}])(?:[)\]>:.,;]|\s*$|\s+(\S))", seg)
    if lead and not (lead.group(1) == "A" and lead.group(2) and lead.group(2).islower()):
        rest = seg[lead.end(1):]
        # "B or C", "B and D": two letters named, so no single answer.
        if re.search(rf"\b(?:or|and)\s+[(\[]?[{letters}](?:\W|$)", rest):
            return None
        return lead.group(1)
    found = {m.group(1) for m in re.finditer(rf"\(([{letters}])\)", seg)}
    found |= {m.group(1) for m in re.finditer(rf"\b(?i:option|choice)\s+([{letters}])\b", seg)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None
    # The option's text instead of its letter; when one option's text contains another's, the longer wins.
    nseg = f" {_norm(seg)} "
    hits = [k for k, v in options.items() if _norm(v) and f" {_norm(v)} " in nseg]
    hits = [k for k in hits if not any(k != o and _norm(options[k]) in _norm(options[o]) for o in hits)]
    return hits[0] if len(hits) == 1 else None


def _label_forms(labels: list[str], descriptions: dict[str, str] | None) -> dict[str, str]:
    """Normalised surface form -> label: the label, its words ("__needs_caution__" -> "needs caution") and a
    description short enough to be a synonym (at most 3 words), when no other label claims the same form."""
    forms: dict[str, str] = {}
    claimed: dict[str, set[str]] = {}
    for label in labels:
        cands = {_norm(label.replace("_", " "))}
        desc = (descriptions or {}).get(label)
        if desc and len(desc.split()) <= 3:
            cands.add(_norm(desc))
        for c in cands:
            if c:
                claimed.setdefault(c, set()).add(label)
    for form, owners in claimed.items():
        if len(owners) == 1:
            forms[form] = next(iter(owners))
    return forms


def extract_label(text: str, labels: list[str], descriptions: dict[str, str] | None = None) -> str | None:
    """cls: the label named in the answer part. After a marker the first label named wins ("Answer: yes, because
    ... no ..."); on an unmarked last line exactly one label must be named. Longer forms shadow the shorter ones
    they contain ("not wrong" is not "wrong"; "possibly needs caution" is not "needs caution")."""
    segment, marked = answer_segment(text)
    if segment is None or not labels:
        return None
    forms = _label_forms(labels, descriptions)
    seg = f" {_norm(segment.replace('_', ' '))} "
    spans: list[tuple[int, int, str]] = []
    for form in sorted(forms, key=len, reverse=True):
        for m in re.finditer(rf"(?<= ){re.escape(form)}(?= )", seg):
            if not any(s <= m.start() and m.end() <= e for s, e, _ in spans):
                spans.append((m.start(), m.end(), forms[form]))
    if not spans:
        return None
    spans.sort()
    if marked:
        return spans[0][2]
    named = {label for _, _, label in spans}
    return named.pop() if len(named) == 1 else None
