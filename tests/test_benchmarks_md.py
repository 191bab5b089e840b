"""BENCHMARKS.md holds only blocks that a script's `--record` wrote, each naming that script (pure file check)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- (.+?):start -->\n(.*?)<!-- \1:end -->", re.S)


def test_every_recorded_block_names_the_script_that_wrote_it() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert len(blocks) == text.count(":start -->") > 0, "a block's start marker has no matching end marker"
    for name, body in blocks:
        # The heading and the line under it say which script and command measured the block.
        script = re.search(r"benchmarks/(\w+)\.py", body[:800])
        assert script, f"block {name!r} does not name the script that wrote it"
        assert (ROOT / script.group(0)).is_file(), f"block {name!r} names {script.group(0)}, which does not exist"
        assert name.split()[0].removesuffix(".py") == script.group(1), (name, script.group(0))
