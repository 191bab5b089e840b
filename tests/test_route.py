"""Strategy `route`, its routers, calibration, the learned router and cost accounting (issue 16).

Routing decisions run on scripted backends whose log-probabilities and samples are chosen per question, so every
score and threshold below is computed by hand; calibration on a synthetic score list and on the demo's dev
questions; the learned router on a scripted feedback file; one eval of the route system end to end (mock models
through the real eval stage and report).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cowest.core.config import ExperimentConfig, ModelConfig, TaskConfig, load_config
from cowest.core.errors import ConfigError, CowestError
from cowest.models.mock import MockBackend
from cowest.core.records import Generation, Sample, SamplingParams, append_jsonl
from cowest.routing.calibrate import calibrate, threshold_for_share
from cowest.routing.routers import answer_span_logprob
from cowest.strategies import STRATEGIES, StrategyContext

OPTS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}


def mc(i: int, gold: str = "A") -> Sample:
    return Sample(id=f"s{i}", task="medmcqa", family="mc", question=f"Question number {i}?", answers=[gold],
                  options=OPTS)


class Weak(MockBackend):
    """A weak model whose draft of question i is `drafts[i]` with every token at log-probability `lp[i]`, and whose
    sampled answers (temperature > 0) to question i are `samples[i]`."""

    def __init__(self, drafts: dict[int, str], lp: dict[int, float] | None = None,
                 samples: dict[int, list[str]] | None = None):
        super().__init__("scripted", ModelConfig(spec="mock/weak"), script=lambda m: "")
        self.drafts, self.lp, self.samples = drafts, lp or {}, samples or {}

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for msgs in prompts:
            i = int(msgs[-1]["content"].split("number ")[1].split("?")[0])
            texts = self.samples[i] if params.temperature > 0 else [self.drafts[i]] * params.n
            out.append([Generation(text=t, prompt_tokens=10, completion_tokens=len(t.split()),
                                   token_logprobs=[self.lp.get(i, -0.1)] * max(len(t.split()), 1)
                                   if params.logprobs else None) for t in texts[: params.n]])
        return out


def strong_says(letter: str) -> MockBackend:
    return MockBackend("scripted", ModelConfig(spec="mock/strong"), script=lambda m: f"Reasoning.\nAnswer: {letter}")


def ctx_for(tmp_path: Path, **route: object) -> StrategyContext:
    cfg = ExperimentConfig(run_dir=str(tmp_path / "run"), route=route)
    return StrategyContext(weak_params=SamplingParams(max_tokens=8), strong_params=SamplingParams(max_tokens=16),
                           config=cfg)


def test_answer_span_logprob_reads_the_answer_tokens() -> None:
    text = "Because x.\nAnswer: B"  # the span "B" is 1 of 20 characters: ceil(6 * 1/20) = 1 token, the last
    gen = Generation(text=text, token_logprobs=[-3.0, -3.0, -3.0, -3.0, -2.0, -0.1])
    assert answer_span_logprob(gen) == pytest.approx(-0.1)
    long = Generation(text="Answer: the Quillon compass", token_logprobs=[-1.0, -0.5, -0.2, -0.4])
    # span "the Quillon compass" = 19 of 27 characters: ceil(4 * 19/27) = 3 tokens: (-0.5 - 0.2 - 0.4) / 3
    assert answer_span_logprob(long) == pytest.approx(-1.1 / 3)
    with pytest.raises(CowestError, match="log-probabilities"):
        answer_span_logprob(Generation(text="Answer: B"))


def test_confidence_routes_only_questions_below_the_threshold(tmp_path: Path) -> None:
    samples = [mc(1, "A"), mc(2, "A"), mc(3, "B"), mc(4, "B")]
    weak = Weak({i: "Thinking.\nAnswer: A" for i in range(1, 5)}, lp={1: -0.1, 2: -0.5, 3: -1.0, 4: -2.0})
    strong = strong_says("B")
    ctx = ctx_for(tmp_path, routers=["confidence"], threshold=-0.7, sweep=False)
    traces = STRATEGIES.get("route")(samples, weak=weak, strong=strong, ctx=ctx)
    assert weak.calls[0][1].logprobs is True  # the draft was asked with log-probabilities
    assert [t.metadata["route"]["decision"] for t in traces] == ["weak", "weak", "strong", "strong"]
    sent = [m[-1]["content"] for m in strong.calls[0][0]]
    assert len(sent) == 2 and "Question number 3?" in sent[0] and "Question number 4?" in sent[1]
    assert [t.prediction for t in traces] == ["A", "A", "B", "B"]  # weak kept for 1, 2; strong for 3, 4
    assert [t.scores["accuracy"] for t in traces] == [1.0, 1.0, 1.0, 1.0]
    assert [[s.role for s in t.steps] for t in traces] == [["weak"], ["weak"], ["weak", "strong"], ["weak", "strong"]]
    assert traces[2].steps[1].name == "refine" and "Thinking." in traces[2].steps[1].messages[-1]["content"]
    assert traces[0].metadata["route"]["scores"] == {"confidence": pytest.approx(-0.1)}
    assert traces[0].metadata["route"]["fallback"] is None  # no sweep: question 1 never reached the strong model


def test_sweep_runs_the_fallback_everywhere_but_keeps_it_out_of_the_answer(tmp_path: Path) -> None:
    samples = [mc(1, "A"), mc(2, "B")]
    weak = Weak({1: "Answer: A", 2: "Answer: A"}, lp={1: -0.1, 2: -3.0})
    strong = strong_says("B")
    ctx = ctx_for(tmp_path, threshold=-1.0, fallback="strong")
    t1, t2 = STRATEGIES.get("route")(samples, weak=weak, strong=strong, ctx=ctx)
    assert len(strong.calls[0][0]) == 2 and strong.calls[0][0][0][-1]["content"].startswith("Question: Question number 1?")
    assert "smaller assistant" not in strong.calls[0][0][0][-1]["content"]  # fallback strong: the solo prompt
    assert [s.role for s in t1.steps] == ["weak"] and t1.prediction == "A"
    assert t1.metadata["route"]["fallback"]["prediction"] == "B" and t1.metadata["route"]["fallback"]["scores"] == {
        "accuracy": 0.0}
    assert [s.name for s in t2.steps] == ["draft_cot", "solo"] and t2.prediction == "B"


def test_agreement_scores_the_share_of_samples_that_agree(tmp_path: Path) -> None:
    samples = [mc(1), mc(2), mc(3)]
    weak = Weak({1: "Answer: A", 2: "Answer: A", 3: "no idea"},
                samples={1: ["Answer: A"] * 4 + ["Answer: B"], 2: ["Answer: A"] + ["Answer: C"] * 4,
                         3: ["Answer: A"] * 5})
    ctx = ctx_for(tmp_path, routers=["agreement"], threshold=0.5, samples=5, temperature=0.9, sweep=False)
    traces = STRATEGIES.get("route")(samples, weak=weak, strong=strong_says("D"), ctx=ctx)
    # 4/5 agree with question 1's draft, 1/5 with question 2's; question 3's draft has no answer: 0
    assert [t.metadata["route"]["scores"]["agreement"] for t in traces] == [pytest.approx(0.8), pytest.approx(0.2), 0.0]
    assert [t.metadata["route"]["decision"] for t in traces] == ["weak", "strong", "strong"]
    sampled = weak.calls[1][1]
    assert sampled.n == 5 and sampled.temperature == 0.9
    # the deciding router's samples are steps of the trace (their tokens count), before the draft
    assert [s.name for s in traces[0].steps] == ["route_agreement"] * 5 + ["draft_cot"]
    assert traces[0].final == "Answer: A" and traces[1].prediction == "D"


def test_knowledge_drafts_get_a_separate_weak_answer_which_the_router_scores(tmp_path: Path) -> None:
    class Facts(Weak):
        def generate(self, prompts, params):
            if "Do not give the answer" in prompts[0][-1]["content"]:  # the knowledge draft: facts, no answer
                self.calls.append((prompts, params))
                return [[Generation(text="Alpha is the first letter.", completion_tokens=5)] for _ in prompts]
            return super().generate(prompts, params)

    weak = Facts({1: "Answer: A", 2: "Answer: C"}, lp={1: -0.1, 2: -2.0})
    strong = strong_says("B")
    ctx = ctx_for(tmp_path, threshold=-1.0, sweep=False)
    ctx.draft_format = "knowledge"
    t1, t2 = STRATEGIES.get("route")([mc(1, "A"), mc(2, "B")], weak=weak, strong=strong, ctx=ctx)
    assert weak.calls[0][1].logprobs is False and weak.calls[1][1].logprobs is True  # only the answer is scored
    assert [s.name for s in t1.steps] == ["draft_knowledge", "answer"] and t1.prediction == "A"
    assert [s.name for s in t2.steps] == ["draft_knowledge", "answer", "refine"] and t2.prediction == "B"
    assert "Alpha is the first letter." in t2.steps[2].messages[-1]["content"]  # the strong model refines the facts


def test_threshold_for_share_on_a_synthetic_score_list() -> None:
    rng = np.random.default_rng(0)
    scores = list(rng.permutation(np.arange(200) / 200))
    for share in (0.1, 0.3, 0.5, 0.9):
        t, got = threshold_for_share(scores, share)
        assert got == pytest.approx(share) and sum(s < t for s in scores) == round(200 * share)
    tied = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    assert threshold_for_share(tied, 0.3) == (1, 0.3)
    assert threshold_for_share(tied, 0.5) == (2, 0.5)
    assert threshold_for_share(tied, 0.4) == (1, 0.3)  # 0.3 and 0.5 are as near: the lower share
    assert threshold_for_share(tied, 0.99)[1] == 1.0
    with pytest.raises(CowestError):
        threshold_for_share([], 0.3)


def test_a_router_whose_tied_scores_miss_the_share_is_named() -> None:
    """Issue 38 item 11: every score tied gave 0% strong calls at route.strong_share=0.3, silently."""
    from cowest.routing.calibrate import Calibration, share_warnings

    t, got = threshold_for_share([0.5] * 20, 0.3)
    assert got == 0.0
    tied = Calibration("confidence", t, 0.3, got, 20, "dev")
    near = Calibration("agreement", 0.2, 0.3, 0.35, 20, "dev")
    (line,) = share_warnings([tied, near])
    assert line.startswith("route: router 'confidence' sends 0% of the 20 dev questions to the strong model, "
                           "not the 30% asked (route.strong_share)")
    assert "route.threshold" in line


class DemoWeak(MockBackend):
    """Drafts every demo question with `Answer: 1`, at a log-probability set by the question's position."""

    def __init__(self) -> None:
        super().__init__("scripted", ModelConfig(spec="mock/weak"), script=lambda m: "")
        self.lp: dict[str, float] = {}

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for msgs in prompts:
            q = msgs[-1]["content"]
            lp = self.lp.setdefault(q, -len(self.lp) / 10)
            out.append([Generation(text="Answer: 1", completion_tokens=2,
                                   token_logprobs=[lp, lp] if params.logprobs else None)] * params.n)
        return out


def test_calibration_hits_the_share_on_dev_is_saved_and_reused(tmp_path: Path) -> None:
    cfg = load_config(None, [f"run_dir={tmp_path}", "route.strong_share=0.3", "route.calibration_limit=50"])
    weak = DemoWeak()
    cal = calibrate(cfg, weak, "cot")["confidence"]
    assert cal.n == 50 and cal.split == "dev" and cal.achieved_share == pytest.approx(0.3)
    saved = list((tmp_path / "router").glob("calibration-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["routers"]["confidence"]["achieved_share"] == 0.3
    calls = len(weak.calls)
    assert calibrate(cfg, weak, "cot")["confidence"] == cal and len(weak.calls) == calls  # read, not redrafted
    other = load_config(None, [f"run_dir={tmp_path}", "route.strong_share=0.5", "route.calibration_limit=50"])
    assert calibrate(other, DemoWeak(), "cot")["confidence"].achieved_share == pytest.approx(0.5)


# ---- the learned router ---------------------------------------------------------------------------------------


def write_feedback(path: Path, samples: list[Sample]) -> None:
    """Scripted feedback: a draft that says 'unsure' is wrong and its refinement right (the strong model helps);
    a draft that says 'certain' is right, and so is its refinement (it does not)."""
    from cowest.pipeline.feedback import DraftFeedback, FeedbackRecord

    path.parent.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(samples):
        drafts = []
        for j in range(4):
            helps = (k + j) % 2 == 0
            text = "I am unsure about this.\nAnswer: 99999" if helps else f"I am certain of it.\nAnswer: {s.gold}"
            drafts.append(DraftFeedback(text=text, refinement=f"Answer: {s.gold}", prediction=s.gold, score=1.0,
                                        delta=0.0))
        append_jsonl(path, FeedbackRecord(question_id=s.id, prompt=[{"role": "user", "content": s.question}],
                                          solo=f"Answer: {s.gold}", solo_prediction=s.gold, solo_score=1.0,
                                          drafts=drafts, tokens={"weak": 40, "strong": 100},
                                          completion_tokens={"weak": 10, "strong": 20}))


def demo_train(n: int) -> list[Sample]:
    from cowest.tasks.base import load_samples

    return load_samples(TaskConfig(name="demo"), "train")[:n]


def test_learned_router_trains_on_scripted_feedback_and_beats_a_constant(tmp_path: Path) -> None:
    from cowest.routing.learned import feedback_path, learned_path, load_router, train_router

    cfg = load_config(None, [f"run_dir={tmp_path}", "route.routers=[learned]"])
    write_feedback(feedback_path(cfg), demo_train(30))
    rec = train_router(cfg)
    assert rec["rows"] == 120 and rec["positives"] == 60 and learned_path(cfg).exists()
    assert rec["constant_accuracy"] <= 0.5 + 1e-9 and rec["heldout_accuracy"] > 0.9 and rec["heldout_auc"] > 0.9
    router = load_router(cfg)
    q = demo_train(31)[-1].question  # a question it never saw
    unsure, certain = router.keep_scores([q, q], ["I am unsure about this.\nAnswer: 3", "I am certain of it.\nAnswer: 3"])
    assert unsure < 0.5 < certain


def test_learned_router_refuses_missing_or_foreign_training(tmp_path: Path) -> None:
    from cowest.routing.checks import check_route
    from cowest.routing.learned import feedback_path, train_router

    cfg = load_config(None, [f"run_dir={tmp_path}", "route.routers=[learned]"])
    with pytest.raises(CowestError, match=r"no feedback records .*cowest feedback CONFIG"):
        train_router(cfg)
    with pytest.raises(CowestError, match=r"not trained: .*no feedback records.*cowest router CONFIG"):
        check_route(cfg, "cot")
    check_route(cfg, "cot", learned_later=True)  # `cowest run` plans it before its feedback exists
    write_feedback(feedback_path(cfg), demo_train(10))
    train_router(cfg)
    check_route(cfg, "cot")
    other = load_config(None, [f"run_dir={tmp_path}", "route.routers=[learned]",
                               "models.weak.spec=embedded/qwen2.5-coder-0.5b"])
    with pytest.raises(CowestError, match=r"trained for another setup: weak 'embedded/smollm2-135m'.*retrain"):
        check_route(other, "cot")
    write_feedback(feedback_path(cfg), demo_train(12)[10:])  # new records: the router is stale
    with pytest.raises(CowestError, match=r"changed since it was trained.*cowest router CONFIG"):
        check_route(cfg, "cot")


def test_router_command_trains_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cowest.cli import main
    from cowest.routing.learned import feedback_path

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"run_dir: {tmp_path / 'run'}\nroute: {{routers: [learned]}}\n")
    assert main(["router", str(cfg_file)]) == 2 and "cowest feedback CONFIG" in capsys.readouterr().err
    write_feedback(feedback_path(load_config(cfg_file)), demo_train(20))
    assert main(["router", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "80 drafts of 20 questions, 40 where the strong model's answer beats the draft's" in out
    assert "router/learned.json" in out


# ---- the route system through the eval stage, the report and the costs ----------------------------------------


def test_route_eval_report_curve_and_costs(tmp_path: Path) -> None:
    from cowest.pipeline.evaluate import System, run_eval
    from cowest.pipeline.report import render_report
    from cowest.routing.learned import feedback_path, train_router

    rules = tmp_path / "weak.json"  # the weak model is unsure (and wrong) on sums, certain elsewhere
    rules.write_text(json.dumps([["together", "I am unsure about this.\nAnswer: 0"],
                                 ["", "I am certain of it.\nAnswer: 2035"]]))
    strong_rules = tmp_path / "strong.json"
    strong_rules.write_text(json.dumps([["", "Answer: 2035"]]))
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "task.eval_limit=30", "route.calibration_limit=30",
                             "route.routers=[learned, confidence]", "route.strong_share=0.3",
                             f"models.weak.spec=mock/rules:{rules}", f"models.strong.spec=mock/rules:{strong_rules}",
                             "eval.bootstrap_samples=50"])
    write_feedback(feedback_path(cfg), demo_train(30))
    train_router(cfg)
    systems = [System("weak", "weak_only"), System("collab", "collaborate", "cot"), System("route", "route")]
    m = run_eval(cfg, tmp_path / "run" / "eval", systems)
    route = m.systems["route"]
    assert route.strategy == "route"
    from cowest.core.layout import EvalDir
    from cowest.core.traces import read_traces

    traces = read_traces(EvalDir(tmp_path / "run" / "eval").trace("route", 0))
    decisions = [t.metadata["route"]["decision"] for t in traces]
    unsure = ["unsure" in t.steps[0].output.text for t in traces]
    assert all(d == "strong" for d, u in zip(decisions, unsure) if u)  # the learned router sends every sum on
    assert route.usage["strong"].calls == decisions.count("strong")  # sweep calls are not its usage
    costs = json.loads((tmp_path / "run" / "eval" / "costs.json").read_text())
    assert costs["systems"]["route"]["cost_usd"] == 0.0  # mock models: local, priced 0
    report = render_report([tmp_path / "run"]).read_text()
    assert "## Routing: quality versus strong-call share" in report and "learned (decides)" in report
    assert "always-weak" in report and "always-collaborate" in report and "## Cost" in report
    assert (tmp_path / "run" / "routing_route.png").exists()
    assert "Calibration" in report and "30%" in report


def test_curve_and_kept_quality_by_hand() -> None:
    from cowest.routing.curve import curve, quality_at

    scores = np.array([0.1, 0.2, 0.2, 0.9])
    weak = np.array([0.0, 1.0, 0.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 0.0])
    shares, quality = curve(scores, weak, strong)
    # 0 sent: 2/4; the 0.1 question: 3/4; both 0.2 questions move together: 4/4; all: 3/4
    assert shares.tolist() == [0.0, 0.25, 0.75, 1.0] and quality.tolist() == [0.5, 0.75, 1.0, 0.75]
    assert quality_at(shares, quality, 0.5) == pytest.approx(0.875)


def test_oracle_bounds_every_router_by_hand() -> None:
    from cowest.routing.curve import curve, oracle, quality_at

    weak = np.array([0.0, 1.0, 0.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 0.0])
    shares, quality = oracle(weak, strong)
    # gains 1, 1, 0, -1 in that order: 2/4, 3/4, 4/4, 4/4, 3/4
    assert shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and quality.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    rng = np.random.default_rng(0)
    for _ in range(20):  # no router's curve rises above it
        s, q = curve(rng.random(4), weak, strong)
        assert all(quality_at(shares, quality, x) >= y - 1e-12 for x, y in zip(s, q))


# ---- prices -----------------------------------------------------------------------------------------------------


def test_price_table_naming_an_unknown_model_is_refused_by_key() -> None:
    with pytest.raises(ConfigError, match=r"'prices'.*'openai/gpt-5' is not a model of this config"):
        load_config(None, ["prices={openai/gpt-5: {input: 1.0, output: 2.0}}"])
    with pytest.raises(ConfigError, match=r"route.strong_share.*between 0 and 1.*route.strong_share=0.3"):
        load_config(None, ["route.strong_share=0"])


def test_costs_per_role_and_per_correct_answer_by_hand() -> None:
    from cowest.pipeline.costs import eval_costs, feedback_costs
    from cowest.pipeline.feedback import FeedbackRecord

    cfg = load_config(None, ["models.strong.spec=openai/gpt-4o",
                             "prices={openai/gpt-4o: {input: 2.5, output: 10.0}}"])
    metrics = {"headline": "accuracy", "n_samples": 10, "seeds": [0], "systems": {"s": {
        "weak": "embedded/smollm2-135m", "strong": "openai/gpt-4o", "metrics": {"accuracy": {"value": 0.5}},
        "usage": {"weak": {"prompt_tokens": 1000, "completion_tokens": 500},
                  "strong": {"prompt_tokens": 200_000, "completion_tokens": 10_000}}}}}
    s = eval_costs(cfg, metrics)["systems"]["s"]
    assert s["roles"]["weak"]["cost_usd"] == 0.0
    assert s["roles"]["strong"]["cost_usd"] == pytest.approx(0.2 * 2.5 + 0.01 * 10)  # $0.60
    assert s["cost_per_correct"] == pytest.approx(0.6 / 5) and s["cost_per_question"] == pytest.approx(0.06)
    unpriced = load_config(None, ["models.strong.spec=openai/gpt-4o"])
    assert eval_costs(unpriced, metrics)["systems"]["s"]["cost_usd"] is None
    rec = FeedbackRecord(question_id="q", prompt=[], solo="", solo_prediction=None, solo_score=1.0, drafts=[],
                         tokens={"strong": 1_000_000}, completion_tokens={"strong": 200_000})
    fb = feedback_costs(cfg, [rec], pairs=4)
    assert fb["roles"]["strong"]["cost_usd"] == pytest.approx(0.8 * 2.5 + 0.2 * 10) and fb["cost_per_pair"] == 1.0
