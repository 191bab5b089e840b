"""Task loaders on the real shared data (row counts of its README) and on the upstream formats; every kind of bad
input fails naming the file, the line and the field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cowest.core.config import TaskConfig
from cowest.core.errors import ConfigError, CowestError, DataError, UnknownNameError
from cowest.tasks.base import get_task, load_samples, task_names

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "README.md").is_file(), reason=f"shared data not found at {DATA}")

# Row counts from shared/data/README.md.
COUNTS = {
    ("ifqa", None): (2400, 700),
    ("medmcqa", None): (2091, 500),
    ("pubmedqa", None): (450, 50),
    ("ethics", "commonsense"): (3385, 500),
    ("ethics", "deontology"): (18164, 3596),
    ("ethics", "justice"): (21791, 2704),
    ("ethics", "virtue"): (28245, 4975),
    ("ethics", "utilitarianism"): (13738, 4808),
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read(name: str, path: Path, **cfg) -> list:
    """The task's reader on `path`; keyword arguments that are no TaskConfig field are the task's options."""
    options = {k: cfg.pop(k) for k in list(cfg) if k not in TaskConfig.model_fields}
    return get_task(name).read_file(path, TaskConfig(name=name, options=options, **cfg))


def test_registry_lists_every_builtin_task() -> None:
    assert {"ifqa", "medmcqa", "pubmedqa", "ethics", "prosocial_dialog", "jsonl"} <= set(task_names())
    with pytest.raises(UnknownNameError, match="unknown task 'ifqa2'; valid: .*ifqa.*medmcqa"):
        get_task("ifqa2")


# ---- the real shared data ------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("name,subset", list(COUNTS))
def test_real_files_match_readme_counts(name: str, subset: str | None) -> None:
    cfg = TaskConfig(name=name, data=str(DATA), subset=subset)
    train, dev = (load_samples(cfg, split) for split in ("train", "dev"))
    assert (len(train), len(dev)) == COUNTS[(name, subset)]
    assert not {s.id for s in train} & {s.id for s in dev}
    for s in train[:50] + dev[:50]:
        if s.family == "mc":
            assert s.gold in s.options
        elif s.family == "cls":
            assert s.gold in s.labels


@needs_data
def test_real_ifqa_keeps_context_out_of_the_question_unless_asked() -> None:
    plain = load_samples(TaskConfig(name="ifqa", data=str(DATA)), "dev", limit=5)
    shown = load_samples(TaskConfig(name="ifqa", data=str(DATA), options={"show_context": True}), "dev", limit=5)
    assert [s.id for s in plain] == [s.id for s in shown]  # the seeded subsample does not depend on show_context
    for p, s in zip(plain, shown):
        assert p.metadata["context"] and p.metadata["context"][0] not in p.question
        assert s.question.startswith("Context:\n") and p.question in s.question


@needs_data
def test_real_pubmedqa_includes_the_abstract_and_rationale() -> None:
    s = load_samples(TaskConfig(name="pubmedqa", data=str(DATA)), "dev")[0]
    assert s.question.startswith("Abstract:\n") and s.metadata["question_only"] in s.question
    assert s.metadata["contexts"][0] in s.question
    assert s.rationale and s.labels == ["yes", "no", "maybe"]


@needs_data
def test_real_utilitarianism_answers_are_not_always_a() -> None:
    samples = load_samples(TaskConfig(name="ethics", data=str(DATA), subset="utilitarianism"), "dev")
    golds = Counter(s.gold for s in samples)
    assert 0.45 < golds["A"] / len(samples) < 0.55
    # deterministic: a second read gives the same letters
    again = load_samples(TaskConfig(name="ethics", data=str(DATA), subset="utilitarianism"), "dev")
    assert [s.gold for s in again] == [s.gold for s in samples]


@needs_data
def test_limit_subsamples_with_the_seed() -> None:
    cfg = TaskConfig(name="medmcqa", data=str(DATA), seed=3)
    a, b = load_samples(cfg, "dev", limit=20), load_samples(cfg, "dev", limit=20)
    c = load_samples(cfg.model_copy(update={"seed": 4}), "dev", limit=20)
    assert len(a) == 20 and [s.id for s in a] == [s.id for s in b] != [s.id for s in c]


@needs_data
def test_unknown_split_and_subset_list_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="'test'.*valid: dev, train"):
        load_samples(TaskConfig(name="ifqa", data=str(DATA)), "test")
    with pytest.raises(UnknownNameError, match="'moral'.*valid: commonsense, deontology"):
        load_samples(TaskConfig(name="ethics", data=str(DATA), subset="moral"), "train")


# ---- upstream formats ----------------------------------------------------------------------------------------


def test_ifqa_upstream_json_array(tmp_path: Path) -> None:
    rows = [{"idx": 0, "question": "If X, who?", "answers": ["Ann", "Ann B."], "context": ["p1", "p2"]},
            {"idx": 1, "question": "If Y, when?", "answers": ["1855"], "context": ["p3"]}]
    path = tmp_path / "dataset" / "full_split" / "dev.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    assert get_task("ifqa").find_files(tmp_path, TaskConfig(name="ifqa")) == {"dev": path}
    samples = load_samples(TaskConfig(name="ifqa", data=str(tmp_path)), "dev")
    assert [s.id for s in samples] == ["dev-0", "dev-1"] and samples[0].answers == ["Ann", "Ann B."]
    assert samples[1].metadata["context"] == ["p3"] and samples[1].question == "If Y, when?"


def test_ifqa_json_array_error_names_the_line(tmp_path: Path) -> None:
    text = '[\n  {"idx": 0, "question": "q", "answers": ["a"]},\n  {"idx": 1,\n   "question": "q2"}\n]\n'
    path = tmp_path / "dev.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.json:3, field 'answers': missing"):
        read("ifqa", path)


def test_medmcqa_hub_rows_zero_based_cop_and_explanation(tmp_path: Path) -> None:
    base = {"question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "subject_name": "Anatomy"}
    path = write_jsonl(tmp_path / "m.jsonl", [{**base, "id": "a", "cop": 0, "exp": "Because."},
                                              {**base, "id": "b", "cop": 3, "exp": ""}])
    a, b = read("medmcqa", path)
    assert (a.gold, b.gold) == ("A", "D") and a.options == {"A": "w", "B": "x", "C": "y", "D": "z"}
    assert a.rationale == "Because." and b.rationale is None and a.metadata["subject_name"] == "Anatomy"


def test_medmcqa_original_release_one_based_cop(tmp_path: Path) -> None:
    base = {"question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z"}
    path = write_jsonl(tmp_path / "m.jsonl", [{**base, "id": "a", "cop": 4}, {**base, "id": "b", "cop": 1}])
    assert [s.gold for s in read("medmcqa", path)] == ["D", "A"]
    mixed = write_jsonl(tmp_path / "x.jsonl", [{**base, "id": "a", "cop": 0}, {**base, "id": "b", "cop": 4}])
    with pytest.raises(DataError, match=r"x\.jsonl:2, field 'cop'.*neither 0-based"):
        read("medmcqa", mixed)


def test_pubmedqa_original_and_hub_formats(tmp_path: Path) -> None:
    body = {"QUESTION": "Does X help?", "CONTEXTS": ["Aim.", "Results."], "LABELS": ["OBJECTIVE", "RESULTS"],
            "MESHES": ["Humans"], "final_decision": "maybe", "LONG_ANSWER": "Unclear."}
    ori = tmp_path / "pqal_fold0" / "dev_set.json"
    ori.parent.mkdir()
    ori.write_text(json.dumps({"111": body, "222": {**body, "final_decision": "no"}}, indent=2), encoding="utf-8")
    assert get_task("pubmedqa").find_files(tmp_path, TaskConfig(name="pubmedqa")) == {"dev": ori}
    a, b = read("pubmedqa", ori)
    assert (a.id, a.gold, b.id, b.gold) == ("111", "maybe", "222", "no")
    assert "Objective: Aim." in a.question and a.rationale == "Unclear."
    hub = write_jsonl(tmp_path / "h.jsonl", [{"pubid": 5, "question": "Q?", "final_decision": "yes",
                                              "long_answer": "L", "context": {"contexts": ["C1"], "labels": ["A"],
                                                                              "meshes": []}}])
    (s,) = read("pubmedqa", hub)
    assert s.id == "5" and "C1" in s.question and s.gold == "yes"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"111": body, "333": {**body, "final_decision": "perhaps"}}, indent=2), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:\d+, field 'final_decision': unknown label 'perhaps'; valid: yes"):
        read("pubmedqa", bad)


CSV_CASES = {
    "commonsense": ("cm_train.csv", "label,input,is_short,edited\n1,I kicked the dog.,True,False\n"
                                    "0,\"I fed the dog, then walked it.\",True,False\n", ["wrong", "not wrong"]),
    "deontology": ("deontology_train.csv", "label,scenario,excuse\n1,Can you cook?,No because I am at work.\n"
                                           "0,Can you cook?,No because I like pizza.\n", ["reasonable", "unreasonable"]),
    "justice": ("justice_train.csv", "label,scenario\n1,I deserve a raise because I worked more.\n"
                                     "0,I deserve a raise because I have blue eyes.\n", ["reasonable", "unreasonable"]),
    "virtue": ("virtue_train.csv", "label,scenario\n1,Ann gave away her lunch. [SEP] generous\n"
                                   "0,Ann gave away her lunch. [SEP] selfish\n", ["yes", "no"]),
}


@pytest.mark.parametrize("subset", list(CSV_CASES))
def test_ethics_release_csvs(tmp_path: Path, subset: str) -> None:
    fname, text, golds = CSV_CASES[subset]
    folder = tmp_path / "ethics" / subset
    folder.mkdir(parents=True)
    (folder / fname).write_text(text, encoding="utf-8")
    test_file = folder / fname.replace("train", "test")
    test_file.write_text(text, encoding="utf-8")
    cfg = TaskConfig(name="ethics", data=str(tmp_path), subset=subset)
    files = get_task("ethics").find_files(tmp_path, cfg)
    assert files["train"] == folder / fname and files["dev"] == files["test"] == test_file
    samples = load_samples(cfg, "train")
    assert [s.gold for s in samples] == golds
    assert samples[0].id == f"{subset}/{Path(fname).stem}/2"  # line 2: the first row after the header


def test_ethics_virtue_splits_scenario_and_trait(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "v.jsonl", [{"label": 1, "scenario": "Ann gave away her lunch. [SEP] generous"}])
    (s,) = read("ethics", path, subset="virtue")
    assert "Scenario: Ann gave away her lunch." in s.question and "'generous'" in s.question and "[SEP]" not in s.question
    bad = write_jsonl(tmp_path / "b.jsonl", [{"label": 1, "scenario": "no separator here"}])
    with pytest.raises(DataError, match=r"b\.jsonl:1, field 'scenario': expected 'scenario text \[SEP\] trait'"):
        read("ethics", bad, subset="virtue")


def test_ethics_utilitarianism_csv_without_header(tmp_path: Path) -> None:
    rows = [(f"I won {i} prizes today.", f"I lost {i} games today.") for i in range(40)]
    path = tmp_path / "util_train.csv"
    path.write_text("".join(f'"{a}","{b}"\n' for a, b in rows), encoding="utf-8")
    samples = read("ethics", path, subset="utilitarianism")
    assert len(samples) == 40  # the first line is data, not a header
    for s, (more, less) in zip(samples, rows):
        assert s.family == "mc" and s.options[s.gold] == more and set(s.options.values()) == {more, less}
    assert 5 < sum(s.gold == "A" for s in samples) < 35
    assert samples[0].id == "utilitarianism/util_train/1"
    bad = tmp_path / "util_test.csv"
    bad.write_text('"a","b"\n"only one column"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"util_test\.csv:2: expected 2 columns"):
        read("ethics", bad, subset="utilitarianism")


def test_ethics_default_subset_is_commonsense(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ethics" / "commonsense" / "dev.jsonl", [{"label": 0, "input": "I helped."}])
    (s,) = load_samples(TaskConfig(name="ethics", data=str(tmp_path)), "dev")
    assert s.gold == "not wrong" and s.labels == ["not wrong", "wrong"] and s.metadata["subset"] == "commonsense"


PROSOCIAL_ROWS = [
    {"context": "I want to scare my neighbour's dog.", "response": "That could hurt the dog; please don't.",
     "rots": ["It's wrong to scare animals."], "safety_label": "__needs_caution__",
     "safety_annotations": ["needs caution", "needs caution", "casual"], "safety_annotation_reasons": ["cruel"],
     "source": "sbic", "etc": None, "dialogue_id": 7, "response_id": 0, "episode_done": False},
    {"context": "I baked bread today!", "response": "Nice!", "rots": [], "safety_label": "__casual__",
     "safety_annotations": ["casual"] * 3, "safety_annotation_reasons": [], "source": "socialchem", "etc": None,
     "dialogue_id": 8, "response_id": 0, "episode_done": True},
]


def test_prosocial_dialog_hub_rows(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "prosocial_dialog" / "valid.jsonl", PROSOCIAL_ROWS)
    cfg = TaskConfig(name="prosocial_dialog", data=str(tmp_path))
    a, b = load_samples(cfg, "dev")  # the release's "valid" is the dev split
    assert (a.id, a.gold, b.gold) == ("7-0", "__needs_caution__", "__casual__")
    assert a.question == "Utterance: I want to scare my neighbour's dog." and "please" not in a.question
    assert a.rationale == "It's wrong to scare animals." and b.rationale is None
    assert a.metadata["response"].startswith("That could") and len(a.labels) == 5


def test_prosocial_dialog_original_dialogue_format(tmp_path: Path) -> None:
    dialogues = [[{"text": "Hi!", "labels": ["Hello!"], "rots": [], "safety_label": "__casual__"},
                  {"text": "I'll key his car.", "labels": ["Don't."], "rots": ["Respect property."],
                   "safety_label": "__needs_intervention__"}]]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(dialogues, indent=2), encoding="utf-8")
    a, b = read("prosocial_dialog", path)
    assert (a.id, b.id, b.gold, b.metadata["response"]) == ("0-0", "0-1", "__needs_intervention__", "Don't.")


def test_prosocial_dialog_unknown_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [PROSOCIAL_ROWS[1], {**PROSOCIAL_ROWS[0], "safety_label": "__bad__"}])
    with pytest.raises(DataError, match=r"p\.jsonl:2, field 'safety_label': unknown label '__bad__'; valid: __casual__"):
        read("prosocial_dialog", path)


# ---- the generic jsonl task ----------------------------------------------------------------------------------


def test_jsonl_task_families(tmp_path: Path) -> None:
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"q": "Capital of France?", "a": ["Paris", "paris city"], "why": "Known."}])
    (s,) = read("jsonl", qa, family="qa", fields={"question": "q", "answer": "a", "rationale": "why"})
    assert (s.id, s.answers, s.rationale, s.family) == ("qa-1", ["Paris", "paris city"], "Known.", "qa")
    mc = write_jsonl(tmp_path / "mc.jsonl", [{"id": "m1", "question": "2+2?", "options": ["3", "4"], "answer": "b"}])
    (s,) = read("jsonl", mc, family="mc")
    assert s.options == {"A": "3", "B": "4"} and s.gold == "B"
    cls = write_jsonl(tmp_path / "cls.jsonl", [{"id": 1, "text": "great", "y": "pos"}, {"id": 2, "text": "bad", "y": 1}])
    a, b = read("jsonl", cls, family="cls", labels=["pos", "neg"], fields={"question": "text", "label": "y"})
    assert (a.gold, b.gold, a.labels) == ("pos", "neg", ["pos", "neg"])


def test_jsonl_task_config_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": 1, "question": "q", "answer": "a"}])
    with pytest.raises(ConfigError, match=r"task\.options\.family"):
        read("jsonl", path)
    with pytest.raises(ConfigError, match=r"task\.options\.labels"):
        read("jsonl", path, family="cls")
    with pytest.raises(ConfigError, match="'task.options.fields.anwser': unknown field; valid: id, question, answer"):
        read("jsonl", path, family="qa", fields={"anwser": "a"})
    with pytest.raises(DataError, match=r"x\.jsonl:1, field 'ident': missing"):
        read("jsonl", path, family="qa", fields={"id": "ident"})  # an explicitly mapped id must exist


# ---- bad input: every case names file, line and field --------------------------------------------------------

BAD_CASES = [
    # (task, extra cfg, rows, error pattern)
    ("ifqa", {}, ['{"idx": 0, "question": "q", "answers": ["a"]}', '{"idx": 1, "question": "q", "answers": ['],
     r"f\.jsonl:2: malformed JSON"),
    ("ifqa", {}, [{"idx": 0, "answers": ["a"]}], r"f\.jsonl:1, field 'question': missing"),
    ("ifqa", {}, [{"idx": 0, "question": "q", "answers": []}], r"f\.jsonl:1, field 'answers': is empty"),
    ("ifqa", {}, [{"idx": 0, "question": "q", "answers": ["a", 3]}], r"f\.jsonl:1, field 'answers': item 1"),
    ("ifqa", {}, [{"idx": 0, "question": "q", "answers": ["a"]}, {"idx": 0, "question": "q", "answers": ["b"]}],
     r"f\.jsonl:2, field 'id': duplicate id 'f-0' \(first on line 1\)"),
    ("ifqa", {}, ['{"idx": 0, "question": "q", "answers": ["a"]}', '"a string"'],
     r"f\.jsonl:2: expected a JSON object, got str"),
    ("ifqa", {}, ["[1, 2]"], r"f\.jsonl:1: expected a JSON object, got int"),  # a JSON array of non-objects
    ("medmcqa", {}, [{"id": "a", "question": "q", "options": {"A": "x", "B": "y"}, "answer": "E"}],
     r"f\.jsonl:1, field 'answer': unknown option letter 'E'; valid: A, B"),
    ("medmcqa", {}, [{"id": "a", "question": "q", "options": {"A": "x", "B": ""}, "answer": "A"}],
     r"f\.jsonl:1, field 'options': option 'B' must be a non-empty string"),
    ("medmcqa", {}, [{"id": "a", "question": "q", "answer": "A"}], r"f\.jsonl:1, field 'options': missing"),
    ("medmcqa", {}, [{"id": "a", "question": "q", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": -1}],
     r"f\.jsonl:1, field 'cop': unknown correct option -1"),
    ("pubmedqa", {}, [{"pubid": "1", "question": "q", "contexts": ["c"], "final_decision": "perhaps"}],
     r"f\.jsonl:1, field 'final_decision': unknown label 'perhaps'; valid: yes, no, maybe"),
    ("pubmedqa", {}, [{"pubid": "1", "question": "q", "final_decision": "yes"}], r"f\.jsonl:1, field 'contexts': missing"),
    ("ethics", {"subset": "commonsense"}, [{"label": 2, "input": "x"}], r"f\.jsonl:1, field 'label': unknown label 2"),
    ("ethics", {"subset": "commonsense"}, [{"label": "yes", "input": "x"}], r"f\.jsonl:1, field 'label': expected int"),
    ("ethics", {"subset": "deontology"}, [{"label": 1, "scenario": "x"}], r"f\.jsonl:1, field 'excuse': missing"),
    ("ethics", {"subset": "utilitarianism"}, [{"more_pleasant": "x"}], r"f\.jsonl:1, field 'less_pleasant': missing"),
    ("jsonl", {"family": "cls", "labels": ["a", "b"]}, [{"question": "q", "label": "c"}],
     r"f\.jsonl:1, field 'label': unknown label 'c'; valid: a, b"),
    ("jsonl", {"family": "cls", "labels": ["a", "b"]}, [{"question": "q", "label": 5}],
     r"f\.jsonl:1, field 'label': label index 5 out of range 0..1"),
    ("jsonl", {"family": "mc"}, [{"question": "q", "options": {"A": "x"}, "answer": "B"}],
     r"f\.jsonl:1, field 'answer': unknown option letter 'B'; valid: A"),
]


@pytest.mark.parametrize("task,extra,rows,pattern", BAD_CASES)
def test_bad_rows_fail_naming_file_line_field(tmp_path: Path, task: str, extra: dict, rows: list, pattern: str) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    with pytest.raises(DataError, match=pattern):
        read(task, path, **extra)


@pytest.mark.parametrize("task,extra", [("ifqa", {}), ("medmcqa", {}), ("pubmedqa", {}), ("prosocial_dialog", {}),
                                        ("ethics", {"subset": "justice"}), ("jsonl", {"family": "qa"})])
def test_empty_file_is_an_error(tmp_path: Path, task: str, extra: dict) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: no rows \(empty file\)"):
        read(task, path, **extra)
    csv = tmp_path / "justice_test.csv"
    csv.write_text("label,scenario\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"justice_test\.csv: no rows"):
        read("ethics", csv, subset="justice")


def test_missing_data_folder_files_and_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="no files of task 'medmcqa' found"):
        load_samples(TaskConfig(name="medmcqa", data=str(tmp_path)), "train")
    with pytest.raises(DataError, match="file not found"):
        read("ifqa", tmp_path / "nope.jsonl")
    # No network here: the hub loader must end in one actionable error, not a traceback from deep inside datasets.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CowestError, match="could not load the Hugging Face dataset allenai/prosocial-dialog.*task.data"):
        load_samples(TaskConfig(name="prosocial_dialog"), "dev")
    with pytest.raises(UnknownNameError, match="'dev'.*valid: train"):
        load_samples(TaskConfig(name="pubmedqa"), "dev")


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    # Spreadsheet exports start with a BOM; without utf-8-sig the first header would read '\ufefflabel'.
    path = tmp_path / "cm_test.csv"
    path.write_text("label,input,is_short,edited\n1,I lied to my friend.,True,False\n", encoding="utf-8-sig")
    (s,) = read("ethics", path, subset="commonsense")
    assert s.gold == "wrong"


def test_jsonl_task_reports_the_metrics_of_its_family():
    from cowest.tasks.base import task_metrics

    assert task_metrics(TaskConfig(name="jsonl", options={"family": "cls"})) == ("accuracy", "macro_f1")
    assert task_metrics(TaskConfig(name="jsonl", options={"family": "qa"}))[0] == "exact_match"
    assert task_metrics(TaskConfig(name="medmcqa")) == get_task("medmcqa").metrics


def test_medmcqa_cop_base_is_never_guessed_when_the_values_do_not_settle_it(tmp_path):
    rows = [{"id": f"r{i}", "question": "q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": c}
            for i, c in enumerate([1, 2, 3])]
    f = tmp_path / "small.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"small\.jsonl:1.*'cop'.*task\.options\.cop_base"):
        load_samples(TaskConfig(name="medmcqa", data=str(f)), "train")
    one = load_samples(TaskConfig(name="medmcqa", data=str(f), options={"cop_base": 1}), "train")
    zero = load_samples(TaskConfig(name="medmcqa", data=str(f), options={"cop_base": 0}), "train")
    assert [s.gold for s in one] == ["A", "B", "C"] and [s.gold for s in zero] == ["B", "C", "D"]


@pytest.mark.parametrize("name,options,message", [
    ("medmcqa", {"show_context": True}, "'task.options.show_context': unknown option of task 'medmcqa'; valid: cop_base"),
    ("ifqa", {"cop_base": 1}, "'task.options.cop_base': unknown option of task 'ifqa'; valid: show_context"),
    ("jsonl", {"famly": "qa"}, "'task.options.famly': unknown option of task 'jsonl'; valid: family, fields, labels"),
    ("demo", {"x": 1}, "'task.options.x': unknown option of task 'demo'; valid: none (it takes no options)"),
    ("medmcqa", {"cop_base": 2}, "'task.options.cop_base': Input should be 0 or 1 (got 2)"),
])
def test_a_task_validates_its_own_options(name: str, options: dict, message: str) -> None:
    from cowest.tasks.base import check_task

    with pytest.raises(ConfigError) as e:
        check_task(TaskConfig(name=name, options=options))
    assert str(e.value) == message


def test_an_unknown_task_option_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cowest.cli import main

    cfg = tmp_path / "exp.yaml"
    cfg.write_text("task: {name: medmcqa, options: {cop_bse: 1}}\n")
    assert main(["eval", str(cfg), f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err == "cowest: error: 'task.options.cop_bse': unknown option of task 'medmcqa'; valid: cop_base\n"
