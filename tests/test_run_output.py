"""What a person sees during a run: the cut-budget warning, the libraries' output kept in a log file, and the one
progress line per training stage."""

from __future__ import annotations

import io
import logging
import os
import warnings

from cowest.core.config import validate_config
from cowest.cli.library_output import library_output
from cowest.core.progress import Progress
from cowest.core.results import Metrics
from cowest.pipeline.summary import cut_warnings


def _metrics(strong_cut: int, weak_cut: int, calls: int = 100) -> Metrics:
    usage = {"strong": {"calls": calls, "cut": strong_cut}, "weak": {"calls": calls, "cut": weak_cut}}
    system = {"strategy": "collaborate", "metrics": {}}
    return Metrics.model_validate({"task": "demo", "n_samples": 1, "metrics": [], "headline": "exact_match",
                                   "systems": {"a": {**system, "usage": usage},
                                               "b": {**system, "usage": {"strong": {"calls": calls, "cut": 0}}}}})


def test_a_budget_that_cuts_too_many_replies_is_named_with_the_setting_to_raise():
    cfg = validate_config({"generation": {"strong": {"max_tokens": 96}}})
    lines = cut_warnings(_metrics(strong_cut=30, weak_cut=5), cfg)
    # 30 of 200 strong replies = 15% > 5%; the weak model's 5 of 100 is exactly at the limit, not over it.
    assert lines == ["30 of 200 strong replies (15%) hit their token limit; raise generation.strong.max_tokens "
                     "(now 96) or ask for shorter replies"]
    assert cut_warnings(_metrics(strong_cut=30, weak_cut=5), validate_config({"eval": {"max_cut_share": 0.2}})) == []


def test_library_output_goes_to_the_log_file_and_comes_back_after(tmp_path):
    log = tmp_path / "logs" / "libraries.log"
    lib = logging.getLogger("transformers.modeling_utils")
    before = os.environ.get("TQDM_DISABLE")
    with library_output(log):
        assert os.environ["TQDM_DISABLE"] == "1"
        lib.warning("Setting pad_token_id to eos_token_id")
        warnings.warn("a library's FutureWarning", FutureWarning)
    text = log.read_text()
    assert "Setting pad_token_id" in text and "FutureWarning" in text
    assert os.environ.get("TQDM_DISABLE") == before  # restored
    assert not logging.getLogger("transformers").handlers or not any(
        getattr(h, "baseFilename", None) == str(log) for h in logging.getLogger("transformers").handlers)


def test_verbose_leaves_the_console_alone(tmp_path):
    log = tmp_path / "libraries.log"
    with library_output(log, verbose=True):
        logging.getLogger("trl").warning("shown on the console")
    assert not log.exists()


def test_a_progress_note_replaces_the_rate_for_training():
    class TTY(io.StringIO):
        def isatty(self):
            return True

    p = Progress(40, "sft (drafts)", stream=TTY(), min_interval_s=0)
    p.update(10, note="loss 0.512")
    line = p.line()
    assert line.startswith("sft (drafts) 10/40 | loss 0.512 | ETA") and "tok/s" not in line
