"""The LLM judge of collaborative feedback: a rubric prompt and a tolerant score parser.

The paper's evaluator is the strong model itself, judging reasoning coherence and consistency with the ground
truth. Small models write scores in many shapes ("Score: 7/10", "**Rating**: 8", "7 out of 10", JSON), so the
parser accepts those and returns a score normalised to [0, 1], or None when no score can be read.
"""

from __future__ import annotations

import json
import re

from cowest.core.records import Message, Sample

JUDGE_SYSTEM = "You are a strict grader. You compare a response with the reference answer and give one integer score."

JUDGE_TEMPLATE = """Question:
{question}

Reference answer: {gold}

Response to grade:
{response}

Grade the response from 1 to 10 by this rubric:
- consistency with the reference answer (the final answer must match it to score above 5);
- coherence of the reasoning (each step follows from the previous and from the question).
Reply with one line: "Score: N" where N is an integer from 1 to 10."""

SCALE_MAX = 10.0


def gold_text(sample: Sample) -> str:
    """The gold answer as a reader sees it: every accepted answer, or the gold option with its text."""
    if sample.options and sample.gold in sample.options:
        return f"{sample.gold}) {sample.options[sample.gold]}"
    return " / ".join(sample.answers)


def judge_messages(sample: Sample, response: str, template: str = JUDGE_TEMPLATE) -> list[Message]:
    gold = gold_text(sample)
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": template.format(question=sample.question, gold=gold, response=response)},
    ]


_NUM = r"(\d+(?:\.\d+)?)"
_PATTERNS = [
    # "Score: 7/10", "score = 7 / 10", "Rating: 8 out of 10"
    re.compile(r"(?:score|rating|grade)\W{0,6}" + _NUM + r"\s*(?:/|out of)\s*" + _NUM, re.I),
    re.compile(r"(?:score|rating|grade)\W{0,6}" + _NUM, re.I),
    # "7/10" or "7 out of 10" anywhere
    re.compile(_NUM + r"\s*(?:/|out of)\s*" + _NUM, re.I),
]


def parse_judge_score(text: str) -> float | None:
    """A score in [0, 1] from a judge reply, or None. The last explicit score wins (judges often restate the scale
    first: 'on a scale of 1 to 10 ... Score: 8')."""
    if not text:
        return None
    stripped = text.strip().strip("`")
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped.removeprefix("json").strip())
            for key in ("score", "rating", "grade"):
                if key in obj:
                    return _normalise(float(obj[key]), SCALE_MAX)
        except (ValueError, TypeError):
            pass
    for pat in _PATTERNS:
        matches = list(pat.finditer(text))
        if matches:
            m = matches[-1]
            value = float(m.group(1))
            scale = float(m.group(2)) if m.lastindex and m.lastindex >= 2 else SCALE_MAX
            return _normalise(value, scale)
    bare = stripped.rstrip(".")
    if re.fullmatch(_NUM, bare):
        return _normalise(float(bare), SCALE_MAX)
    return None


def _normalise(value: float, scale: float) -> float | None:
    if scale <= 0 or value < 0 or value > scale:
        return None
    # 1..10 rubric -> [0, 1]; a 0 is accepted as the floor too.
    return max(0.0, (value - 1.0) / (scale - 1.0)) if scale > 1 else value / scale
