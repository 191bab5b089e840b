"""The offline demo task: questions about a fictional company's products that no pretrained model can know.

A seeded catalogue of invented products (price, weight, launch year, factory city). The training split holds every
plain fact (in two phrasings) plus reasoning questions with a rationale that states the facts used and the step
(and, for `knowledge` drafts, the facts alone);
`dev` (reported) and `tune` (for choosing settings) hold other reasoning questions over the same products, so the
weak model learns the facts from training and never sees a dev or tune question. Each reasoning question needs two
or three facts and one step the 135M weak model does poorly and the strong model does well (a sum, a difference, a
product, an ordering of three, a date), so each model alone is limited and together they are not.

Every answer is closed-form (a number, or one of a listed set of names or cities) and the question says which, so
the matcher (`cowest.scoring.extract`) can accept the right entity inside a sentence and refuse a reply naming
several. Everything is a pure function of `cfg.seed`: every machine builds the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cowest.core.config import TaskConfig
from cowest.core.records import Sample, read_jsonl
from cowest.tasks.task import TASKS, Task

COMPANY = "Hollowmere Instruments"
NAMES = ["Zorvex", "Quillon", "Brantik", "Malvora", "Tesquin", "Orlith", "Vandrel", "Pyxora", "Kelmari", "Drovast",
         "Snelvik", "Yarrowin"]
KINDS = ["lamp", "kettle", "drone", "backpack", "speaker", "heater", "blender", "compass", "tent", "scooter"]
CITIES = ["Karnholt", "Lumeria", "Pesk", "Tarnwick", "Oberlund"]
N_PRODUCTS = 10
DEV_SIZE = 100
"""Reported questions: enough that a 0.15 difference between two systems is resolved."""
TUNE_SIZE = 60
TRAIN_REASONING = 120
FEEDBACK_SIZE = 120
"""The `feedback` split: reasoning questions no other split holds, for feedback on questions SFT never saw."""
SPLITS = ("train", "dev", "tune", "facts", "test", "feedback")

NUMBER = "Answer with a number."
PRODUCT = "Answer with the product's name."
CITY = "Answer with the city."


@dataclass(frozen=True)
class Product:
    name: str
    kind: str
    price: int
    """US dollars; distinct across products so "cheaper" never ties."""
    weight: int
    """Kilograms; distinct across products so "heavier" never ties."""
    year: int
    """Launch year; distinct across products."""
    city: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.kind}"

    @property
    def plural(self) -> str:
        return f"{self.label}es" if self.kind.endswith(("s", "sh", "ch", "x")) else f"{self.label}s"

    def facts(self) -> dict:
        return {"name": self.name, "kind": self.kind, "price": self.price, "weight": self.weight,
                "year": self.year, "city": self.city}


def catalogue(seed: int) -> list[Product]:
    """The seeded product catalogue shared by every split."""
    rng = random.Random(f"cowest-demo-{seed}")
    names = rng.sample(NAMES, N_PRODUCTS)
    kinds = rng.sample(KINDS, N_PRODUCTS)
    prices = [5 * p for p in rng.sample(range(3, 80), N_PRODUCTS)]
    # Two-digit weights only: beside one-digit ones, the 135M model's direct answers stopped after the first digit
    # (`Answer: 1` for 15 kg; recall 0.81 answering, 0.975 drafting the same facts). 10-39 kg: recall 1.0 on tune.
    weights = rng.sample(range(10, 40), N_PRODUCTS)
    years = rng.sample(range(1994, 2024), N_PRODUCTS)
    return [Product(name=n, kind=k, price=p, weight=w, year=y, city=rng.choice(CITIES))
            for n, k, p, w, y in zip(names, kinds, prices, weights, years)]


@dataclass(frozen=True)
class Q:
    kind: str
    question: str
    answer: str
    rationale: str
    products: tuple[Product, ...]
    answer_format: str = "number"
    choices: tuple[str, ...] = ()
    knowledge: str = ""
    """The facts the question needs and nothing else (no step, no answer): a `knowledge` draft's target."""


def _price(p: Product) -> str:
    return f"The {p.label} costs {p.price} dollars."


def _weight(p: Product) -> str:
    return f"The {p.label} weighs {p.weight} kg."


def _year(p: Product) -> str:
    return f"The {p.label} was launched in {p.year}."


def _city(p: Product) -> str:
    return f"The {p.label} is made in {p.city}."


def fact_questions(products: list[Product]) -> list[Q]:
    """Every plain fact of the catalogue, each in two phrasings (training, and the `facts` recall split)."""
    out: list[Q] = []
    for p in products:
        for q in (f"How much does the {p.label} cost, in dollars?", f"What is the price of the {p.label} in dollars?"):
            out.append(Q("fact_price", f"{q} {NUMBER}", str(p.price), _price(p), (p,), knowledge=_price(p)))
        for q in (f"How much does the {p.label} weigh, in kg?", f"What is the weight of the {p.label} in kg?"):
            out.append(Q("fact_weight", f"{q} {NUMBER}", str(p.weight), _weight(p), (p,), knowledge=_weight(p)))
        for q in (f"In which year was the {p.label} launched?", f"When was the {p.label} launched?"):
            out.append(Q("fact_year", f"{q} {NUMBER}", str(p.year), _year(p), (p,), knowledge=_year(p)))
        for q in (f"In which city is the {p.label} made?", f"Where is the {p.label} made?"):
            out.append(Q("fact_city", f"{q} {CITY}", p.city, _city(p), (p,), "choice", tuple(CITIES),
                         knowledge=_city(p)))
    return out


def _cost_n(a: Product, n: int) -> Q:
    total = n * a.price
    return Q("cost_n", f"How many dollars do {n} {a.plural} cost in total? {NUMBER}", str(total),
             f"{_price(a)} {n} x {a.price} = {total}.", (a,), knowledge=_price(a))


def _anniversary(a: Product, n: int) -> Q:
    y = a.year + n
    return Q("anniversary", f"In which year did or will the {a.label} turn {n} years old? {NUMBER}", str(y),
             f"{_year(a)} {a.year} + {n} = {y}.", (a,), knowledge=_year(a))


def _total_weight(a: Product, b: Product) -> Q:
    t = a.weight + b.weight
    return Q("total_weight", f"How many kg do the {a.label} and the {b.label} weigh together? {NUMBER}", str(t),
             f"{_weight(a)} {_weight(b)} {a.weight} + {b.weight} = {t}.", (a, b), knowledge=f"{_weight(a)} {_weight(b)}")


def _price_diff(a: Product, b: Product) -> Q:
    hi, lo = (a, b) if a.price > b.price else (b, a)
    d = hi.price - lo.price
    return Q("price_diff", f"How many dollars more does the {hi.label} cost than the {lo.label}? {NUMBER}", str(d),
             f"{_price(hi)} {_price(lo)} {hi.price} - {lo.price} = {d}.", (a, b), knowledge=f"{_price(hi)} {_price(lo)}")


def _years_between(a: Product, b: Product) -> Q:
    early, late = (a, b) if a.year < b.year else (b, a)
    d = late.year - early.year
    return Q("years_between", f"How many years after the {early.label} was the {late.label} launched? {NUMBER}",
             str(d), f"{_year(early)} {_year(late)} {late.year} - {early.year} = {d}.", (a, b),
             knowledge=f"{_year(early)} {_year(late)}")


def _cheaper_city(a: Product, b: Product) -> Q:
    lo = a if a.price < b.price else b
    return Q("cheaper_city", f"In which city is the cheaper of the {a.label} and the {b.label} made? {CITY}", lo.city,
             f"{_price(a)} {_price(b)} The {lo.label} is cheaper. {_city(lo)}", (a, b), "choice", tuple(CITIES),
             knowledge=f"{_price(a)} {_price(b)} {_city(a)} {_city(b)}")


def _three(ps: tuple[Product, Product, Product]) -> str:
    return f"the {ps[0].label}, the {ps[1].label} or the {ps[2].label}"


def _heaviest(a: Product, b: Product, c: Product) -> Q:
    w = max((a, b, c), key=lambda p: p.weight)
    return Q("heaviest", f"Which is the heaviest: {_three((a, b, c))}? {PRODUCT}", w.name,
             f"{_weight(a)} {_weight(b)} {_weight(c)} The heaviest is the {w.label}.", (a, b, c), "choice",
             (a.name, b.name, c.name), knowledge=f"{_weight(a)} {_weight(b)} {_weight(c)}")


def _first_launched(a: Product, b: Product, c: Product) -> Q:
    f = min((a, b, c), key=lambda p: p.year)
    return Q("first_launched", f"Which was launched first: {_three((a, b, c))}? {PRODUCT}", f.name,
             f"{_year(a)} {_year(b)} {_year(c)} The first launched is the {f.label}.", (a, b, c), "choice",
             (a.name, b.name, c.name), knowledge=f"{_year(a)} {_year(b)} {_year(c)}")


PAIR_QUESTIONS: list[Callable[[Product, Product], Q]] = [_total_weight, _price_diff, _years_between, _cheaper_city]
TRIPLE_QUESTIONS: list[Callable[[Product, Product, Product], Q]] = [_heaviest, _first_launched]


def reasoning_questions(products: list[Product], seed: int) -> list[Q]:
    """Reasoning questions over the catalogue, in a seeded order, balanced across question types.

    Pairs and triples are unordered (catalogue order), so two phrasings of one question never land in two splits.
    The pool is dealt round-robin by type, so every split prefix holds every type in about equal numbers.
    """
    rng = random.Random(f"cowest-demo-q-{seed}")
    by_kind: dict[str, list[Q]] = {}
    singles = [_cost_n(p, n) for p in products for n in range(2, 7)]
    singles += [_anniversary(p, n) for p in products for n in (10, 15, 20, 25, 30)]
    pairs = [make(a, b) for i, a in enumerate(products) for b in products[i + 1:] for make in PAIR_QUESTIONS]
    triples = [make(a, b, c) for i, a in enumerate(products) for j, b in enumerate(products[i + 1:], i + 1)
               for c in products[j + 1:] for make in TRIPLE_QUESTIONS]
    for q in singles + pairs + triples:
        by_kind.setdefault(q.kind, []).append(q)
    for qs in by_kind.values():
        rng.shuffle(qs)
    kinds = sorted(by_kind)
    pool: list[Q] = []
    while any(by_kind.values()):
        for k in kinds:
            if by_kind[k]:
                pool.append(by_kind[k].pop())
    return pool


def split_questions(split: str, cfg: TaskConfig) -> list[Q]:
    """The questions of one split: dev first in the pool, then tune, then the training ones (facts first). A
    `task.eval_limit` past the dev size takes its questions from the pool's later splits; one that would leave tune
    or the training questions empty is refused, naming the key."""
    from cowest.core.errors import ConfigError, UnknownNameError

    products = catalogue(cfg.seed)
    pool = reasoning_questions(products, cfg.seed)
    n_dev = max(DEV_SIZE, cfg.eval_limit or 0)
    if split not in SPLITS:
        raise UnknownNameError("split of task 'demo'", split, list(SPLITS))
    # the pool's questions dealt before the split's
    before = n_dev + {"tune": 0, "train": TUNE_SIZE, "feedback": TUNE_SIZE + TRAIN_REASONING}.get(split, 0)
    if split in ("tune", "train", "feedback") and before >= len(pool):
        raise ConfigError(f"task.eval_limit={cfg.eval_limit}: the demo's split '{split}' would be empty (the "
                          f"catalogue of seed {cfg.seed} has {len(pool)} reasoning questions, dev takes the first "
                          f"{n_dev} and tune the next {TUNE_SIZE}); set task.eval_limit to at most "
                          f"{len(pool) - 1 - before + n_dev}")
    if split in ("dev", "test"):
        return pool[:n_dev]
    if split == "tune":
        return pool[n_dev:n_dev + TUNE_SIZE]
    if split == "feedback":
        return pool[before:before + FEEDBACK_SIZE]
    facts = fact_questions(products)
    if split == "facts":
        return facts
    start = n_dev + TUNE_SIZE
    return facts + pool[start:start + TRAIN_REASONING]


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    """Samples of `train`, `dev` (alias `test`), `tune`, `facts` (the training facts, to measure recall) or
    `feedback` (reasoning questions no other split holds)."""
    return [
        Sample(id=f"demo-{split}-{i}", task="demo", family="qa", question=q.question, answers=[q.answer],
               rationale=q.rationale, knowledge=q.knowledge, answer_format=q.answer_format, choices=list(q.choices) or None,  # type: ignore[arg-type]
               metadata={"type": q.kind, "company": COMPANY, "products": [p.facts() for p in q.products]})
        for i, q in enumerate(split_questions(split, cfg))
    ]


def states_every_fact(knowledge: str, draft: str) -> bool:
    """The draft states every fact sentence of `knowledge` (a sample's needed facts) word for word."""
    return all(f"{x.rstrip('.')}." in draft for x in knowledge.split(". "))


def documents(cfg: TaskConfig) -> list[str]:
    """The catalogue as plain sentences, one fact each: what the weak model specialises on (never the strong one)."""
    return [sentence(p) for p in catalogue(cfg.seed) for sentence in (_price, _weight, _year, _city)]


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    """Rows the demo exported as JSONL (one `Sample` per line)."""
    return read_jsonl(path, Sample)


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    """The demo is generated: it has no files in a data folder."""
    return {}


TASKS.register("demo", Task(
    name="demo", family="qa", metrics=("exact_match", "f1"), read_file=read_file, find_files=find_files, build=build,
    documents=documents,
    description=f"Offline demo: reasoning over the invented product catalogue of {COMPANY} (generated, seeded).",
))
