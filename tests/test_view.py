"""`cowest view` in a real headless browser (Chromium from Debian's packages, driven by Playwright pointed at it):
the page's numbers and lists are read back and checked against the run's own files (metrics.json, the traces,
feedback.jsonl, pairs.jsonl). Runs: the tiny loop of tests/conftest.py (real models), small `cowest eval` runs with
mock models for filters, keyboard and comparison, and a 10,000-question run for scale. Bad input: one line on the
console or a message on the page, never a traceback, a blank page or a file outside the run directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cowest.cli import main
from uvicorn_thread import InThread, free_port

sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install -e '.[test]'")
CHROMIUM = os.environ.get("COWEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("COWEST_VIEW_SCREENSHOTS")
"""A folder for the README's screenshots (docs/): set it to remake them."""


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium here: sudo apt-get install chromium (what .ci/run does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Viewed(InThread):
    """`cowest view`'s app on a free port of 127.0.0.1, in a thread."""

    def __init__(self, *runs: Path):
        import uvicorn

        from cowest.view.data import View
        from cowest.view.serve import build_app

        port = free_port()
        view = View.open(list(runs))
        view.warm()  # as `cowest view` does before it prints the URL
        super().__init__(uvicorn.Config(build_app(view), host="127.0.0.1", port=port, log_level="error"), port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def open_page(browser, url: str, errors: list[str] | None = None):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = errors if errors is not None else []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=10_000)
    return page


def rows_shown(page) -> list[str]:
    return page.eval_on_selector_all("#q-list .row", "rs => rs.map(r => r.dataset.id)")


# ---- mock runs ---------------------------------------------------------------------------------------------------

def mock_run(tmp: Path, name: str, n: int, weak_reply: str, task: Path | None = None,
             strategies: str = "[weak_only, strong_only]") -> Path:
    """`cowest eval` of mock models on a JSON Lines task of `n` questions (gold Paris, Rome or Oslo in turn)."""
    data = task or tmp / f"{name}.jsonl"
    if task is None:
        data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Question {i}: which city? <b>bold</b>",
                                            "answer": ["Paris", "Rome", "Oslo"][i % 3]}) + "\n" for i in range(n)))
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "run_dir": str(tmp / name),
        "task": {"name": "jsonl", "data": str(data), "options": {"family": "qa"}, "train_split": "train",
                 "eval_split": "dev"},
        "models": {"weak": {"spec": f"mock/answer:Answer: {weak_reply}"}, "strong": {"spec": "mock/echo"}},
        "eval": {"strategies": yaml.safe_load(strategies), "bootstrap_samples": 50}}))
    assert main(["eval", str(cfg)]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("view")
    a = mock_run(tmp, "a", 18, "Paris")
    b = mock_run(tmp, "b", 18, "Rome", task=tmp / "a.jsonl")
    return a, b


def traces(run: Path, system: str) -> list[dict]:
    return [json.loads(x) for x in (run / "eval" / "traces" / f"{system}.seed0.jsonl").read_text().splitlines()]


# ---- the tiny loop ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_run_page_shows_metrics_json_and_a_question_its_chain(browser, loop_run) -> None:
    _, run, _ = loop_run
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    errors: list[str] = []
    with Viewed(run) as v:
        page = open_page(browser, v.url, errors)
        for name, s in metrics["systems"].items():
            value = s["metrics"]["exact_match"]
            cell = page.inner_text(f"table.results tr[data-system='{name}'] td[data-metric='exact_match']")
            assert cell == f"{value['value']:.3f} [{value['ci'][0]:.3f}, {value['ci'][1]:.3f}]", (name, cell)
        shot(page, "run")
        t = traces(run, "collab_sft")[1]
        page.goto(v.url + f"#tab=questions&run=0&q={t['sample_id']}")
        page.wait_for_selector("#q-title")
        assert page.inner_text("#q-title") == t["sample_id"]
        detail = page.inner_text("#q-detail")
        for step in t["steps"]:  # the draft and the refinement, as the trace holds them
            assert step["output"]["text"].strip()[:60] in detail
        shot(page, "questions")
        page.click("button[data-tab=alignment]")
        page.wait_for_selector("table.dpo", state="attached")
        assert page.locator("#alignment svg").count() >= 2
        shot(page, "alignment")
    assert errors == []


@pytest.mark.slow
def test_the_feedback_view_equals_feedback_and_pairs(browser, loop_run) -> None:
    _, run, _ = loop_run
    fb = run / "round1" / "feedback"
    records = [json.loads(x) for x in (fb / "feedback.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (fb / "pairs.jsonl").read_text().splitlines()]
    chosen = {(p["question_id"], p["chosen"][-1]["content"]) for p in pairs}
    rejected = {(p["question_id"], p["rejected"][-1]["content"]) for p in pairs}
    with Viewed(run) as v:
        page = open_page(browser, v.url + "#tab=feedback&run=0")
        page.wait_for_selector("table.feedback tbody tr")
        for rec in records:
            row = page.locator(f"table.feedback tr[data-id='{rec['question_id']}']")
            deltas = " ".join("–" if d["delta"] is None else f"{d['delta']:+.3f}" for d in rec["drafts"])
            assert row.locator("td.delta").inner_text() == deltas.replace("+-", "-")
            want = ["both" if (rec["question_id"], d["text"]) in chosen and (rec["question_id"], d["text"]) in rejected
                    else "chosen" if (rec["question_id"], d["text"]) in chosen
                    else "rejected" if (rec["question_id"], d["text"]) in rejected else "-" for d in rec["drafts"]]
            assert row.locator("td.status").inner_text().split() == want
            has_pair = any(q == rec["question_id"] for q, _ in chosen)
            assert (row.locator("td.why").inner_text() == "") == has_pair
        page.click(f"table.feedback tr[data-id='{records[0]['question_id']}']")
        page.wait_for_selector("#f-detail pre.draft")
        assert records[0]["drafts"][0]["text"].strip()[:60] in page.inner_text("#f-detail")
        shot(page, "feedback")


@pytest.mark.slow
def test_the_export_opens_from_disk_without_a_network_request(browser, loop_run, tmp_path: Path, capsys) -> None:
    _, run, _ = loop_run
    out = tmp_path / "export"
    assert main(["view", str(run), "--export", str(out)]) == 0
    assert "index.html" in capsys.readouterr().out
    requests: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=10_000)
    page.click("button[data-tab=questions]")
    page.wait_for_selector("#q-list .row")
    page.click("#q-list .row >> nth=0")
    page.wait_for_selector("#q-title")
    page.click("button[data-tab=feedback]")
    page.wait_for_selector("table.feedback tbody tr")
    assert requests and all(u.startswith("file://") or u.startswith("data:") for u in requests), requests


# ---- mock runs: filters, keyboard, comparison ---------------------------------------------------------------------

def test_filtering_by_outcome_lists_exactly_the_questions_the_traces_say(browser, two_runs) -> None:
    a, _ = two_runs
    right = [t["sample_id"] for t in traces(a, "weak_only") if t["scores"]["exact_match"] == 1.0]
    with Viewed(a) as v:
        page = open_page(browser, v.url + "#tab=questions&run=0")
        page.wait_for_selector("#q-list .row")
        page.select_option("#q-filters select[data-system='weak_only']", "R")
        page.wait_for_function(f"document.querySelectorAll('#q-list .row').length === {len(right)}")
        assert sorted(rows_shown(page)) == sorted(right) and 0 < len(right) < 18
        page.select_option("#q-filters select[data-system='weak_only']", "W")
        page.fill("#q-search", "Question 1")  # q1, q10..q17 among the wrong ones
        want = [t["sample_id"] for t in traces(a, "weak_only") if t["scores"]["exact_match"] == 0.0
                and t["sample_id"].startswith("q1")]
        page.wait_for_function(f"document.querySelectorAll('#q-list .row').length === {len(want)}")
        assert sorted(rows_shown(page)) == sorted(want)


def test_keyboard_moves_between_questions_and_to_the_next_changed_one(browser, two_runs) -> None:
    a, _ = two_runs
    with Viewed(a) as v:
        page = open_page(browser, v.url + "#tab=questions&run=0&q=q0")
        page.wait_for_selector("#q-title")
        page.keyboard.press("j")
        page.wait_for_function("document.querySelector('#q-title').textContent === 'q1'")
        page.keyboard.press("k")
        page.wait_for_function("document.querySelector('#q-title').textContent === 'q0'")
        # weak_only is right on every third question (gold Paris), strong_only (an echo) on none: q3 differs next
        page.keyboard.press("n")
        page.wait_for_function("document.querySelector('#q-title').textContent === 'q3'")
        assert "q=q3" in page.url


def test_two_runs_side_by_side_list_the_questions_that_changed(browser, two_runs) -> None:
    a, b = two_runs
    before = {t["sample_id"]: t["scores"]["exact_match"] for t in traces(a, "weak_only")}
    after = {t["sample_id"]: t["scores"]["exact_match"] for t in traces(b, "weak_only")}
    changed = sorted(q for q in before if before[q] != after[q])
    with Viewed(a, b) as v:
        page = open_page(browser, v.url + "#tab=compare")
        page.wait_for_selector("#compare h3[data-system='weak_only']")
        ids = page.eval_on_selector_all("#compare h3[data-system='weak_only'] + p + table tr[data-id]",
                                        "rs => rs.map(r => r.dataset.id)")
        assert sorted(ids) == changed and len(changed) == 12  # Paris right -> wrong, Rome wrong -> right
        diff = sum(after.values()) / 18 - sum(before.values()) / 18
        assert page.inner_text("#compare h3[data-system='weak_only'] .diff").startswith(f"{diff:+.3f} [")
        shot(page, "compare")


def test_runs_of_different_tasks_and_a_missing_question_are_messages_on_the_page(browser, two_runs,
                                                                                 tmp_path: Path) -> None:
    a, _ = two_runs
    other = mock_run(tmp_path, "other", 6, "Oslo")  # its own data file: another task name? same `jsonl`
    metrics = json.loads((other / "eval" / "metrics.json").read_text())
    metrics["task"] = "medmcqa"
    (other / "eval" / "metrics.json").write_text(json.dumps(metrics))
    with Viewed(a, other) as v:
        page = open_page(browser, v.url + "#tab=compare")
        page.wait_for_selector("#compare .warn")
        assert "different tasks" in page.inner_text("#compare")
        page.goto(v.url + "#tab=questions&run=0&q=no-such-id")
        page.wait_for_selector("#q-detail .error")
        assert "no question 'no-such-id' in run 0" in page.inner_text("#q-detail")


def test_a_torn_trace_line_of_a_run_still_going_is_left_out(browser, tmp_path: Path) -> None:
    run = mock_run(tmp_path, "going", 9, "Paris")
    with open(run / "eval" / "traces" / "weak_only.seed0.jsonl", "a") as f:
        f.write('{"schema_version":1,"sample_id":"q99","strat')  # a chunk being appended
    with Viewed(run) as v:
        page = open_page(browser, v.url + "#tab=questions&run=0&q=q8")
        page.wait_for_selector("#q-title")
        assert "Answer: Paris" in page.inner_text("#q-detail")


def test_no_url_reaches_a_file_outside_the_run_directories(two_runs) -> None:
    import httpx

    a, _ = two_runs
    secret = a.parent / "secret.txt"
    secret.write_text("do not serve me")
    with Viewed(a) as v:
        for path in ("../secret.txt", "..%2Fsecret.txt", "data/..%2F..%2Fsecret.txt.js", "plots/r0/..%2Fconfig.yaml",
                     "plots/r0/%2Fetc%2Fpasswd", f"plots/r0/{secret}", "data/r0-q999.js", "data/r7-index.js",
                     "%2Fetc%2Fpasswd", "app.js/../../config.yaml"):
            r = httpx.get(v.url + path)
            assert "do not serve me" not in r.text and "root:" not in r.text and "run_dir" not in r.text, path
            assert r.status_code == 404 or '"error"' in r.text, (path, r.status_code, r.text[:200])


# ---- the console ---------------------------------------------------------------------------------------------------

def cowest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowest", *args], capture_output=True, text=True, timeout=60)


def test_a_folder_that_is_not_a_run_or_of_a_newer_layout_is_one_line(tmp_path: Path, two_runs) -> None:
    for args, needle in (([str(tmp_path)], "not a run directory"), ([str(tmp_path / "nope")], "not a folder")):
        proc = cowest("view", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    newer = tmp_path / "newer" / "eval"
    newer.mkdir(parents=True)
    m = json.loads((two_runs[0] / "eval" / "metrics.json").read_text())
    (newer / "metrics.json").write_text(json.dumps({**m, "version": 99}))
    proc = cowest("view", str(newer.parent))
    assert proc.returncode == 2 and "newer cowest" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_serving_beyond_this_machine_warns_that_the_page_has_no_authentication(two_runs) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cowest", "view", str(two_runs[0]), "--host", "0.0.0.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "no authentication" in proc.stderr.readline()
        assert proc.stdout.readline().startswith("cowest view: http://0.0.0.0:")
    finally:
        proc.kill()
        proc.wait(10)


# ---- scale ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    """10,000 dev questions evaluated by mock models (`cowest eval`), and 5,000 feedback records of mock models
    (`run_feedback`, K = 4) with their pairs."""
    from cowest.core.config import load_config
    from cowest.models.mock import MockBackend
    from cowest.pipeline.feedback import load_done, run_feedback
    from cowest.pipeline.pairs import write_pairs
    from cowest.tasks.base import load_samples

    tmp = tmp_path_factory.mktemp("big")
    run = mock_run(tmp, "big", 10_000, "Paris")
    cfg = load_config(tmp / "big.yaml", ["feedback.k=4", "feedback.temperature=1.0"])
    samples = load_samples(cfg.task, "dev")[:5000]
    out = run / "round1" / "feedback"
    run_feedback(cfg, samples, out, weak=MockBackend("echo"), strong=MockBackend("echo"), judge=None,
                 chunk_size=500)
    write_pairs(list(load_done(out / "feedback.jsonl").values()), cfg.feedback, out)
    return run


def first_rows_s(browser, url: str) -> tuple[float, object]:
    """Seconds from opening the questions page at `url` to its first rows, and the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    t0 = time.perf_counter()
    page.goto(url + "#tab=questions&run=0")
    page.wait_for_selector("#q-list .row")
    return time.perf_counter() - t0, page


def test_ten_thousand_questions_open_within_two_seconds_and_the_list_stays_small(browser, big_run,
                                                                                   two_runs) -> None:
    """The issue's goal is 2 s on a quiet machine. The bound stretches with an 18-question run's time measured in
    the same test (8x it; 0.2-0.3 s on a quiet machine, so there the bound is the 2 s): other work on the machine
    does not fail the test, a page whose work grows with the run's size still does, and the DOM's row count checks
    the list is virtualised."""
    with Viewed(two_runs[0]) as small:
        reference, _ = first_rows_s(browser, small.url)
    with Viewed(big_run) as v:
        opened, page = first_rows_s(browser, v.url)
        assert page.inner_text("#q-count") == "10000 of 10000 questions"
        assert opened < max(2.0, 8 * reference), f"{opened:.2f} s to the first rows ({reference:.2f} s for 18)"
        assert page.locator("#q-list .row").count() < 100  # virtualised: the DOM holds what is in view
        page.eval_on_selector("#q-list", "l => l.scrollTop = l.scrollHeight")
        page.wait_for_selector("#q-list .row[data-id='q9999']")
        page.click("#q-list .row[data-id='q9999']")
        page.wait_for_function("document.querySelector('#q-title') && "
                               "document.querySelector('#q-title').textContent === 'q9999'", timeout=5000)
        t0 = time.perf_counter()
        page.click("button[data-tab=feedback]")
        page.wait_for_selector("table.feedback tbody tr")
        assert time.perf_counter() - t0 < max(2.0, 8 * reference)
        assert page.inner_text("#f-count") == "5000 feedback questions"


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"view-{name}.png"))


def test_a_resource_script_cannot_be_ended_by_its_text_and_keeps_nan() -> None:
    from cowest.view.serve import data_script

    script = data_script("r0-q0", {"question": "a </script><script>alert(1)</script>", "value": float("nan")})
    assert "</script>" not in script and script.startswith('cowestData("r0-q0", ')
    assert '"value": NaN' in script  # a JavaScript literal: an evaluation with no samples still shows


def test_a_routed_questions_decision_scores_and_thresholds_are_shown_flat() -> None:
    from cowest.view.data import _route

    meta = {"decision": "strong", "scores": {"self_consistency": 0.25}, "thresholds": {"self_consistency": 0.5},
            "weak": {"prediction": "x"}, "fallback": None}
    assert _route(meta) == {"decision": "strong", "score self_consistency": 0.25,
                            "threshold self_consistency": 0.5}
    assert _route(None) == {}
