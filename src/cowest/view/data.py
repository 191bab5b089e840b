"""What `cowest view` shows, as named JSON resources read from run directories through `RunLayout` and the
project's record types. The server answers one resource per request and the static export writes each to a file,
so both show the same page.

Resources (`RESOURCE` checks a name before anything is read): `meta` (every run's summary and the comparisons),
`r<i>-index` (one compact row per evaluated question: outcomes per system), `r<i>-q<p>` (page p of the questions'
whole chains, `PAGE` questions each, read by byte offset: nothing else of the trace files is held), `r<i>-fb`
(one row per feedback question: E(z), each draft's Δ and pair status, or why no pair), `r<i>-fbq<p>` (page p of the
feedback records in full), `r<i>-aligned` (the dev drafts alignment changed, before and after)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cowest.core.errors import CowestError
from cowest.core.layout import CONFIG_FILE, PAIRS_STATS, RunLayout
from cowest.core.records import Trace

PAGE = 50
"""Questions (or feedback records) per page resource."""
RESOURCE = re.compile(r"meta|r(\d{1,3})-(index|fb|aligned|q(\d{1,6})|fbq(\d{1,6}))")
"""Every resource name the page may ask for; anything else (`../`, a path) is refused before a file is opened."""
_ID = re.compile(rb'"(?:sample_id|question_id)":"((?:[^"\\]|\\.)*)"')


class ViewError(CowestError):
    """A folder that cannot be shown (not a run directory, another layout): one line on the console or the page."""


def outcome(score: float | None, prediction: str | None) -> str:
    """`R` right, `W` wrong, `U` unreadable (no answer could be extracted), `?` no per-sample score (macro-F1)."""
    if prediction is None:
        return "U"
    if score is None:
        return "?"
    return "R" if score >= 1.0 else "W"


def _offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Each complete line's record id -> (byte offset, length); a torn last line (a run still going) is left out."""
    out: dict[str, tuple[int, int]] = {}
    pos = 0
    with open(path, "rb") as f:
        for line in f:
            m = _ID.search(line[:400])
            if line.endswith(b"\n") and m:
                out[json.loads(b'"' + m.group(1) + b'"')] = (pos, len(line))
            pos += len(line)
    return out


def _read_at(path: Path, spans: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for off, n in spans:
            f.seek(off)
            yield json.loads(f.read(n))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class RunView:
    """One run directory, read lazily: a resource reads what it shows, and the trace indexes are built once."""

    i: int
    root: Path
    _index: dict[str, Any] | None = field(default=None, repr=False)
    _traces: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict, repr=False)
    _feedback: list[tuple[int, str, tuple[int, int]]] | None = field(default=None, repr=False)
    _memo: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def _cached(self, key: str, stamp: Any, make: Any) -> Any:
        """`make()`, remembered until `stamp` (the files' modification times) changes: a run still going is
        read again when it has written more."""
        hit = self._memo.get(key)
        if hit is None or hit[0] != stamp:
            hit = self._memo[key] = (stamp, make())
        return hit[1]

    @classmethod
    def open(cls, i: int, path: str | Path) -> "RunView":
        root = Path(path)
        if not root.is_dir():
            raise ViewError(f"{root}: not a folder; give a run directory (the run_dir of a config, e.g. runs/demo)")
        layout = RunLayout(root)
        if not (layout.config.is_file() or layout.metrics_file() is not None):
            raise ViewError(f"{root}: not a run directory (no {CONFIG_FILE} and no metrics.json); give the run_dir "
                            "of a config, e.g. runs/demo")
        mpath = layout.metrics_file()
        if mpath is not None:
            raw = _json(mpath)
            version = raw.get("version", 1) if isinstance(raw, dict) else None
            from cowest.core.results import METRICS_VERSION

            if version is None:
                raise ViewError(f"{mpath}: torn or not JSON (is the evaluation still running?); wait for it or "
                                "rerun `cowest eval`")
            if version > METRICS_VERSION:
                raise ViewError(f"{mpath}: written by a newer cowest (metrics version {version}, this one reads "
                                f"{METRICS_VERSION}); upgrade cowest")
        return cls(i, root)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    def metrics(self) -> Any:
        from cowest.core.results import Metrics

        mpath = self.layout.metrics_file()
        if mpath is None:
            return None
        return self._cached("metrics", _mtime(mpath), lambda: Metrics.read(mpath))

    def config(self) -> Any:
        """The evaluation's resolved config (else the run's); None when neither loads (shown as a note)."""
        from cowest.core.config import load_config

        def load() -> Any:
            for path in (self.layout.eval.config, self.layout.config):
                if path.is_file():
                    try:
                        return load_config(path)
                    except CowestError:
                        return None
            return None

        return self._cached("config", (_mtime(self.layout.eval.config), _mtime(self.layout.config)), load)

    # -- the run ---------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        m, cfg = self.metrics(), self.config()
        out: dict[str, Any] = {"i": self.i, "path": str(self.root), "name": self.root.resolve().name,
                               "config": _text(self.layout.config), "versions": _json(self.layout.versions),
                               "stages": self._stages(), "plots": [p.name for p in self._plots()],
                               "warnings": self._warnings(m, cfg), "dpo": self._dpo(), "selection": self._selection()}
        if m is not None:
            out.update(task=m.task, n=m.n_samples, headline=m.headline, metrics=m.metrics,
                       systems={name: {"strategy": s.strategy, "draft_format": s.draft_format,
                                       "values": {k: [v.value, v.ci[0], v.ci[1]] for k, v in s.metrics.items()},
                                       "extraction_failures": s.extraction_failures.total}
                                for name, s in m.systems.items()},
                       paired=[p.model_dump() for p in m.paired])
        out["feedback"] = [{"round": r, **(_json(p) or {})} for r, p in self.layout.feedback_stats()]
        return out

    def _stages(self) -> list[dict[str, Any]]:
        rows = []
        for done in sorted(self.root.glob("*/done.json")) + sorted(self.root.glob("round*/*/done.json")):
            d = _json(done) or {}
            rows.append({"stage": done.parent.relative_to(self.root).as_posix(), "wall_s": d.get("wall_s"),
                         "finished": d.get("finished"), "attempts": d.get("attempts"),
                         "engines": {role: (e.get("choice") or {}) for role, e in (d.get("engines") or {}).items()
                                     if isinstance(e, dict)}})
        engines = _json(self.layout.eval.engines) or {}
        if engines:
            rows.append({"stage": "eval (engines)", "engines": {r: (e.get("choice") or {}) for r, e in engines.items()
                                                                 if isinstance(e, dict)}})
        return rows

    def _plots(self) -> list[Path]:
        return sorted(self.root.glob("*.png")) + [p for _, p in self.layout.pair_plots()]

    def plot(self, name: str) -> Path | None:
        """A plot the run has, by file name; None for any other name (the page never names a path)."""
        return next((p for p in self._plots() if p.name == name), None)

    def _warnings(self, m: Any, cfg: Any) -> list[str]:
        from cowest.pipeline.pairs import few_pairs_warning
        from cowest.pipeline.report import bare_chosen_warning, logp_drop_warnings
        from cowest.pipeline.summary import cut_warnings

        out: list[str] = []
        if m is not None and cfg is not None:
            out += cut_warnings(m, cfg)
        for r, path in self.layout.feedback_stats():
            stats = _json(path) or {}
            if cfg is not None and "questions_without_pair" in stats:
                out += [w for w in [few_pairs_warning(stats, cfg.feedback)] if w]
            out += [w.removeprefix("- ") for w in [bare_chosen_warning(f"round{r}", stats)] if w]
        out += logp_drop_warnings(self.root)
        sel = self._selection()
        out += [s["why"] for s in sel if s["verdict"] == "below"]
        if m is not None and m.failed_samples:
            out.append(f"{m.failed_samples} samples failed for good and are left out (rerun to retry them)")
        return [w.replace("**", "") for w in out]

    def _dpo(self) -> list[dict[str, Any]]:
        from cowest.pipeline.report import DIAGNOSTIC_KEYS, dpo_log

        out = []
        for adapter in self.layout.train_logs():
            rows = dpo_log(adapter)
            if rows:
                out.append({"adapter": f"{adapter.parent.parent.name}/{adapter.parent.name}",
                            "steps": [{"step": r["step"], **{k: r[k] for k in DIAGNOSTIC_KEYS}} for r in rows]})
        return out

    def _selection(self) -> list[dict[str, Any]]:
        from cowest.core.selection import read_selection

        out = []
        for r in self.layout.rounds_on_disk():
            try:
                sel = read_selection(self.layout, r)
            except ValueError:
                continue
            if sel is not None:
                out.append({**sel.model_dump(), "why": sel.why})
        return out

    # -- the questions --------------------------------------------------------------------------------------
    def _trace_files(self, m: Any) -> dict[str, Path]:
        seed = (m.seeds or [0])[0]
        return {name: self.layout.eval.trace(name, seed) for name in m.systems}

    def _trace_offsets(self, system: str, path: Path) -> dict[str, tuple[int, int]]:
        if system not in self._traces:
            self._traces[system] = _offsets(path) if path.is_file() else {}
        return self._traces[system]

    def index(self) -> dict[str, Any]:
        """One row per evaluated question: [id, question text (first 300 characters), outcome letters in
        `systems` order]; questions in the task's order where its samples load, else the metrics' order."""
        m = self.metrics()
        if self._index is not None and self._index["stamp"] == _mtime(self.layout.metrics_file() or self.root):
            return self._index
        if m is None:
            raise ViewError(f"{self.root}: no metrics.json yet (evaluation not run); run `cowest eval` or wait")
        seed = str((m.seeds or [0])[0])
        systems = list(m.systems)
        per = {s: m.systems[s].per_sample.get(seed, {}) for s in systems}
        samples = self._samples()
        ids = [s for s in samples if any(s in per[x] for x in systems)] if samples else \
            list(dict.fromkeys(i for x in systems for i in per[x]))
        rows = []
        for qid in ids:
            text = samples[qid]["question"][:300] if qid in samples else ""
            rows.append([qid, text, "".join(outcome(per[s][qid].score, per[s][qid].prediction) if qid in per[s]
                                            else "-" for s in systems)])
        self._index = {"run": self.i, "systems": systems, "page": PAGE, "rows": rows, "gold": bool(samples),
                       "stamp": _mtime(self.layout.metrics_file() or self.root)}
        self._traces = {}  # the traces may have grown with the metrics: offsets are read again
        return self._index

    def _samples(self) -> dict[str, dict[str, Any]]:
        """The evaluated questions and their gold answers, by id, from the task as the run's config names it
        ({} when its data cannot be read: the page then shows the prompt instead)."""
        cfg = self.config()
        if cfg is None:
            return {}
        from cowest.tasks.base import load_samples

        def load() -> dict[str, dict[str, Any]]:
            try:
                samples = load_samples(cfg.task, cfg.task.eval_split, cfg.task.eval_limit)
            except (CowestError, OSError):
                return {}
            return {s.id: {"question": s.question, "gold": s.answers, "options": s.options} for s in samples}

        return self._cached("samples", (_mtime(self.layout.eval.config), _mtime(self.layout.config)), load)

    def questions_page(self, page: int) -> dict[str, Any]:
        """Page `page` of the index's questions, each with its whole chain per system."""
        idx = self.index()
        ids = [r[0] for r in idx["rows"][page * PAGE:(page + 1) * PAGE]]
        if not ids:
            raise ViewError(f"run {self.i} has no question page {page}")
        m = self.metrics()
        samples = self._samples() if idx["gold"] else {}
        chains: dict[str, dict[str, Any]] = {q: {"id": q, **samples.get(q, {}), "systems": {}} for q in ids}
        for system, path in self._trace_files(m).items():
            offsets = self._trace_offsets(system, path)
            spans = [offsets[q] for q in ids if q in offsets]
            for raw in _read_at(path, spans):
                t = Trace.model_validate(raw)
                chains[t.sample_id]["systems"][system] = _chain(t)
        return {"run": self.i, "page": page, "questions": [chains[q] for q in ids]}

    def aligned_changes(self) -> dict[str, Any]:
        """Per aligned collaboration system (`collab_aligned_r<r>`), the questions whose draft differs from the SFT
        collaboration's (`collab_sft`): [id, draft before, draft after, outcome before, outcome after]."""
        m = self.metrics()
        out: dict[str, Any] = {"run": self.i, "changes": {}}
        if m is None or "collab_sft" not in m.systems:
            return out
        files = self._trace_files(m)
        before = dict(_drafts(files["collab_sft"]))
        seed = str((m.seeds or [0])[0])
        pb = m.systems["collab_sft"].per_sample.get(seed, {})
        for system in [s for s in m.systems if s.startswith("collab_aligned")]:
            pa = m.systems[system].per_sample.get(seed, {})
            out["changes"][system] = [
                [qid, before[qid], after, outcome(pb[qid].score, pb[qid].prediction) if qid in pb else "-",
                 outcome(pa[qid].score, pa[qid].prediction) if qid in pa else "-"]
                for qid, after in _drafts(files[system]) if qid in before and before[qid] != after]
        return out

    # -- the feedback ---------------------------------------------------------------------------------------
    def _feedback_offsets(self) -> list[tuple[int, str, tuple[int, int]]]:
        if self._feedback is None:
            self._feedback = [(r, qid, span) for r in self.layout.rounds_on_disk()
                              if self.layout.feedback(r).is_file()
                              for qid, span in _offsets(self.layout.feedback(r)).items()]
        return self._feedback

    def feedback_index(self) -> dict[str, Any]:
        """One row per feedback question: [round, id, E(z), [Δ per draft], [status per draft], why no pair]; a
        status is `chosen`, `rejected`, `both` (in one pair chosen, in another rejected) or `-`."""
        from cowest.pipeline.feedback import FeedbackRecord
        from cowest.pipeline.pairs import no_pair_reason

        cfg = self.config()
        rows = []
        for r in self.layout.rounds_on_disk():
            path = self.layout.feedback(r)
            if not path.is_file():
                continue
            sides = _pair_sides(self.layout.pairs(r))
            spans = [span for rr, _, span in self._feedback_offsets() if rr == r]
            for raw in _read_at(path, spans):
                rec = FeedbackRecord.model_validate(raw)
                chosen, rejected = sides.get(rec.question_id, (set(), set()))
                status = [("both" if d.text in chosen and d.text in rejected else "chosen" if d.text in chosen
                           else "rejected" if d.text in rejected else "-") for d in rec.drafts]
                why = "" if chosen else (no_pair_reason(rec, cfg.feedback) if cfg is not None else "no pair")
                rows.append([r, rec.question_id, rec.solo_score, [d.delta for d in rec.drafts], status, why])
        return {"run": self.i, "page": PAGE, "rows": rows,
                "stats": {r: _json(self.layout.feedback_dir(r) / PAIRS_STATS) for r in self.layout.rounds_on_disk()}}

    def feedback_page(self, page: int) -> dict[str, Any]:
        entries = self._feedback_offsets()[page * PAGE:(page + 1) * PAGE]
        if not entries:
            raise ViewError(f"run {self.i} has no feedback page {page}")
        out = []
        for r, qid, span in entries:
            (raw,) = _read_at(self.layout.feedback(r), [span])
            out.append({"round": r, **{k: raw.get(k) for k in ("question_id", "prompt", "solo", "solo_prediction",
                                                                "solo_score", "drafts")}})
        return {"run": self.i, "page": page, "records": out}


def _chain(t: Trace) -> dict[str, Any]:
    return {"steps": [{"role": s.role, "name": s.name, "prompt": s.messages[-1]["content"] if s.messages else "",
                       "text": s.output.text, "finish": s.output.finish_reason, "cached": s.output.cached,
                       "error": s.output.error} for s in t.steps],
            "prediction": t.prediction, "scores": t.scores, "extraction_failed": t.extraction_failed,
            "route": _route(t.metadata.get("route"))}


def _route(meta: Any) -> dict[str, Any]:
    """A routed trace's decision, each router's score and threshold (strategies.route's `route` metadata), flat."""
    if not isinstance(meta, dict):
        return {}
    return {"decision": meta.get("decision"), **{f"score {n}": v for n, v in (meta.get("scores") or {}).items()},
            **{f"threshold {n}": v for n, v in (meta.get("thresholds") or {}).items()}}


def _drafts(path: Path) -> Iterator[tuple[str, str]]:
    """(sample id, the weak model's draft) of each complete trace line, streamed."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return  # a torn last line of a run still going
            t = json.loads(line)
            weak = next((s for s in t.get("steps", []) if s.get("role") == "weak"), None)
            if weak is not None:
                yield t["sample_id"], weak["output"]["text"]


def _pair_sides(path: Path) -> dict[str, tuple[set[str], set[str]]]:
    """Question id -> (chosen draft texts, rejected draft texts) of the pairs DPO trained on."""
    from cowest.pipeline.pairs import completion_text

    out: dict[str, tuple[set[str], set[str]]] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                p = json.loads(line)
            except ValueError:
                continue  # a torn last line of a run still going
            c, r = out.setdefault(p["question_id"], (set(), set()))
            c.add(completion_text(p["chosen"]))
            r.add(completion_text(p["rejected"]))
    return out


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@dataclass
class View:
    """The runs given to `cowest view`, and the comparison between them."""

    runs: list[RunView]

    @classmethod
    def open(cls, paths: list[str | Path]) -> "View":
        if not paths:
            raise ViewError("give at least one run directory")
        return cls([RunView.open(i, p) for i, p in enumerate(paths)])

    def warm(self) -> int:
        """Read what every page needs first (each run's metrics, config, questions and trace offsets) before the
        URL is given out, so the first page opens at once; returns the number of questions indexed."""
        n = 0
        for r in self.runs:
            if r.layout.metrics_file() is not None:
                n += len(r.index()["rows"])
                for system, path in r._trace_files(r.metrics()).items():
                    r._trace_offsets(system, path)
            r._feedback_offsets()
        return n

    def resource(self, name: str) -> dict[str, Any]:
        """The resource `name`; ViewError for a name that is not one (or a run or page that does not exist)."""
        m = RESOURCE.fullmatch(name)
        if m is None:
            raise ViewError(f"no such resource '{name[:80]}'")
        if name == "meta":
            return {"runs": [r.meta() for r in self.runs], "compare": self.compare(), "page": PAGE}
        i = int(m.group(1))
        if i >= len(self.runs):
            raise ViewError(f"no run {i}: this page shows {len(self.runs)}")
        run, kind = self.runs[i], m.group(2)
        if kind == "index":
            return run.index()
        if kind == "fb":
            return run.feedback_index()
        if kind == "aligned":
            return run.aligned_changes()
        if kind.startswith("fbq"):
            return run.feedback_page(int(m.group(4)))
        return run.questions_page(int(m.group(3)))

    def names(self) -> list[str]:
        """Every resource of these runs (what the static export writes)."""
        out = ["meta"]
        for r in self.runs:
            if r.layout.metrics_file() is not None:
                n = len(r.index()["rows"])
                out += [f"r{r.i}-index", f"r{r.i}-aligned"] + [f"r{r.i}-q{p}" for p in range((n + PAGE - 1) // PAGE)]
            n_fb = len(r._feedback_offsets())
            if n_fb:
                out += [f"r{r.i}-fb"] + [f"r{r.i}-fbq{p}" for p in range((n_fb + PAGE - 1) // PAGE)]
        return out

    def compare(self) -> list[dict[str, Any]]:
        """Each later run against the first, per system both evaluated, on the questions both answered: the paired
        difference of the stored per-sample headline scores (later − first; a metric without per-sample scores,
        macro-F1, counts as 0) with its 95% bootstrap CI, and the questions whose outcome changed."""
        if len(self.runs) < 2:
            return []
        from cowest.scoring.metrics import paired_score_bootstrap

        base, out = self.runs[0], []
        mb = base.metrics()
        for other in self.runs[1:]:
            mo = other.metrics()
            if mb is None or mo is None:
                out.append({"a": 0, "b": other.i, "note": "a run has no metrics.json yet"})
                continue
            if mb.task != mo.task:
                out.append({"a": 0, "b": other.i, "note": f"different tasks ({mb.task} and {mo.task}): questions "
                                                          "cannot be matched"})
                continue
            sb, so = str((mb.seeds or [0])[0]), str((mo.seeds or [0])[0])
            for system in [s for s in mb.systems if s in mo.systems]:
                pb, po = mb.systems[system].per_sample.get(sb, {}), mo.systems[system].per_sample.get(so, {})
                common = [q for q in pb if q in po]
                if not common:
                    continue
                changed = [[q, outcome(pb[q].score, pb[q].prediction), outcome(po[q].score, po[q].prediction)]
                           for q in common if outcome(pb[q].score, pb[q].prediction)
                           != outcome(po[q].score, po[q].prediction)]
                ci = paired_score_bootstrap([po[q].score or 0.0 for q in common], [pb[q].score or 0.0 for q in common])
                out.append({"a": 0, "b": other.i, "system": system, "n": len(common), "metric": mb.headline,
                            "diff": ci.value, "ci": [ci.lo, ci.hi], "changed": changed})
        return out
