"""Soak: the feedback and eval stages over the `openai` provider against a server that injects faults, with kill -9.

A fault-injecting OpenAI-compatible server on 127.0.0.1 (tests/fault_server.py, canned instant replies, no model)
answers a share `--fault-rate` of all requests with a fault drawn evenly from every kind it knows: 429 with a good
Retry-After, 429 with `Retry-After: soon` and with an HTTP date, 500/502/503, a hang past the client's timeout,
a body trickled a byte at a time, a dropped connection, torn JSON, HTML and text/plain bodies, `choices: []`,
`choices: [null]`, non-string content and finish_reason, a body cut short of its Content-Length, content with a
lone surrogate. `cowest feedback` and then `cowest eval` run as real
processes on one run directory; `--kills` times each stage is killed with SIGKILL at a random moment and restarted
(recovery time: from the restart to the next record written), then rerun until the stage is done (a sample whose
requests failed for good is retried by the next run). Each stage starts as two processes racing on the run
directory: the run-directory lock must stop one at once, naming the other's pid. Printed: records expected / present / duplicated / failed,
tracebacks, faults injected (server) and counted, retried and given up (client, per kind), HTTP requests.

    flock /tmp/cowest-cpu.lock python benchmarks/soak.py [--questions 200] [--eval 200] [--kills 5] [--record]

Goal (issue 13): 0 lost, 0 duplicated, 0 tracebacks, every failure counted and named. Not run in CI; a short
version is tests/test_soak.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cowest.core.layout import FEEDBACK_FILE, RunLayout
from cowest.pipeline.stages import lock_holder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from bench_io import machine, record  # noqa: E402
from fault_server import FAULT_KINDS, FaultServer  # noqa: E402

CLIENT_KIND = {"429": "http_429", "429soon": "http_429", "429date": "http_429", "500": "http_5xx",
               "502": "http_5xx", "503": "http_5xx", "stall": "timeout", "trickle": "deadline", "drop": "connection",
               "short": "truncated_body"}
"""The client-side kind each injected fault is counted as (the rest are malformed 2xx bodies)."""
SYSTEMS = ("weak_only", "strong_only", "collaborate-cot")


def write_inputs(out: Path, base_url: str, questions: int, eval_n: int, timeout_s: float, retries: int,
                 concurrency: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "qa.jsonl"
    n = max(questions, eval_n)
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"soak question {i}", "answer": "echo"}) + "\n"
                            for i in range(n)), encoding="utf-8")
    model = {"base_url": base_url, "api_key_env": "COWEST_SOAK_NO_KEY", "timeout_s": timeout_s,
             "max_retries": retries, "concurrency": concurrency}
    cfg = {"run_dir": str(out / "run"), "max_failed_share": 0.25,
           "task": {"name": "jsonl", "data": str(data), "options": {"family": "qa"}, "train_split": "train", "eval_split": "dev",
                    "train_limit": questions, "eval_limit": eval_n},
           "models": {"weak": {"spec": "openai/weak", **model}, "strong": {"spec": "openai/strong", **model}},
           "generation": {"weak": {"max_tokens": 32}, "strong": {"max_tokens": 32}},
           "eval": {"strategies": ["weak_only", "strong_only", "collaborate"], "bootstrap_samples": 50},
           "feedback": {"k": 4, "evaluator": "metric"}}
    path = out / "soak.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def record_files(stage: str, run: Path) -> list[Path]:
    layout = RunLayout(run)
    if stage == "feedback":
        return [layout.feedback_dir(1) / FEEDBACK_FILE]
    return [layout.eval.trace(s, 0) for s in SYSTEMS]


def ids_of(stage: str, run: Path) -> list[str]:
    """Every record id written (duplicates included), tolerating a torn last line."""
    key = "question_id" if stage == "feedback" else "sample_id"
    out = []
    for path in record_files(stage, run):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            try:
                out.append(f"{path.stem}/{json.loads(line)[key]}")
            except (ValueError, KeyError):
                pass
    return out


def start(stage: str, cfg: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "cowest", stage, str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"), env=env)


def count_records(stage: str, run: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in record_files(stage, run) if p.exists())


def run_stage(stage: str, cfg: Path, run: Path, kills: int, rng: random.Random, logs: Path,
              max_reruns: int = 8) -> dict:
    """Kill the stage with SIGKILL `kills` times at random moments (restarting it each time), then rerun it until
    it is done. Recovery: from a restart to the next record written."""
    done_marker = run / ("round1/feedback" if stage == "feedback" else "eval") / "done.json"
    recoveries: list[float] = []
    failed_runs: list[int] = []
    t0 = time.monotonic()
    # Two processes race on the run directory first: one must stop at once, naming the other's pid.
    # The second starts once the first holds the run directory (its pid in run.lock), so the two always overlap.
    first = start(stage, cfg, logs / f"{stage}.0.log")
    lock, until = RunLayout(run).lock, time.monotonic() + 60
    while first.poll() is None and time.monotonic() < until and lock_holder(lock) != first.pid:
        time.sleep(0.01)
    racers = [first, start(stage, cfg, logs / f"{stage}.1.log")]
    runs = 2
    until = time.monotonic() + 60
    while all(p.poll() is None for p in racers) and time.monotonic() < until:
        time.sleep(0.05)
    losers = [i for i, p in enumerate(racers) if p.poll() is not None and p.returncode == 2]
    race_refused = any("is in use by process" in (logs / f"{stage}.{i}.log").read_text(errors="replace")
                       for i in losers)
    proc = next((p for p in racers if p.poll() is None), racers[0])
    for p in racers:
        if p is not proc:
            p.wait()
    for _ in range(kills):
        until = time.monotonic() + rng.uniform(1.0, 6.0)
        while proc.poll() is None and time.monotonic() < until:
            time.sleep(0.05)
        if proc.poll() is not None:
            break  # it finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before, t_restart = count_records(stage, run), time.monotonic()
        proc, runs = start(stage, cfg, logs / f"{stage}.{runs}.log"), runs + 1
        while proc.poll() is None and count_records(stage, run) <= before:
            time.sleep(0.1)
        if count_records(stage, run) > before:
            recoveries.append(time.monotonic() - t_restart)
    rc = proc.wait()
    for _ in range(max_reruns):
        failed_runs.append(read_faults(stage, run).get("failed_samples", 0))
        log = logs / f"{stage}.{runs - 1}.log"
        if done_marker.exists() or (rc != 0 and "max_failed_share" not in log.read_text(errors="replace")
                                    and "is in use by process" not in log.read_text(errors="replace")):
            break
        proc, runs = start(stage, cfg, logs / f"{stage}.{runs}.log"), runs + 1
        rc = proc.wait()
    return {"runs": runs, "recoveries": recoveries, "failed_per_run": failed_runs, "done": done_marker.exists(),
            "race_refused": race_refused, "wall_s": time.monotonic() - t0}


def read_faults(stage: str, run: Path) -> dict:
    path = run / ("round1/feedback" if stage == "feedback" else "eval") / "faults.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def soak(out: Path, *, questions: int = 200, eval_n: int = 200, fault_rate: float = 0.25, kills: int = 5,
         seed: int = 0, timeout_s: float = 1.0, retries: int = 2, concurrency: int = 32) -> dict:
    rng = random.Random(seed)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with FaultServer(stall_s=timeout_s + 0.5, trickle_s=0.05, fault_rate=fault_rate, seed=seed) as srv:
        cfg = write_inputs(out, srv.base_url, questions, eval_n, timeout_s, retries, concurrency)
        run = out / "run"
        stages = {}
        for stage in ("feedback", "eval"):
            stages[stage] = run_stage(stage, cfg, run, kills, rng, logs)
        injected = Counter(srv.injected)
        requests = sum(srv.hits.values())
    result: dict = {"requests": requests, "injected": dict(injected), "stages": {}}
    for stage, info in stages.items():
        ids = ids_of(stage, run)
        expected = questions if stage == "feedback" else eval_n * len(SYSTEMS)
        counts = Counter(ids)
        faults = read_faults(stage, run)
        tracebacks = sum("Traceback" in p.read_text(encoding="utf-8", errors="replace")
                         for p in logs.glob(f"{stage}.*.log"))
        result["stages"][stage] = {
            **info, "expected": expected, "present": len(counts), "duplicated": sum(c - 1 for c in counts.values()),
            "failed_final": faults.get("failed_samples", 0), "failed_retried": sum(info["failed_per_run"][:-1]),
            "tracebacks": tracebacks, "faults": faults.get("faults", {}), "retried": faults.get("retried", {}),
            "gave_up": faults.get("gave_up", {})}
    return result


def table(res: dict, fault_rate: float) -> str:
    st = res["stages"]
    rows = [("HTTP requests served", res["requests"]),
            ("faults injected (all kinds)", f"{sum(res['injected'].values())} "
                                            f"({sum(res['injected'].values()) / max(res['requests'], 1):.0%})")]
    for name, s in st.items():
        rec = (f"{s['expected']} / {s['present']} / {s['duplicated']} / {s['failed_final']} "
               f"(failed then retried by a rerun: {s['failed_retried']})")
        rows += [(f"{name}: records expected / present / duplicated / failed", rec),
                 (f"{name}: runs (kill -9 then resume), done", f"{s['runs']}, {'yes' if s['done'] else 'NO'}"),
                 (f"{name}: two processes raced, the second refused naming the first's pid",
                  "yes" if s["race_refused"] else "NO"),
                 (f"{name}: recovery after kill -9, s (median / max of {len(s['recoveries'])})",
                  _median_max(s["recoveries"])),
                 (f"{name}: tracebacks", s["tracebacks"]),
                 (f"{name}: wall s", f"{s['wall_s']:.0f}")]
    kinds = sorted(set(CLIENT_KIND.values()) | {"malformed"})
    injected = Counter()
    for k, n in res["injected"].items():
        injected[CLIENT_KIND.get(k, "malformed")] += n
    head = "| fault kind | injected | counted | retried | gave up |\n|---|---|---|---|---|\n"
    lines = []
    for kind in kinds:
        counted = sum(s["faults"].get(kind, 0) for s in st.values())
        retried = sum(s["retried"].get(kind, 0) for s in st.values())
        gave_up = sum(s["gave_up"].get(kind, 0) for s in st.values())
        lines.append(f"| {kind} | {injected[kind]} | {counted} | {retried} | {gave_up} |")
    by_server_kind = ", ".join(f"{k} {res['injected'].get(k, 0)}" for k in FAULT_KINDS)
    return ("| quantity | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n\n"
            + head + "\n".join(lines) + f"\n\nInjected per server kind: {by_server_kind}.")


def _median_max(xs: list[float]) -> str:
    if not xs:
        return "-"
    s = sorted(xs)
    return f"{s[len(s) // 2]:.1f} / {s[-1]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--fault-rate", type=float, default=0.25)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "soak"))
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)  # the soak's own scratch folder: every soak starts from nothing
    load0 = os.getloadavg()
    res = soak(out, questions=args.questions, eval_n=args.eval, fault_rate=args.fault_rate, kills=args.kills,
               seed=args.seed)
    load1 = os.getloadavg()
    text = table(res, args.fault_rate)
    print(text)
    (out / "soak.json").write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    ok = all(s["present"] == s["expected"] and s["duplicated"] == 0 and s["tracebacks"] == 0 and s["done"]
             and s["race_refused"] for s in res["stages"].values())
    print("GOAL MET" if ok else "GOAL NOT MET")
    if args.record:
        head = (f"### Soak under faults and kill -9 (`benchmarks/soak.py --questions {args.questions} --eval "
                f"{args.eval} --fault-rate {args.fault_rate} --kills {args.kills}`)\n\n"
                f"{machine()}, {datetime.date.today()}, load average {load0[0]:.2f} before / {load1[0]:.2f} after "
                "(under the CPU lock; a load above 1 means other work ran beside it, so the times are indicative). `cowest feedback` (K=4, metric evaluator) then `cowest eval` "
                "(weak_only, strong_only, collaborate) as real processes, each stage first started twice at once "
                "on the same run directory (the run-directory lock must refuse one), over the `openai` provider against "
                "tests/fault_server.py on 127.0.0.1 (canned instant replies; no model): every request has a "
                f"{args.fault_rate:.0%} chance of a fault drawn evenly from {len(FAULT_KINDS)} kinds. Client: "
                "timeout_s 1 (the whole attempt), max_retries 2 (the openai SDK's retries; the same budget for "
                "malformed 2xx bodies), concurrency 32, max_failed_share 0.25. Each stage is killed with SIGKILL "
                f"{args.kills} times at random moments (1-6 s after a start or the previous restart), then rerun "
                "until done; a sample whose requests failed for good is counted and "
                "retried by the next run. Client fault counts come from each stage's faults.json, which a "
                "SIGKILL can cut short by the chunk in flight. Result: "
                f"{'goal met (0 lost, 0 duplicated, 0 tracebacks, the racing process refused)' if ok else 'GOAL NOT MET'}."
                "\n\n")
        record("soak.py", head + text)


if __name__ == "__main__":
    main()
