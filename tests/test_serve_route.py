"""`cowest serve` with `route.serve`: the route each question took, in the response header, `system_fingerprint`
and metadata, and counted in the JSON log; a real uvicorn server on 127.0.0.1 with scripted models."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from cowest.core.config import ExperimentConfig, ModelConfig  # noqa: E402
from cowest.core.errors import CowestError  # noqa: E402
from cowest.models.mock import MockBackend  # noqa: E402
from cowest.core.records import Generation  # noqa: E402
from cowest.routing.serve_route import ServeRoute  # noqa: E402
from cowest.serve import Collaboration  # noqa: E402
from test_serve import TOKEN, Served, log_rows  # noqa: E402


class SureOnSums(MockBackend):
    """Drafts "Answer: 42" at log-probability -0.1 for a question about seven, "Answer: 3" at -3.0 otherwise."""

    def __init__(self) -> None:
        super().__init__("scripted", ModelConfig(spec="mock/weak"), script=lambda m: "")

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for msgs in prompts:
            sure = "seven" in msgs[-1]["content"].lower()
            lp = -0.1 if sure else -3.0
            text = "Six sevens.\nAnswer: 42" if sure else "Maybe.\nAnswer: 3"
            out.append([Generation(text=text, prompt_tokens=5, completion_tokens=4,
                                   token_logprobs=[lp] * 4 if params.logprobs else None)] * params.n)
        return out


def routed(fallback: str = "collaborate") -> tuple[Collaboration, MockBackend]:
    cfg = ExperimentConfig(route={"serve": True, "threshold": -1.0, "fallback": fallback})
    strong = MockBackend("answer:Strong reasoning.\nAnswer: 9")
    return Collaboration(cfg, SureOnSums(), strong, router=ServeRoute(cfg, "confidence", -1.0)), strong


def chat(s: Served, question: str, **body: object) -> httpx.Response:
    return httpx.post(s.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
                      json={"model": "cowest", "messages": [{"role": "user", "content": question}], **body})


def test_route_header_fingerprint_metadata_and_log_counts() -> None:
    collab, strong = routed()
    with Served(collab) as s:
        sure = chat(s, "What is six times seven?")
        unsure = chat(s, "What is the capital of Pesk?")
        resp = s.client().chat.completions.create(model="cowest",
                                                  messages=[{"role": "user", "content": "Seven squared?"}])
        streamed = chat(s, "Seven and seven?", stream=True)
        rows = log_rows(s, 4)
    assert sure.status_code == 200 and sure.headers["x-cowest-route"] == "weak"
    body = sure.json()
    assert body["system_fingerprint"] == "cowest-weak" and body["choices"][0]["message"]["content"].endswith("42")
    assert body["cowest"]["route"] == "weak" and body["cowest"]["router"] == "confidence"
    assert body["cowest"]["route_score"] == pytest.approx(-0.1)
    assert unsure.headers["x-cowest-route"] == "collaborate" and unsure.json()["system_fingerprint"] == "cowest-collaborate"
    assert unsure.json()["choices"][0]["message"]["content"].endswith("Answer: 9")
    assert len(strong.calls) == 1 and "Maybe." in strong.calls[0][0][0][-1]["content"]  # only the unsure question
    assert resp.system_fingerprint == "cowest-weak" and resp.model_extra["cowest"]["route"] == "weak"
    assert streamed.headers["x-cowest-route"] == "weak" and "Six sevens." in streamed.text
    chats = [r for r in rows if r["path"] == "/v1/chat/completions"]
    assert [r["route"] for r in chats] == ["weak", "collaborate", "weak", "weak"]
    assert chats[-1]["routes"] == {"weak": 3, "collaborate": 1}


def test_fallback_strong_asks_the_question_alone() -> None:
    collab, strong = routed("strong")
    with Served(collab) as s:
        r = chat(s, "What is the capital of Pesk?")
    assert r.headers["x-cowest-route"] == "strong" and r.json()["system_fingerprint"] == "cowest-strong"
    assert "Maybe." not in strong.calls[0][0][0][-1]["content"]


def test_without_routing_every_question_collaborates_and_says_so() -> None:
    strong = MockBackend("answer:Answer: 9")
    with Served(Collaboration(ExperimentConfig(), SureOnSums(), strong)) as s:
        r = chat(s, "What is six times seven?")
    assert r.headers["x-cowest-route"] == "collaborate" and "cowest" not in r.json() and len(strong.calls) == 1


def test_serve_with_an_untrained_learned_router_fails_before_loading(tmp_path: Path) -> None:
    cfg = ExperimentConfig(run_dir=str(tmp_path), route={"serve": True, "routers": ["learned"]},
                           models={"weak": {"spec": "mock/echo"}, "strong": {"spec": "mock/echo"}})
    with pytest.raises(CowestError, match="cowest router CONFIG"):
        Collaboration.load(cfg)
