"""Property-based fuzz (Hypothesis) of what a user hands the tool: configs and overrides through `cowest run`, data
rows through `cowest data check`, and serve's request parsing. For every generated input: success, or exactly one
`cowest: error: ...` line and exit status 2 (serve: a 4xx with an error body); never a traceback, a hang past a
bound or memory past a bound. Seeds and example counts are pinned (derandomize), so CI runs the same inputs each
time, in well under two minutes."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

from cowest.cli import main  # noqa: E402

FUZZ = settings(derandomize=True, max_examples=150, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MEMORY_GROWTH_KB = 1024 * 1024
"""How far the process's peak resident memory (ru_maxrss, KiB) may rise during one fuzz test: an unbounded read
(a /dev/zero config grew to 21 GB) would pass it. A rise, not a level: the peak is the process's whole life, and
earlier tests in the same pytest process load models."""

KEYS = ["task.name", "task.seed", "task.eval_limit", "sft.lr", "sft.batch_size", "sft.draft_mix", "feedback.k",
        "feedback.split", "feedback.temperature", "align.beta", "align.select_split", "route.threshold",
        "collaboration.draft_format", "collaboration.prompts", "models.weak.spec", "prices", "rounds", "run_dir",
        "eval.strategies", "nope.key", "task", ""]
VALUES = st.one_of(st.sampled_from([".nan", ".inf", "-1", "0", "1e308", "true", "[cot, cot]", "{a: 1}", "'{x.y}'",
                                    "/dev/zero", "[", "9" * 5000, "\x00", "\ud800", "~", "demo", "tune"]),
                   st.text(max_size=40), st.integers().map(str), st.floats(allow_nan=True).map(str))
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4)


def one_line_or_success(code: int, err: str) -> None:
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("[cowest] ")]
    assert "Traceback" not in err, err[-2000:]
    event(f"exit {code}")  # --hypothesis-show-statistics: how many inputs were refused, how many passed
    if code == 0:
        return
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cowest: error: "), (code, err[-2000:])


def _resident_kb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024


@pytest.fixture
def memory_bound() -> int:
    """The peak a fuzz test may reach: the resident size at its start plus the growth bound, or the earlier peak
    where that is higher (ru_maxrss never falls, so a new peak is what this test itself used)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _resident_kb() + MEMORY_GROWTH_KB)


def peak_memory_ok(bound_kb: int) -> None:
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss <= bound_kb


@FUZZ
@given(text=st.text(max_size=300), overrides=OVERRIDES)
def test_configs_and_overrides(tmp_path_factory, monkeypatch, capsys, memory_bound, text: str,
                               overrides: list[str]) -> None:
    """`cowest run CONFIG KEY=VALUE...` up to where the loop would start (run_all stubbed: nothing trains)."""
    from cowest.pipeline import loop

    monkeypatch.setattr(loop, "run_all", lambda cfg, force=None, evaluate=True: Path(cfg.run_dir) / "report.md")
    monkeypatch.setattr(loop, "summary_table", lambda cfg: "")
    where = tmp_path_factory.mktemp("cfg")
    monkeypatch.chdir(where)  # a relative run_dir (the default runs/default) lands here
    path = where / "c.yaml"
    path.write_text(text, encoding="utf-8")  # st.text() draws no lone surrogates: a file holds UTF-8
    code = main(["run", str(path), *overrides])
    one_line_or_success(code, capsys.readouterr().err)
    peak_memory_ok(memory_bound)


ROW_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)
ROWS = st.lists(st.dictionaries(st.sampled_from(["question", "answer", "answers", "label", "scenario", "opa", "cop",
                                                 "id", "context", "x"]), ROW_VALUES, max_size=5), max_size=4)


@FUZZ
@given(rows=ROWS, junk=st.sampled_from(["", "\n{", "\n[1]", "\n" + "9" * 5000, '\n{"question": "a\\ud800"}', "\x00"]),
       task=st.sampled_from(["ifqa", "medmcqa", "ethics"]))
def test_data_rows(tmp_path_factory, capsys, memory_bound, rows: list[dict], junk: str, task: str) -> None:
    """`cowest data check FILE --task T` on generated JSON Lines rows, some with a broken line appended."""
    path = tmp_path_factory.mktemp("data") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + junk, encoding="utf-8")
    extra = ["--subset", "justice"] if task == "ethics" else []
    code = main(["data", "check", str(path), "--task", task, *extra])
    one_line_or_success(code, capsys.readouterr().err)
    peak_memory_ok(memory_bound)


MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "pirate"]),
                                           "content": st.one_of(st.text(max_size=30), st.integers(), st.none(),
                                                                st.lists(ROW_VALUES, max_size=2))}), max_size=3)
BODIES = st.fixed_dictionaries({"model": st.one_of(st.just("cowest"), st.integers(), st.none()), "messages": MESSAGES},
                               optional={"max_tokens": ROW_VALUES, "temperature": ROW_VALUES, "top_p": ROW_VALUES,
                                         "stream": ROW_VALUES, "n": ROW_VALUES, "logprobs": ROW_VALUES,
                                         "tools": ROW_VALUES, "stream_options": ROW_VALUES, "cowest": ROW_VALUES})


@FUZZ
@given(body=BODIES, cut=st.integers(min_value=0, max_value=400))
def test_serve_request_parsing(memory_bound, body: dict, cut: int) -> None:
    """serve's request parsing on generated bodies, whole and cut short: a request, or a 4xx refusal."""
    from cowest.serve_request import ChatRequest, Refusal, parse_chat

    raw = json.dumps(body).encode()
    for data in (raw, raw[:cut]):
        try:
            req = parse_chat(data)
        except Refusal as r:
            assert 400 <= r.status < 500 and r.body["error"]["message"] and "\n" not in r.body["error"]["message"]
            continue
        assert isinstance(req, ChatRequest)
        try:
            req.question
        except Refusal as r:
            assert r.status == 400
    peak_memory_ok(memory_bound)
