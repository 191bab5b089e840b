"""run_eval on mock models (pure logic): metrics.json values by hand, resume after a torn file, early failures."""

import json

import pytest

from cowest.core.config import ModelConfig, validate_config
from cowest.core.errors import UnknownNameError
from cowest.pipeline.evaluate import ModelPool, System, default_systems, run_eval
from cowest.core.layout import EvalDir
from cowest.core.records import Trace, read_jsonl
from cowest.core.results import Metrics, signed


def trace_path(out, system, seed):
    return EvalDir(out).trace(system, seed)

ROWS = [("q1", "Question one?", "A"), ("q2", "Question two?", "B"), ("q3", "Question three?", "A"),
        ("q4", "Question four?", "B")]
RULES = [["Question one", "Answer: A"], ["Question two", "Reasoning.\nAnswer: B"], ["Question three", "Answer: A"],
         ["Question four", "no idea"]]


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "medmcqa.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": q, "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
                                        "answer": a}) + "\n" for i, q, a in ROWS))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))

    def cfg(**kw):
        base = {"run_dir": str(tmp_path / "run"), "task": {"name": "medmcqa", "data": str(data)},
                "models": {"weak": {"spec": "mock/answer:Answer: A"}, "strong": {"spec": f"mock/rules:{rules}"}},
                "eval": {"strategies": ["weak_only", "strong_only", "collaborate"], 
                         "seeds": [0, 1], "bootstrap_samples": 200}}
        for k, v in kw.items():
            base[k] = {**base.get(k, {}), **v}
        return validate_config(base)

    return cfg, tmp_path / "run" / "eval", rules


def test_metrics_json_values_by_hand(setup):
    make, out, _ = setup
    cfg = make()
    assert [s.name for s in default_systems(cfg)] == ["weak_only", "strong_only", "collaborate-cot"]
    typed = run_eval(cfg, out)
    assert Metrics.read(out / "metrics.json") == typed and typed.version == 1
    m = typed.model_dump()
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert (out / "config.yaml").read_text().startswith("run_dir:")
    engines = json.loads((out / "engines.json").read_text())  # which engine each role ran (none chosen: mocks)
    assert set(engines) == {"weak", "strong"} and engines["weak"]["identity"].startswith("mock/")
    assert engines["weak"]["choice"] is None
    assert m["metrics"] == ["accuracy", "macro_f1"] and m["headline"] == "accuracy" and m["n_samples"] == 4
    w, s, c = (m["systems"][n] for n in ("weak_only", "strong_only", "collaborate-cot"))
    # weak always says A: golds A,B,A,B -> acc 1/2; F1(A) = 2*2/(2*2+2) = 2/3, F1(B) = 0 -> macro 1/3
    assert w["metrics"]["accuracy"]["value"] == pytest.approx(0.5)
    assert w["metrics"]["macro_f1"]["value"] == pytest.approx(1 / 3)
    # strong: A, B, A, (no answer) -> acc 3/4; F1(A) = 1, F1(B) = 2/3 -> macro 5/6; one extraction failure per seed
    assert s["metrics"]["accuracy"]["value"] == pytest.approx(0.75)
    assert s["metrics"]["macro_f1"]["value"] == pytest.approx(5 / 6)
    assert s["extraction_failures"] == {"total": 2, "per_seed": {"0": 1, "1": 1}, "rate": 0.25}
    assert s["metrics"]["accuracy"]["per_seed"] == {"0": 0.75, "1": 0.75} and s["metrics"]["accuracy"]["sd"] == 0
    lo, hi = s["metrics"]["accuracy"]["ci"]
    assert 0 <= lo <= 0.75 <= hi <= 1 and lo < hi
    assert c["metrics"]["accuracy"]["value"] == pytest.approx(0.75) and c["draft_format"] == "cot"
    # usage: 4 samples x 2 seeds; collaborate calls both roles once per sample
    assert w["usage"]["weak"]["calls"] == 8 and "strong" not in w["usage"]
    assert c["usage"]["weak"]["calls"] == 8 and c["usage"]["strong"]["calls"] == 8
    assert s["usage"]["strong"]["tokens_per_sample"] > 0 and w["wall_s"] >= 0
    # seed 1 asks the strong model the same prompts with another seed: no cache hit; rerun of the same seed would
    assert s["usage"]["strong"]["cache_hits"] == 0
    pair = next(p for p in m["paired"] if (p["a"], p["b"], p["metric"]) == ("weak_only", "strong_only", "accuracy"))
    assert pair["diff"] == pytest.approx(-0.25) and pair["ci"][0] <= -0.25 <= pair["ci"][1]
    assert len(m["paired"]) == 3 * 2  # 3 system pairs x 2 metrics
    # one sign convention: diff(a, b) is a - b whichever order the pair was stored in
    flipped = typed.diff("strong_only", "weak_only")
    assert flipped.value == pytest.approx(0.25) and (flipped.lo, flipped.hi) == (-pair["ci"][1], -pair["ci"][0])
    assert typed.diff("weak_only", "strong_only").value == pytest.approx(-0.25) and typed.diff("x", "y") is None
    traces = read_jsonl(trace_path(out, "collaborate-cot", 1), Trace)
    assert [t.sample_id for t in traces] == ["q1", "q2", "q3", "q4"] and traces[0].seed == 1
    assert traces[0].metadata["system"] == "collaborate-cot"


def test_resume_skips_done_samples_and_tolerates_a_torn_line(setup):
    make, out, rules = setup
    cfg = make(models={"weak": {"spec": "mock/answer:Answer: A"},
                       "strong": {"spec": f"mock/rules:{rules}", "cache": False}}, eval={"seeds": [0]})
    systems = [System("strong", "strong_only")]
    run_eval(cfg, out, systems)
    path = trace_path(out, "strong", 0)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])  # killed while writing row 3
    rules.write_text(json.dumps([["", "Answer: C"]]))  # the model now answers C to everything
    m = run_eval(cfg, out, systems)
    preds = [t.prediction for t in read_jsonl(path, Trace)]
    assert preds == ["A", "B", "C", "C"]  # rows 1-2 kept, the torn row and row 4 redone
    assert m.value("strong", "accuracy").value == pytest.approx(0.5)
    # a third run has nothing left to do and changes nothing
    before = path.read_text()
    run_eval(cfg, out, systems)
    assert path.read_text() == before


def test_own_weak_model_per_system_same_samples(setup):
    make, out, _ = setup
    cfg = make(eval={"seeds": [0]})
    systems = [System("weak_a", "weak_only"), System("weak_b", "weak_only", weak=ModelConfig(spec="mock/answer:Answer: B"))]
    m = run_eval(cfg, out, systems)
    assert m.value("weak_a").value == 0.5 and m.value("weak_b").value == 0.5
    assert m.systems["weak_b"].weak == "mock/answer:Answer: B"
    assert [t.prediction for t in read_jsonl(trace_path(out, "weak_b", 0), Trace)] == ["B"] * 4


@pytest.mark.parametrize("change,message", [
    ({"systems": [System("x", "colab")]}, "unknown strategy 'colab'; valid: collaborate"),
    ({"systems": [System("x", "collaborate", "essay")]}, "unknown draft format 'essay'; valid: cot, direct, knowledge"),
    ({"task": {"name": "ifqaa"}}, "unknown task 'ifqaa'; valid:.*ifqa"),
    ({"collaboration": {"prompts": {"refin": "x"}}}, "unknown prompt template"),
])
def test_unknown_names_fail_before_any_model_loads(setup, monkeypatch, change, message):
    make, out, _ = setup

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ModelPool, "get", boom)
    systems = change.pop("systems", None)
    with pytest.raises(UnknownNameError, match=message):
        run_eval(make(**change), out, systems)


def test_cli_eval_and_report(setup, tmp_path, capsys):
    import yaml

    from cowest.cli import main

    make, out, _ = setup
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(make().model_dump(mode="json")))
    assert main(["eval", str(cfg_file), "eval.seeds=[0]", "eval.strategies=[weak_only]", "--out", str(out)]) == 0
    assert "weak_only" in capsys.readouterr().out and (out / "traces" / "weak_only.seed0.jsonl").exists()
    assert main(["report", str(out)]) == 0 and (out / "report.md").exists()
    assert main(["eval", str(cfg_file), "eval.strategies=[colab]"]) == 2
    assert "unknown strategy 'colab'" in capsys.readouterr().err


@pytest.mark.parametrize("x, text", [(0.0, "+0.000"), (-0.0, "+0.000"), (-0.0004, "+0.000"), (-0.0006, "-0.001"),
                                     (0.25, "+0.250")])
def test_a_difference_that_rounds_to_zero_prints_as_plus_zero(x, text):
    assert signed(x) == text


def test_a_metrics_file_of_before_the_version_field_reads_as_version_1(tmp_path):
    old = {"task": "demo", "n_samples": 2, "seeds": [0], "metrics": ["exact_match"], "headline": "exact_match",
           "systems": {"strong": {"strategy": "strong_only", "metrics": {"exact_match": {"value": 0.5,
                                                                                          "ci": [0.0, 1.0]}}}},
           "paired": []}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    m = Metrics.read(tmp_path / "metrics.json")
    assert m.version == 1 and m.value("strong").value == 0.5 and m.failed_samples == 0


def test_chunk_size_gives_local_engines_several_batches_and_servers_their_concurrency():
    from cowest.pipeline.evaluate import chunk_size

    def cfg(weak, strong):
        return validate_config({"task": {"name": "demo"}, "models": {"weak": weak, "strong": strong}})

    local = {"spec": "embedded/smollm2-135m", "batch_size": 32}
    served = {"spec": "openai/gpt-x", "base_url": "http://127.0.0.1:9/v1", "concurrency": 24, "batch_size": 64}
    # continuous batching refills a slot only from the same call, so a local engine gets 4 batches per chunk
    assert chunk_size(cfg(local, {**local, "batch_size": 8})) == 128
    # a served model's batch_size is not its own: its concurrency decides
    assert chunk_size(cfg({**local, "batch_size": 2}, served)) == 24
    assert chunk_size(cfg({**local, "batch_size": 2}, {**served, "concurrency": 4})) == 16


def test_samples_chosen_by_the_caller_replace_the_eval_split(setup):
    """A benchmark's held-out questions (method.py --fresh): only those are evaluated and scored."""
    from cowest.tasks.base import load_samples

    make, out, _ = setup
    cfg = make(eval={"seeds": [0]})
    chosen = [s for s in load_samples(cfg.task, cfg.task.eval_split) if s.id in ("q2", "q4")]
    m = run_eval(cfg, out, [System("strong", "strong_only")], samples=chosen)
    assert [t.sample_id for t in read_jsonl(trace_path(out, "strong", 0), Trace)] == ["q2", "q4"]
    # strong answers B to q2 (gold B) and nothing readable to q4: 1 of 2, where the whole split scores 3 of 4
    assert m.n_samples == 2 and m.value("strong", "accuracy").value == pytest.approx(0.5)
