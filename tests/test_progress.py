"""Progress: counts, rate and ETA on a TTY; a line a minute on a pipe (a log file); silent when disabled."""

import io

from cowest.core.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_tty_line_has_counts_rate_hits_and_eta():
    out = FakeTTY()
    p = Progress(10, "eval x", stream=out, min_interval_s=0, done=2)
    p.t0 -= 4.0  # as if 4 s had passed
    p.update(2, tokens=400, cache_hits=3)
    line = p.line()
    assert line.startswith("eval x 4/10 | ") and "tok/s" in line and "cache hits 3" in line
    assert "ETA 0:" in line  # 2 new items in ~4 s, 6 left -> about 12 s
    assert 11 <= int(line.split("ETA 0:")[1][:2]) <= 13
    assert out.getvalue().endswith("\r")
    p.update(6)
    p.close()
    assert out.getvalue().endswith("\n") and "10/10" in out.getvalue().splitlines()[-1]


def test_a_log_file_gets_nothing_from_work_within_the_first_minute_unless_forced():
    pipe = io.StringIO()
    with Progress(3, "q", stream=pipe, min_interval_s=0) as p:
        p.update(3)
    assert pipe.getvalue() == ""
    forced = io.StringIO()
    with Progress(2, "f", stream=forced, enabled=True, min_interval_s=0) as p:
        p.update(1)
        p.update(1)
    assert forced.getvalue().splitlines()[0].startswith("f 1/2") and len(forced.getvalue().splitlines()) == 2


def test_a_log_file_gets_a_line_a_minute_and_the_last_line():
    from cowest.core.progress import HEARTBEAT_S

    log = io.StringIO()
    p = Progress(10, "rationales", stream=log, min_interval_s=0)
    p.update(2)
    assert log.getvalue() == ""  # within the first minute: nothing
    p.t0 -= HEARTBEAT_S
    p._last_draw -= HEARTBEAT_S  # a minute has passed
    p.update(2)
    p.update(1)  # the next line waits for the next minute
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rationales 4/10 | ") and "ETA" in lines[0]
    p.update(5)  # done: the last line, since the log has had one
    p.update(0, faults=0)  # a caller's closing update adds no second copy of it
    assert log.getvalue().splitlines()[-1].startswith("rationales 10/10 | ") and len(log.getvalue().splitlines()) == 2


def test_the_line_shows_faults_and_failed_items_once_there_are_any() -> None:
    import io

    p = Progress(10, "eval x", stream=io.StringIO(), enabled=False)
    p.update(3, tokens=30)
    assert "faults" not in p.line()
    p.update(2, failed=1, faults=7)
    p.update(1, faults=9)
    assert "faults 9, failed 1" in p.line() and "6/10" in p.line()
