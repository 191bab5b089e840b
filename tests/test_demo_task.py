"""The offline demo task: seeded, answers follow from the catalogue facts, train and dev never share a question."""

from __future__ import annotations

import re

import pytest

from cowest.core.config import TaskConfig
from cowest.core.errors import UnknownNameError
from cowest.core.records import write_jsonl
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
        return str(int(q.split()[4]) * a["price"])
    if kind == "anniversary":
        return str(a["year"] + int(q.split(" turn ")[1].split()[0]))
    if kind == "heaviest":
        return max(ps, key=lambda p: p["weight"])["name"]
    if kind == "first_launched":
        return min(ps, key=lambda p: p["year"])["name"]
    b = ps[1]
    if kind == "years_between":
        return str(abs(a["year"] - b["year"]))
    if kind == "cheaper_city":
        return min((a, b), key=lambda p: p["price"])["city"]
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
    assert len(demo.build("train", TaskConfig())) == 8 * demo.N_PRODUCTS + demo.TRAIN_REASONING
    assert len(demo.build("dev", TaskConfig())) == demo.DEV_SIZE >= 100
    assert len(demo.build("tune", TaskConfig())) == demo.TUNE_SIZE
    # A larger eval limit draws more questions from the pool; they still never overlap train.
    dev = demo.build("dev", TaskConfig(eval_limit=150))
    train = demo.build("train", TaskConfig(eval_limit=150))
    assert len(dev) == 150
    assert not {s.question for s in dev} & {s.question for s in train}


@pytest.mark.parametrize("split", ["train", "dev", "tune", "facts"])
def test_answers_follow_from_facts(split):
    for s in demo.build(split, TaskConfig(seed=3)):
        assert s.gold == _expected(s), s.question
        assert s.family == "qa" and s.task == "demo"
        for p in s.metadata["products"]:
            # The rationale states every fact of the products it uses, and names them as in the question.
            assert f"{p['name']} {p['kind']}" in s.question
            assert f"{p['name']} {p['kind']}" in s.rationale
            assert f"{p['name']} {p['kind']}" in s.knowledge
        # The knowledge is facts only: every sentence of it is a catalogue fact, and the step is not in it.
        facts = set(demo.documents(TaskConfig(seed=3)))
        assert all(f"{sent}." in facts for sent in s.knowledge.rstrip(".").split(". ")), s.knowledge


def test_splits_disjoint_and_dev_is_reasoning_only():
    from cowest.tasks.base import check_disjoint

    train = demo.build("train", TaskConfig())
    dev = demo.build("dev", TaskConfig())
    tune = demo.build("tune", TaskConfig())
    for a, b in ((train, dev), (train, tune), (tune, dev)):
        assert not {s.question for s in a} & {s.question for s in b}
        check_disjoint(a, b, "dev")  # the run's own guard agrees
    assert all(not s.metadata["type"].startswith("fact_") for s in dev + tune)
    assert sum(s.metadata["type"].startswith("fact_") for s in train) == 8 * demo.N_PRODUCTS
    # The recall split is exactly the training facts.
    facts = demo.build("facts", TaskConfig())
    assert {s.question for s in facts} == {s.question for s in train if s.metadata["type"].startswith("fact_")}
    # Every question type is in dev in about equal numbers (the pool is dealt round-robin by type).
    from collections import Counter

    counts = Counter(s.metadata["type"] for s in dev)
    assert len(counts) == 8 and max(counts.values()) - min(counts.values()) <= 1
    # Dev asks about the same products training taught.
    names = {p.name for p in demo.catalogue(0)}
    assert all(p["name"] in names for s in dev for p in s.metadata["products"])
    # Unordered pairs: "X or Y" in dev never appears as "Y or X" in train.
    pairs = lambda rows: {(s.metadata["type"], frozenset(p["name"] for p in s.metadata["products"]))  # noqa: E731
                          for s in rows if len(s.metadata["products"]) == 2}
    assert not pairs(train) & pairs(dev)


def test_unknown_split_names_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: dev, facts, feedback, test, train, tune"):
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


def test_answers_are_closed_form_and_the_question_says_which():
    for s in demo.build("dev", TaskConfig()) + demo.build("facts", TaskConfig()):
        if s.answer_format == "number":
            assert s.gold.isdigit() and s.question.endswith("Answer with a number.")
        else:
            assert s.answer_format == "choice" and s.gold in s.choices
            assert s.question.endswith(("Answer with the product's name.", "Answer with the city."))
            if s.metadata["type"] in ("heaviest", "first_launched"):
                assert len(s.choices) == 3 and all(c in s.question for c in s.choices)


def test_a_leaked_dev_question_stops_the_run():
    from cowest.core.errors import DataError
    from cowest.tasks.base import check_disjoint

    train = demo.build("train", TaskConfig())
    dev = demo.build("dev", TaskConfig())
    leaked = dev[5].model_copy(update={"id": "other-id", "question": dev[5].question.upper() + "  "})
    with pytest.raises(DataError, match=r"1 questions of the 'dev' split are also in the training data \(demo-dev-5\)"):
        check_disjoint(train + [leaked], dev, "dev")


def test_states_every_fact_needs_each_fact_sentence_word_for_word():
    s = next(s for s in demo.build("dev", TaskConfig()) if s.knowledge.count(". ") >= 1)
    first, second = s.knowledge.split(". ", 1)
    assert demo.states_every_fact(s.knowledge, s.knowledge)
    assert demo.states_every_fact(s.knowledge, f"{second} Also, {first}.")  # any order, other words around
    assert not demo.states_every_fact(s.knowledge, f"{first}.")  # a fact missing
    wrong = re.sub(r"\d+", lambda m: str(int(m.group()) + 1), first, count=1)
    assert wrong != first
    assert not demo.states_every_fact(s.knowledge, s.knowledge.replace(first, wrong))  # a wrong number
