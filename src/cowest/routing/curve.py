"""The quality versus strong-call-share curve of each router, from an eval's `route` traces (their `route`
metadata, written with `route.sweep` on), and the report section that shows it.

For a router, sending the k lowest-scoring questions to the strong model gives quality (Σ fallback scores of those
+ Σ weak scores of the rest) / n at share k / n; tied scores move together, and between the points the curve is
linear (the expected value of breaking ties at random). The headline metric must be a per-question mean (exact
match, accuracy: every task's headline is). At each router's threshold on the eval questions the point gets a 95%
bootstrap interval. References: always-weak (share 0), the fallback on every question (share 1: always-collaborate
or always-strong) and, from metrics.json, the strong model alone and the collaboration. The oracle is the best any
router could do with these answers (the questions where the fallback gains most go first): where the weak model is
rarely right on its own, even it keeps little at a small share, so a router is read against it as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KEPT_AT = (0.3, 0.5)
"""The strong-call shares at which the report gives the share of always-collaborate quality kept."""


@dataclass
class RouteRun:
    """One route system's per-question outcomes (first seed, questions every trace has a fallback for)."""

    system: str
    decider: str
    fallback: str
    scores: dict[str, np.ndarray]
    thresholds: dict[str, float]
    weak: np.ndarray
    strong: np.ndarray
    """The fallback's headline score per question."""
    decided: np.ndarray
    """The system's own answers' headline scores (the route actually taken)."""


def _as_dict(m: Any) -> dict:
    """metrics.json's content: a `cowest.core.results.Metrics` or its dict."""
    return m if isinstance(m, dict) else m.model_dump(mode="json")


def route_runs(metrics_path: Path, m: Any) -> list[RouteRun]:
    from cowest.core.layout import EvalDir
    from cowest.core.traces import read_traces

    m = _as_dict(m)
    h, seed, out = m["headline"], m.get("seeds", [0])[0], []
    for name, s in m["systems"].items():
        if s.get("strategy") != "route":
            continue
        traces = [t for t in read_traces(EvalDir(metrics_path.parent).trace(name, seed))
                  if (t.metadata.get("route") or {}).get("fallback") is not None]
        if not traces:
            continue
        meta = [t.metadata["route"] for t in traces]
        routers = list(meta[0]["scores"])
        out.append(RouteRun(
            system=name, decider=traces[0].metadata.get("router", routers[0]),
            fallback=traces[0].metadata.get("fallback", "collaborate"),
            scores={r: np.array([x["scores"][r] for x in meta], dtype=float) for r in routers},
            thresholds=dict(meta[0].get("thresholds", {})),
            weak=np.array([x["weak"]["scores"].get(h, 0.0) for x in meta]),
            strong=np.array([x["fallback"]["scores"].get(h, 0.0) for x in meta]),
            decided=np.array([t.scores.get(h, 0.0) for t in traces])))
    return out


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shares, quality) at every boundary between distinct scores, lowest scores sent to the strong model first."""
    n = len(scores)
    order = np.argsort(scores, kind="stable")
    s, w, f = scores[order], weak[order], strong[order]
    cuts = [k for k in range(n + 1) if k in (0, n) or s[k - 1] != s[k]]
    gain = np.concatenate([[0.0], np.cumsum(f - w)])
    return np.array(cuts) / n, (w.sum() + gain[cuts]) / n


def oracle(weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper bound of every router's curve: questions sent in order of the fallback's gain over the weak answer
    (largest first), so the curve rises to its peak and then falls where sending more only loses."""
    gain = np.sort(strong - weak)[::-1]
    n = len(gain)
    return np.arange(n + 1) / n, (weak.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n


def quality_at(shares: np.ndarray, quality: np.ndarray, share: float) -> float:
    return float(np.interp(share, shares, quality))


def kept_cells(row: dict[str, Any]) -> list[str]:
    """A router's (or the oracle's) quality at each share of KEPT_AT, with the share of collaboration kept."""
    return [f"{row['quality_at'][str(k)]:.3f}" + (f" ({row['kept'][str(k)]:.0%})" if row["kept"][str(k)] is not None
                                                 else "") for k in KEPT_AT]


def at_threshold(run: RouteRun, router: str, threshold: float, n_boot: int = 1000) -> dict[str, float]:
    """The share sent on and the quality, with a 95% bootstrap interval, when `router` routes at `threshold`."""
    to_strong = run.scores[router] < threshold
    mixed = np.where(to_strong, run.strong, run.weak)
    idx = np.random.default_rng(0).integers(0, len(mixed), size=(n_boot, len(mixed)))
    lo, hi = np.quantile(mixed[idx].mean(1), [0.025, 0.975])
    return {"share": float(to_strong.mean()), "value": float(mixed.mean()), "lo": float(lo), "hi": float(hi)}


def summarize_run(run: RouteRun, m: dict) -> dict[str, Any]:
    """Each router's curve, calibrated point and kept quality; the reference points."""
    m = _as_dict(m)
    h = m["headline"]
    refs = {"always-weak": float(run.weak.mean()), f"always-{run.fallback}": float(run.strong.mean())}
    for name, s in m["systems"].items():
        if s["strategy"] == "strong_only":
            refs.setdefault("always-strong", s["metrics"][h]["value"])
        if s["strategy"] == "collaborate" and "always-collaborate" not in refs:
            refs["always-collaborate"] = s["metrics"][h]["value"]
    collab = refs.get("always-collaborate")
    o_shares, o_quality = oracle(run.weak, run.strong)
    best = {str(k): quality_at(o_shares, o_quality, k) for k in KEPT_AT}
    bound = {"quality_at": best, "kept": {k: (v / collab if collab else None) for k, v in best.items()}}
    routers = {}
    for r, scores in run.scores.items():
        shares, quality = curve(scores, run.weak, run.strong)
        row: dict[str, Any] = {"curve": [[float(a), float(b)] for a, b in zip(shares, quality)]}
        row["kept"] = {str(k): (quality_at(shares, quality, k) / collab if collab else None) for k in KEPT_AT}
        row["quality_at"] = {str(k): quality_at(shares, quality, k) for k in KEPT_AT}
        if r in run.thresholds:
            row["calibrated"] = {"threshold": run.thresholds[r], **at_threshold(run, r, run.thresholds[r])}
        routers[r] = row
    return {"system": run.system, "decider": run.decider, "fallback": run.fallback, "n": len(run.weak),
            "references": refs, "routers": routers, "oracle": bound}


def calibration_rows(run_dir: Path) -> list[list[str]]:
    rows = []
    for path in sorted(run_dir.glob("router/calibration-*.json")):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for name, c in saved.get("routers", {}).items():
            rows.append([name, f"{c['threshold']:.4g}", f"{c['target_share']:.0%}", f"{c['achieved_share']:.1%}",
                         f"{c['split']} ({c['n']})", path.name])
    return rows


def routing_section(metrics_path: Path, m: Any, out_dir: Path, prefix: str = "") -> list[str]:
    """report.md's routing part: a table per route system, the calibrations, and the curve plot."""
    from cowest.core.markdown import table

    m = _as_dict(m)
    runs = route_runs(metrics_path, m)
    if not runs:
        return []
    h = m["headline"]
    out = ["## Routing: quality versus strong-call share", "",
           f"{h} when the lowest-scoring questions go to the strong model; at each router's threshold on these "
           "questions, its share and a 95% bootstrap CI; kept = the share of always-collaborate quality.", ""]
    for run in runs:
        summary = summarize_run(run, m)
        rows = []
        for r, row in summary["routers"].items():
            cal = row.get("calibrated")
            point = "–" if cal is None else (f"{cal['share']:.0%}: {cal['value']:.3f} [{cal['lo']:.3f}, "
                                             f"{cal['hi']:.3f}] (threshold {cal['threshold']:.4g})")
            rows.append([r + (" (decides)" if r == run.decider else ""), point, *kept_cells(row)])
        rows.append(["oracle (the best any router could do)", "–", *kept_cells(summary["oracle"])])
        out += [f"System `{run.system}` ({summary['n']} questions, fallback {run.fallback}); references: "
                + ", ".join(f"{k} {v:.3f}" for k, v in summary["references"].items()), ""]
        out += table(["router", "at its threshold: strong share: " + h + " [95% CI]",
                       *[f"at {k:.0%} strong (kept)" for k in KEPT_AT]], rows)
        png = out_dir / f"{prefix}routing_{run.system}.png"
        plot_curves(summary, h, png)
        out += [f"![routing {run.system}]({png.name})", ""]
    cal = calibration_rows(metrics_path.parent.parent) or calibration_rows(metrics_path.parent)
    if cal:
        out += ["Calibration (thresholds set on the calibration split's router scores, no labels read):", ""]
        out += table(["router", "threshold", "target share", "achieved share", "split (questions)", "file"], cal)
    return out


def plot_curves(summary: dict, headline: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r, row in summary["routers"].items():
        xs, ys = zip(*row["curve"])
        line, = ax.plot(xs, ys, label=r)
        cal = row.get("calibrated")
        if cal:
            ax.errorbar([cal["share"]], [cal["value"]], yerr=[[cal["value"] - cal["lo"]], [cal["hi"] - cal["value"]]],
                        fmt="o", capsize=3, color=line.get_color())
    markers = {"always-weak": "s", "always-collaborate": "D", "always-strong": "^"}
    for k, (name, v) in enumerate(summary["references"].items()):
        x = 0.0 if name == "always-weak" else 1.0
        ax.scatter([x], [v], marker=markers.get(name, "x"), color="black", zorder=3)
        # references at the same share often have the same value: stagger their labels
        ax.annotate(name, (x, v), textcoords="offset points", xytext=(-60 if x else 4, 4 + 9 * k), fontsize=7)
    ax.set(xlabel="share of questions sent to the strong model", ylabel=headline, xlim=(-0.03, 1.05), ylim=(0, 1),
           title=f"{summary['system']}: {headline} vs strong calls")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
