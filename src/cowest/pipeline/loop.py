"""The whole CoWeST loop as stages over one run directory: sft -> feedback -> align (x rounds) -> eval -> report.

Each stage reads the files of the stages before it, skips itself when its outputs exist for the same config, and
resumes after a crash (feedback appends per question; eval appends per sample). The run directory's paths are
`cowest.core.layout.RunLayout`'s.

One process at a time: a command holds the run directory (`locked_run`) and each stage its own folder
(`Stage.locked`); a second process stops at once, naming the first. config.yaml is written only once a stage has
accepted the config (refusals leave the previous one in place); `run` checks every stage's inputs first
(cowest.pipeline.preflight).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from cowest.core.config import ExperimentConfig, ModelConfig, dump_config
from cowest.core.errors import CowestError
from cowest.core.progress import log
from cowest.core.layout import EvalDir, RunLayout
from cowest.core.results import Metrics
from cowest.pipeline.stage_inputs import PAIR_SELECTION, AlignInputs, EvalInputs, FeedbackInputs, SFTInputs
from cowest.pipeline.stages import STAGES, Stage, exclusive, read_bookkeeping, stage, write_atomic
from cowest.core.system_id import SystemId

if TYPE_CHECKING:
    from cowest.core.system_id import System
    from cowest.core.records import Sample
    from cowest.core.selection import Selection
    from cowest.pipeline.feedback import FeedbackRecord


def run_dir(cfg: ExperimentConfig) -> Path:
    """The run directory, created. Its config.yaml is written by `entered` once a stage has accepted the config."""
    path = Path(cfg.run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file, a device (/dev/null), a symlink loop, a read-only or full disk
        what = "is not a folder" if isinstance(e, FileExistsError) else f"cannot be created ({e.strerror or e})"
        raise CowestError(f"run_dir {path}: {what}; set run_dir to a folder this user can write") from None
    return path


@contextmanager
def locked_run(cfg: ExperimentConfig) -> Iterator[Path]:
    """The run directory, held by this process for the block: a second process on it stops at once. vLLM servers
    (`engine: vllm`) started in the block serve every stage in it and stop at its end (logs in `<run dir>/vllm`)."""
    from cowest.models.vllm_server import serving

    path = run_dir(cfg)
    with exclusive(RunLayout(path).lock, f"run directory {path}"), serving(path / "vllm"):
        yield path


@contextmanager
def entered(cfg: ExperimentConfig, st: Stage, force: bool, record: bool = True) -> Iterator[bool]:
    """Hold the stage's lock for the block and yield whether it must run (False: done for the same inputs; a
    different config is refused). The run's config.yaml is saved only after that check passed, and only when `cfg`
    is the run's own (`record`), not a variant made for a side evaluation such as the recall check; versions.json
    (cowest.pipeline.provenance) whenever a stage starts."""
    from cowest.pipeline.provenance import provenance_json

    with st.locked():
        runs = st.begin(force)
        run = RunLayout(run_dir(cfg))
        if record:
            write_atomic(run.config, dump_config(cfg))
        write_atomic(run.versions, provenance_json())
        yield runs


def cache_dir(cfg: ExperimentConfig) -> Path:
    return RunLayout.of(cfg).cache(cfg.cache_dir)


def weak_model(cfg: ExperimentConfig, adapter: Path | None) -> ModelConfig:
    """The weak model with a trained adapter, served by transformers (llama.cpp cannot load our PEFT adapters)."""
    from cowest.models.hf_loading import resolve_source

    if adapter is None or cfg.models.weak.is_remote:
        # An OpenAI-compatible weak server (vLLM with --lora-modules) applies the adapter the spec names itself.
        return cfg.models.weak
    return cfg.models.weak.model_copy(update={"spec": f"hf/{resolve_source(cfg.models.weak.spec)}", "adapter": str(adapter)})


def draft_adapter(cfg: ExperimentConfig, rnd: int) -> Path:
    """Round 1 drafts with the SFT model; round r > 1 with round r-1's aligned model (align.method)."""
    run = RunLayout.of(cfg)
    return run.sft_adapter if rnd == 1 else run.aligned_adapter(rnd - 1, cfg.align.method)


def drafter(cfg: ExperimentConfig, rnd: int) -> ModelConfig:
    return weak_model(cfg, draft_adapter(cfg, rnd))


def require_upstream(paths: list[Path], how: str) -> None:
    """Refuse a stage whose upstream outputs are missing before it records anything: its inputs would name them
    missing, and once they exist the stage would be refused as holding outputs of another config."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CowestError(f"{', '.join(missing)} does not exist: {how}")


def adapter_outputs(adapter: Path) -> tuple[str, ...]:
    """What a training stage writes into its folder: the adapter and its staging folder (train.common.staging_dir)."""
    return adapter.name, f"{adapter.name}.partial"


def sft_stage(cfg: ExperimentConfig) -> Stage:
    # Reads only the task's data and the base model.
    from cowest.pipeline.rationales import RATIONALES_FILE, RATIONALES_STATS

    run = RunLayout.of(cfg)
    return stage(cfg, "sft", run.sft_dir, inputs=SFTInputs.of(cfg),
                 outputs=(*adapter_outputs(run.sft_adapter), RATIONALES_FILE, RATIONALES_STATS))


def do_sft(cfg: ExperimentConfig, force: bool = False) -> Path:
    from cowest.tasks.base import load_samples

    st, run = sft_stage(cfg), RunLayout.of(cfg)
    with entered(cfg, st, force) as runs:
        if not runs:
            log("sft: done already, skipped")
            return run.sft_adapter
        from cowest.pipeline.rationales import with_rationales
        from cowest.pipeline.train.sft import drafted_samples, run_sft

        samples = load_samples(cfg.task, cfg.task.train_split, cfg.task.train_limit)
        samples = with_rationales(cfg, samples, run.sft_dir, cache_dir(cfg))
        rows = drafted_samples(samples, cfg)
        drafted, distinct = len(rows), len({s.id for s in rows})  # sft.balance=up repeats rows
        left_out = f"; {len(samples) - distinct} without a rationale left out" if distinct < len(samples) else ""
        evened = f"; {drafted} draft rows, gold answers evened out ({cfg.sft.balance})" if cfg.sft.balance != "none" else ""
        log(f"sft: {len(samples)} samples of {cfg.task.name}/{cfg.task.train_split}{left_out}{evened}")
        path = run_sft(cfg, samples, run.sft_adapter)
        st.finish({"samples": len(samples), "draft_rows": drafted, "adapter": str(path)})
        return path


def feedback_stage(cfg: ExperimentConfig, rnd: int) -> Stage:
    from cowest.core.layout import COSTS_FILE, FAULTS_FILE, FEEDBACK_FILE, PAIRS_FILE, PAIRS_PLOT, PAIRS_STATS

    # Rounds after the first draft with the previous round's aligned model, so they depend on the align keys too.
    return stage(cfg, f"feedback{rnd}", RunLayout.of(cfg).feedback_dir(rnd), inputs=FeedbackInputs.of(cfg, rnd),
                 upstream=[draft_adapter(cfg, rnd)], derived=PAIR_SELECTION,
                 outputs=(FEEDBACK_FILE, PAIRS_FILE, f"{PAIRS_FILE}.tmp", PAIRS_STATS, PAIRS_PLOT,  # pairs.write_pairs
                          FAULTS_FILE, f"{FAULTS_FILE}.tmp", COSTS_FILE, f"{COSTS_FILE}.tmp"))  # faults.FaultLog


def do_feedback(cfg: ExperimentConfig, rnd: int = 1, force: bool = False) -> dict[str, Any]:
    if not cfg.models.weak.is_remote:  # a weak server applies its adapter itself
        require_upstream([draft_adapter(cfg, rnd)],
                         "run `cowest sft` first" if rnd == 1 else f"run `cowest align --round {rnd - 1}` first")
    st = feedback_stage(cfg, rnd)
    with entered(cfg, st, force) as runs:
        if not runs:
            if st.rederive:
                return _select_pairs_again(cfg, rnd, st)
            log(f"feedback round {rnd}: done already, skipped")
            return st.summary()
        return _feedback(cfg, rnd, st)


PAIR_SUMMARY = ("questions", "pairs", "positive_share", "questions_without_pair", "unscored")
"""The pair statistics a feedback stage's done.json holds."""


def _pair_outputs(cfg: ExperimentConfig, rnd: int, out: Path, records: list["FeedbackRecord"], conversational: bool) -> dict[str, Any]:
    """pairs.jsonl with its statistics and plot, and costs.json, from the stage's scored questions."""
    from cowest.pipeline.costs import feedback_costs, write_costs
    from cowest.pipeline.pairs import write_pairs

    stats = write_pairs(records, cfg.feedback, out, conversational=conversational)
    write_costs(out, feedback_costs(cfg, records, stats["pairs"], drafter(cfg, rnd).spec))
    return stats


def _select_pairs_again(cfg: ExperimentConfig, rnd: int, st: Stage) -> dict[str, Any]:
    """A finished feedback stage whose config changed only in how pairs are selected: the pairs are selected again
    from the scored drafts it holds (seconds); nothing is generated."""
    from cowest.core.layout import FEEDBACK_FILE, PAIRS_STATS
    from cowest.pipeline.feedback import load_done

    records = list(load_done(st.path / FEEDBACK_FILE).values())
    old = read_bookkeeping(st.path / PAIRS_STATS)
    # pairs_stats.json of older versions has no "conversational": every weak model they ran had a chat template
    conversational = old.get("conversational", True) if isinstance(old, dict) else True
    stats = _pair_outputs(cfg, rnd, st.path, records, conversational)
    st.amend({k: stats[k] for k in PAIR_SUMMARY})
    log(f"feedback round {rnd}: {', '.join(st.rederive)} changed: {stats['pairs']} pairs selected again from the "
        f"{stats['questions']} scored questions, nothing generated")
    return stats


def questions_per_chunk(cfg: ExperimentConfig) -> int:
    """Feedback questions per chunk (and per resume point). Each question sends K + 1 strong prompts (its solo
    answer and K refinements), so eval's chunk of prompts is divided by K + 1: a chunk of eval's size counted in
    questions made a 200-question feedback one chunk, with nothing written for about 50 minutes on 2 cores and an
    interruption restarting it from its first question."""
    from cowest.pipeline.evaluate import chunk_size

    return max(1, chunk_size(cfg) // (cfg.feedback.k + 1))


def feedback_questions(cfg: ExperimentConfig) -> list["Sample"]:
    """The questions the feedback stage asks, in its order: a seeded subsample of the train rows SFT saw, or of
    `feedback.split`."""
    from cowest.tasks.base import load_samples, subsample

    return subsample(load_samples(cfg.task, *cfg.feedback_split), cfg.feedback.questions, cfg.task.seed)


def _feedback(cfg: ExperimentConfig, rnd: int, st: Stage) -> dict[str, Any]:
    from cowest.core.faults import FailureBudget, TolerantBackend
    from cowest.pipeline.feedback import load_done, run_feedback
    from cowest.pipeline.pairs import few_pairs_warning
    from cowest.models.base import load_backend
    from cowest.models.cache import open_backend
    from cowest.core.progress import Progress

    out = st.path
    samples = feedback_questions(cfg)
    weak = TolerantBackend(load_backend(drafter(cfg, rnd)))
    strong = TolerantBackend(open_backend(cfg.models.strong, "strong", cache_dir(cfg)))
    judge = None
    if cfg.feedback.evaluator != "metric":
        judge = TolerantBackend(open_backend(cfg.models.judge, "judge", cache_dir(cfg))) if cfg.models.judge else strong
    from cowest.models.calibrate import engine_record

    bar = Progress(len(samples), f"feedback round {rnd}")
    budget = FailureBudget(f"feedback round {rnd}", len(samples), cfg.max_failed_share)
    try:
        path = run_feedback(cfg, samples, out, weak=weak, strong=strong, judge=judge, progress=bar,
                            chunk_size=questions_per_chunk(cfg), budget=budget)
    finally:
        bar.close()
        engines = {"weak": engine_record(weak), "strong": engine_record(strong)}  # after: with the decode stats
        for b in {id(x): x for x in (weak, strong, judge) if x is not None}.values():
            b.close()
    ids = {s.id for s in samples}
    records = [r for r in load_done(path).values() if r.question_id in ids]
    stats = _pair_outputs(cfg, rnd, out, records, weak.has_chat_template)
    work_s = round(sum(r.wall_s for r in records), 1)  # all attempts, where done.json's wall_s is the last one's
    if budget.failed:  # within the budget: pairs from what finished, but the stage stays open for a rerun
        log(f"feedback round {rnd}: {len(budget.failed)} questions failed (counted in pairs_stats.json); "
            "rerun to retry them")
    else:
        st.finish({**{k: stats[k] for k in PAIR_SUMMARY}, "work_s": work_s, "engines": engines})
    log(f"feedback round {rnd}: {stats['pairs']} pairs from {stats['questions']} questions "
        f"(positive share {stats['positive_share']:.0%})")
    if (line := few_pairs_warning(stats, cfg.feedback)) is not None:
        log(f"warning: feedback round {rnd}: {line}")
    return stats


def do_align(cfg: ExperimentConfig, rnd: int = 1, method: str | None = None, force: bool = False) -> Path:
    from cowest.models.hf_loading import resolve_source

    method = method or cfg.align.method
    run = RunLayout.of(cfg)
    out, pairs = run.aligned_adapter(rnd, method), run.pairs(rnd)
    if not pairs.exists():
        raise CowestError(f"{pairs} does not exist: run `cowest feedback` first")
    reference = align_reference(cfg, rnd)
    st = align_stage(cfg, rnd, method)
    with entered(cfg, st, force) as runs:
        if not runs:
            log(f"align round {rnd} ({method}): done already, skipped")
            return out
        source = resolve_source(cfg.models.weak.spec)
        if method == "dpo":
            from cowest.pipeline.train.dpo import run_dpo as train
        else:
            from cowest.pipeline.train.dpo import run_sft_positive as train
        path = train(cfg, pairs, out, weak_source=source, reference_adapter=str(reference))
        st.finish({"adapter": str(path), "method": method})
        return path


def align_reference(cfg: ExperimentConfig, rnd: int) -> Path:
    """The new LoRA starts from its frozen reference: the SFT model, or (align.reference=previous, rounds > 1) the
    previous round's aligned model. Either way the pairs come from the current drafter's samples."""
    run = RunLayout.of(cfg)
    return run.sft_adapter if cfg.align.reference == "sft" or rnd == 1 else run.aligned_adapter(rnd - 1, cfg.align.method)


def align_stage(cfg: ExperimentConfig, rnd: int, method: str) -> Stage:
    run = RunLayout.of(cfg)
    out = run.aligned_adapter(rnd, method)
    return stage(cfg, f"align{rnd}-{method}", out.parent, inputs=AlignInputs.of(cfg, method),
                 upstream=[run.pairs(rnd), align_reference(cfg, rnd)],
                 outputs=adapter_outputs(out))


def eval_systems(cfg: ExperimentConfig) -> list["System"]:
    """Weak SFT alone, strong alone, collaboration with the SFT weak model and with each round's aligned model
    (align.method), the sft_positive control when enabled; then any other `eval.strategies` (super_icl,
    self_refine ...) with the SFT weak model, and the other `collaboration.eval_draft_formats` with the SFT and the
    last aligned weak model."""
    ids = [SystemId.weak_sft(), SystemId.strong(), SystemId.collab()]
    for r in range(1, cfg.rounds + 1):
        ids.append(SystemId.collab("aligned", r))
        if cfg.align.sft_positive_control:
            ids.append(SystemId.collab("sft_positive", r))
    for other in cfg.collaboration.formats_evaluated:
        if "collaborate" in cfg.eval.strategies and other != cfg.collaboration.draft_format:
            ids += [SystemId.collab("sft", None, other), SystemId.collab("aligned", cfg.rounds, other)]
    ids += [SystemId(strat) for strat in cfg.eval.strategies if strat not in ("weak_only", "strong_only", "collaborate")]
    return [loop_system(cfg, sid) for sid in ids]


def loop_system(cfg: ExperimentConfig, sid: SystemId) -> "System":
    """The evaluated system `sid` names: its strategy, draft format and weak model (with its adapter)."""
    from cowest.core.system_id import System

    run, weak = RunLayout.of(cfg), None
    if sid.weak == "sft":
        weak = weak_model(cfg, run.sft_adapter)
    elif sid.weak is not None and sid.round is not None:
        method = cfg.align.method if sid.weak == "aligned" else "sft_positive"
        weak = weak_model(cfg, run.aligned_adapter(sid.round, method))
    uses_format = sid.strategy not in ("weak_only", "strong_only")
    fmt = (sid.draft_format or cfg.collaboration.draft_format) if uses_format else None
    return System(sid.name, sid.strategy, fmt, weak)


def do_eval(cfg: ExperimentConfig, force: bool = False, systems: list["System"] | None = None,
            out: Path | None = None, record: bool = True) -> Metrics:
    """Evaluate `systems` (default: cfg.eval.strategies x draft formats) into `out` (default run_dir/eval),
    refusing traces of a different config and skipping a finished evaluation of the same one. `record`: `cfg` is
    the run's own config (saved as its config.yaml)."""
    from cowest.pipeline.evaluate import check_systems, default_systems, run_eval

    out = out or RunLayout.of(cfg).eval.path
    systems = systems or default_systems(cfg)
    check_systems(cfg, systems)  # bad names fail before anything is written
    require_upstream(eval_adapters(systems), "train the adapters first (`cowest run`, or the sft and align stages)")
    st = eval_stage(cfg, out, systems)
    with entered(cfg, st, force, record) as runs:
        if not runs:
            log("eval: done already, skipped")
            return Metrics.read(EvalDir(out).metrics)
        metrics = run_eval(cfg, out, systems)
        failed = metrics.faults.get("failed_samples", 0)
        if failed:  # within the budget: metrics over what finished, but the stage stays open for a rerun
            log(f"eval: {failed} sample runs failed (counted in metrics.json); rerun to retry them")
        else:  # work_s: the systems' summed shares of wall time, over all attempts
            st.finish({"systems": list(metrics.systems), "work_s": round(metrics.work_s, 1)})
    from cowest.pipeline.summary import cut_warnings

    for line in cut_warnings(metrics, cfg):
        log(f"warning: {line}")
    return metrics


def eval_stage(cfg: ExperimentConfig, out: Path, systems: list["System"]) -> Stage:
    from cowest.core.layout import CONFIG_FILE, FAULTS_FILE, METRICS_FILE, TRACES_DIR

    return stage(cfg, "eval", out, inputs=EvalInputs.of(cfg), upstream=eval_adapters(systems),
                 outputs=(TRACES_DIR, METRICS_FILE, f"{METRICS_FILE}.tmp", CONFIG_FILE, FAULTS_FILE,
                          f"{FAULTS_FILE}.tmp"),
                 owned={TRACES_DIR: "*.seed*.jsonl"})  # EvalDir.trace's names; a user's own files there stay


def eval_adapters(systems: list["System"]) -> list[Path]:
    return sorted({Path(s.weak.adapter) for s in systems if s.weak is not None and s.weak.adapter})


def planned_stages(cfg: ExperimentConfig) -> list[tuple[str, Stage]]:
    """Every stage `run_all` enters, in order, each with the `--force` name that redoes it."""
    out = [("sft", sft_stage(cfg))]
    for rnd in range(1, cfg.rounds + 1):
        out.append(("feedback", feedback_stage(cfg, rnd)))
        out += [("align", align_stage(cfg, rnd, m)) for m in align_methods(cfg)]
    out.append(("eval", eval_stage(cfg, RunLayout.of(cfg).eval.path, eval_systems(cfg))))
    return out


def align_methods(cfg: ExperimentConfig) -> list[str]:
    """align.method, and the sft_positive control when enabled."""
    control = cfg.align.sft_positive_control and cfg.align.method != "sft_positive"
    return [cfg.align.method, "sft_positive"] if control else [cfg.align.method]


def do_recall(cfg: ExperimentConfig, force: bool = False) -> Metrics | None:
    """The SFT weak model alone on `eval.recall_split` (training facts): how much of what SFT taught it recalls,
    asked for a direct answer (`weak_sft`) and for its draft (`weak_draft_sft`, the form the strong model reads);
    with collaboration.weak_answer=draft the two are one, and only the draft is asked."""
    if cfg.eval.recall_split is None:
        return None
    rcfg = cfg.model_copy(deep=True)
    rcfg.task.eval_split, rcfg.task.eval_limit = cfg.eval.recall_split, None
    asked = [SystemId.weak_draft()] if cfg.collaboration.weak_answer == "draft" else [SystemId.weak_sft(),
                                                                                      SystemId.weak_draft()]
    systems = [loop_system(cfg, sid) for sid in asked]
    return do_eval(rcfg, force, systems, out=RunLayout.of(cfg).recall.path, record=False)


def do_select(cfg: ExperimentConfig, rnd: int, force: bool = False) -> "Selection | None":
    """Alignment never silently hurts: with `align.select_split` set, round `rnd`'s aligned weak model and the model
    it started from (its feedback's drafter) both draft for the strong model on that split (collaboration, greedy;
    an unchanged draft reuses its cached refinement), and the paired difference decides which the run keeps as its
    best adapter (`cowest.core.selection`: resolved below keeps the start). None when unset."""
    from cowest.core.selection import SELECTION_FILE, Selection, verdict

    split = cfg.align.select_split
    if split is None:
        return None
    run = RunLayout.of(cfg)
    scfg = cfg.model_copy(deep=True)
    scfg.task.eval_split = split
    start = SystemId.collab() if rnd == 1 else SystemId.collab("aligned", rnd - 1)
    aligned = SystemId.collab("aligned", rnd)
    out = run.select_dir(rnd)
    metrics = do_eval(scfg, force, [loop_system(cfg, start), loop_system(cfg, aligned)], out=out.path, record=False)
    d = metrics.diff(aligned.name, start.name)
    assert d is not None, "the summary pairs every two systems"
    start_path, aligned_path = draft_adapter(cfg, rnd), run.aligned_adapter(rnd, cfg.align.method)
    v = verdict(d.lo, d.hi)
    sel = Selection(round=rnd, split=split, n=metrics.n_samples, metric=metrics.headline, start=str(start_path),
                    aligned=str(aligned_path), diff=d.value, ci=(d.lo, d.hi), verdict=v,
                    best=str(start_path if v == "below" else aligned_path))
    write_atomic(out.path / SELECTION_FILE, sel.model_dump_json(indent=2) + "\n")
    log(f"{'warning: ' if v == 'below' else ''}alignment check: {sel.why}")
    return sel


def do_report(cfg: ExperimentConfig) -> Path:
    from cowest.pipeline.report import render_report

    return render_report([RunLayout.of(cfg).root])


def run_all(cfg: ExperimentConfig, force: set[str] | None = None, evaluate: bool = True) -> Path:
    """sft -> (feedback -> align) x rounds -> eval -> report. `force` redoes the named stages (and nothing else);
    `evaluate=False` stops after alignment (a benchmark that evaluates other questions itself)."""
    from cowest.pipeline.preflight import check_run

    force = force or set()
    unknown = force - set(STAGES)
    if unknown:
        raise CowestError(f"unknown stage(s) {sorted(unknown)}; valid: {', '.join(STAGES)}")
    with locked_run(cfg):
        # every stage's inputs, before the first one starts
        stages = [(n, st) for n, st in planned_stages(cfg) if evaluate or n != "eval"]
        check_run(cfg, stages, force, eval_systems(cfg) if evaluate else [])
        do_sft(cfg, "sft" in force)
        for rnd in range(1, cfg.rounds + 1):
            do_feedback(cfg, rnd, "feedback" in force)
            for method in align_methods(cfg):
                do_align(cfg, rnd, method, "align" in force)
            do_select(cfg, rnd, "align" in force)
        if not evaluate:
            return RunLayout.of(cfg).root
        from cowest.routing.learned import train_if_routed

        train_if_routed(cfg, "eval" in force)
        do_eval(cfg, "eval" in force, eval_systems(cfg))
        do_recall(cfg, "eval" in force)
        return do_report(cfg)


def summary_table(cfg: ExperimentConfig) -> str:
    """A short results table from eval/metrics.json: each system's headline metric with its CI, and the
    aligned-vs-SFT collaboration difference."""
    run = RunLayout.of(cfg)
    m = Metrics.read(run.eval.metrics)
    h = m.headline
    lines = [f"{'system':28s} {h:>8s}  95% CI", "-" * 52]
    for name, s in m.systems.items():
        v = s.metrics[h]
        lines.append(f"{name:28s} {v.value:8.3f}  [{v.ci[0]:.3f}, {v.ci[1]:.3f}]")
    sft = SystemId.collab().name
    for name in m.systems:
        sid = SystemId.parse(name)
        if sid is not None and sid.strategy == "collaborate" and sid.weak == "aligned" and (d := m.diff(name, sft)):
            lines.append(f"{name} - {sft}: {d}")
    from cowest.core.selection import read_selection

    for rnd in range(1, cfg.rounds + 1):
        if (sel := read_selection(run, rnd)) is not None:
            lines.append(f"alignment check: {sel.why}")
    if run.recall.metrics.exists():
        r = Metrics.read(run.recall.metrics)
        for sid, how in ((SystemId.weak_sft(), "answering"), (SystemId.weak_draft(), "drafting")):
            if sid.name in r.systems:
                v = r.value(sid.name)
                lines.append(f"weak SFT recall of its training facts, {how} ({cfg.eval.recall_split}, "
                             f"n={r.n_samples}): {v.value:.3f} [{v.ci[0]:.3f}, {v.ci[1]:.3f}]")
    return "\n".join(lines)
