"""The offline demo task: seeded, answers follow from the catalogue facts, train and dev never share a question."""

from __future__ import annotations

import pytest

from cowest.config import TaskConfig
from cowest.errors import UnknownNameError
from cowest.records import write_jsonl
from cowest.tasks import demo


def _expected(s) -> str:
    """Recompute the gold answer from the facts in the metadata, independently of the generator."""
    ps = s.metadata["products"]
    q = s.question
    kind = s.metadata["type"]
    if kind.startswith("fact_"):
        return str(ps[0][kind[5:]])
    a = ps[0]
    if kind == "cost_n":
        n = int(q.split()[3])
        return str(n * a["price"])
    b = ps[1]
    if kind == "heavier":
        return max((a, b), key=lambda p: p["weight"])["name"]
    if kind == "years_before":
        return str(abs(a["year"] - b["year"]))
    if kind == "same_city":
        return "yes" if a["city"] == b["city"] else "no"
    if kind == "total_weight":
        return str(a["weight"] + b["weight"])
    if kind == "price_diff":
        return str(abs(a["price"] - b["price"]))
    raise AssertionError(f"unknown question type {kind}")


def test_deterministic_and_seeded():
    a = demo.build("train", TaskConfig())
    b = demo.build("train", TaskConfig())
    assert [s.model_dump() for s in a] == [s.model_dump() for s in b]
    assert demo.catalogue(0) != demo.catalogue(1)
    assert [s.question for s in demo.build("dev", TaskConfig(seed=1))] != [s.question for s in demo.build("dev", TaskConfig())]


def test_sizes_and_limits():
    assert len(demo.build("train", TaskConfig())) == demo.TRAIN_SIZE
    assert len(demo.build("dev", TaskConfig())) == demo.DEV_SIZE
    # A larger eval limit draws more questions from the pool; they still never overlap train.
    dev = demo.build("dev", TaskConfig(eval_limit=80))
    train = demo.build("train", TaskConfig(eval_limit=80))
    assert len(dev) == 80
    assert not {s.question for s in dev} & {s.question for s in train}


@pytest.mark.parametrize("split", ["train", "dev"])
def test_answers_follow_from_facts(split):
    for s in demo.build(split, TaskConfig(seed=3)):
        assert s.gold == _expected(s), s.question
        assert s.family == "qa" and s.task == "demo"
        for p in s.metadata["products"]:
            # The rationale states every fact of the products it uses, and names them as in the question.
            assert f"{p['name']} {p['kind']}" in s.question
            assert f"{p['name']} {p['kind']}" in s.rationale


def test_splits_disjoint_and_dev_is_reasoning_only():
    train = demo.build("train", TaskConfig())
    dev = demo.build("dev", TaskConfig())
    assert not {s.question for s in train} & {s.question for s in dev}
    assert not {s.id for s in train} & {s.id for s in dev}
    assert all(not s.metadata["type"].startswith("fact_") for s in dev)
    assert sum(s.metadata["type"].startswith("fact_") for s in train) == 4 * demo.N_PRODUCTS
    # Dev asks about the same products training taught.
    names = {p.name for p in demo.catalogue(0)}
    assert all(p["name"] in names for s in dev for p in s.metadata["products"])
    # Unordered pairs: "X or Y" in dev never appears as "Y or X" in train.
    pairs = lambda rows: {(s.metadata["type"], frozenset(p["name"] for p in s.metadata["products"]))  # noqa: E731
                          for s in rows if len(s.metadata["products"]) == 2}
    assert not pairs(train) & pairs(dev)


def test_unknown_split_names_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: dev, test, train"):
        demo.build("validation", TaskConfig())


def test_exported_jsonl_reads_back(tmp_path):
    rows = demo.build("dev", TaskConfig())
    write_jsonl(tmp_path / "dev.jsonl", rows)
    assert demo.read_file(tmp_path / "dev.jsonl", TaskConfig()) == rows
    assert demo.find_files(tmp_path, TaskConfig()) == {}


def test_registered_and_loadable():
    from cowest.tasks.base import get_task, load_samples

    assert get_task("demo").family == "qa"
    assert get_task("demo").metrics[0] == "exact_match"
    assert len(load_samples(TaskConfig(), "train", limit=20)) == 20
