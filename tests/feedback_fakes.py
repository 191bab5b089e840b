"""Scripted backends for the pure-logic feedback tests (and the kill-and-resume subprocess).

The weak fake returns K different drafts per question, chosen by sample index, so influence differs per draft; the
strong fake copies the answer a draft proposes (or answers wrong when alone), which makes every Δ hand-computable.
"""

from __future__ import annotations

import re
import time

from cowest.core.records import Generation, SamplingParams


class FakeWeak:
    identity = "fake/weak"
    has_chat_template = True

    def __init__(self, drafts_for):
        self.drafts_for = drafts_for  # question text -> list of K draft texts

    def generate(self, prompts, params: SamplingParams):
        out = []
        for msgs in prompts:
            texts = self.drafts_for(msgs[-1]["content"])
            out.append([Generation(text=texts[i % len(texts)], completion_tokens=3) for i in range(params.n)])
        return out

    def close(self):
        pass


class FakeStrong:
    """Refinement: repeats the draft's 'Answer:' line. Solo: 'Answer: <solo>'. Counts calls; optional delay."""

    identity = "fake/strong"
    has_chat_template = True

    def __init__(self, delay: float = 0.0, solo: str = "wrong"):
        self.delay = delay
        self.solo = solo
        self.calls = 0

    def generate(self, prompts, params):
        out = []
        for msgs in prompts:
            self.calls += 1
            time.sleep(self.delay)
            m = re.findall(r"Answer: ([^\n\"]+)", msgs[-1]["content"].split("wrote this", 1)[-1])
            text = f"Answer: {m[0]}" if "wrote this" in msgs[-1]["content"] and m else f"Answer: {self.solo}"
            out.append([Generation(text=text, completion_tokens=2)])
        return out

    def close(self):
        pass


class FakeJudge:
    """Replies from a list in turn (to script unparseable replies)."""

    identity = "fake/judge"
    has_chat_template = True

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0

    def generate(self, prompts, params):
        out = []
        for _ in prompts:
            text = self.replies[self.calls % len(self.replies)]
            self.calls += 1
            out.append([Generation(text=text)])
        return out

    def close(self):
        pass
