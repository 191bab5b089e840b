"""The offline demo task: questions about a fictional company's products that no pretrained model can know.

A seeded catalogue of invented products (price, weight, launch year, factory city). Training questions are the
plain facts plus one-step reasoning questions with a rationale that states the facts used and the step; dev
questions are new reasoning questions over the same products. The weak model learns the catalogue by SFT and
writes it into its drafts; the strong model, which has never seen it, reasons over the draft. Everything is a
pure function of `cfg.seed`, so every machine builds the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cowest.config import TaskConfig
from cowest.records import Sample, read_jsonl
from cowest.tasks.base import TASKS, Task

COMPANY = "Hollowmere Instruments"
NAMES = ["Zorvex", "Quillon", "Brantik", "Malvora", "Tesquin", "Orlith", "Vandrel", "Pyxora", "Kelmari", "Drovast",
         "Snelvik", "Yarrowin"]
KINDS = ["lamp", "kettle", "drone", "backpack", "speaker", "heater", "blender", "compass", "tent", "scooter"]
CITIES = ["Karnholt", "Lumeria", "Pesk", "Tarnwick", "Oberlund"]
N_PRODUCTS = 10
TRAIN_SIZE = 200
DEV_SIZE = 60


@dataclass(frozen=True)
class Product:
    name: str
    kind: str
    price: int
    """US dollars."""
    weight: int
    """Kilograms; distinct across products so "which is heavier" never ties."""
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
    weights = rng.sample(range(1, 31), N_PRODUCTS)
    years = rng.sample(range(1994, 2024), N_PRODUCTS)
    return [Product(name=n, kind=rng.choice(KINDS), price=5 * rng.randint(3, 80), weight=w, year=y,
                    city=rng.choice(CITIES)) for n, w, y in zip(names, weights, years)]


# A question: (kind, question, answers, rationale, product names used)
Q = tuple[str, str, list[str], str, list[str]]


def _price(p: Product) -> str:
    return f"The {p.label} costs {p.price} dollars."


def _weight(p: Product) -> str:
    return f"The {p.label} weighs {p.weight} kg."


def _year(p: Product) -> str:
    return f"The {p.label} was launched in {p.year}."


def _city(p: Product) -> str:
    return f"The {p.label} is made in {p.city}."


def fact_questions(products: list[Product]) -> list[Q]:
    """One plain-fact question per product and attribute (training only)."""
    out: list[Q] = []
    for p in products:
        out += [
            ("fact_price", f"How much does the {p.label} cost, in dollars?", [str(p.price), f"${p.price}"], _price(p), [p.name]),
            ("fact_weight", f"How much does the {p.label} weigh, in kg?", [str(p.weight), f"{p.weight} kg"], _weight(p), [p.name]),
            ("fact_year", f"In which year was the {p.label} launched?", [str(p.year)], _year(p), [p.name]),
            ("fact_city", f"In which city is the {p.label} made?", [p.city], _city(p), [p.name]),
        ]
    return out


def _names(p: Product) -> list[str]:
    return [p.name, f"the {p.label}", p.label]


def _cost_n(a: Product, n: int) -> Q:
    total = n * a.price
    return ("cost_n", f"How much do {n} {a.plural} cost in total, in dollars?", [str(total), f"${total}"],
            f"{_price(a)} {n} x {a.price} = {total}.", [a.name])


def _heavier(a: Product, b: Product) -> Q:
    w = a if a.weight > b.weight else b
    return ("heavier", f"Which is heavier, the {a.label} or the {b.label}?", _names(w),
            f"{_weight(a)} {_weight(b)} {max(a.weight, b.weight)} kg > {min(a.weight, b.weight)} kg, so the "
            f"{w.label} is heavier.", [a.name, b.name])


def _years_before(a: Product, b: Product) -> Q:
    early, late = (a, b) if a.year < b.year else (b, a)
    d = late.year - early.year
    return ("years_before", f"How many years before the {late.label} was the {early.label} launched?", [str(d)],
            f"{_year(early)} {_year(late)} {late.year} - {early.year} = {d}.", [a.name, b.name])


def _same_city(a: Product, b: Product) -> Q:
    same = a.city == b.city
    return ("same_city", f"Are the {a.label} and the {b.label} made in the same city?", ["yes" if same else "no"],
            f"{_city(a)} {_city(b)} " + ("Both cities are the same." if same else f"{a.city} is not {b.city}."),
            [a.name, b.name])


def _total_weight(a: Product, b: Product) -> Q:
    t = a.weight + b.weight
    return ("total_weight", f"How much do the {a.label} and the {b.label} weigh together, in kg?",
            [str(t), f"{t} kg"], f"{_weight(a)} {_weight(b)} {a.weight} + {b.weight} = {t}.", [a.name, b.name])


def _price_diff(a: Product, b: Product) -> Q:
    hi, lo = (a, b) if a.price >= b.price else (b, a)
    d = hi.price - lo.price
    return ("price_diff", f"How many dollars more does the {hi.label} cost than the {lo.label}?",
            [str(d), f"${d}"], f"{_price(hi)} {_price(lo)} {hi.price} - {lo.price} = {d}.", [a.name, b.name])


PAIR_QUESTIONS: list[Callable[[Product, Product], Q]] = [_heavier, _years_before, _same_city, _total_weight, _price_diff]


def reasoning_questions(products: list[Product], seed: int) -> list[Q]:
    """Every distinct reasoning question over the catalogue, in a seeded order.

    Pairs are unordered (a before b in catalogue order) so "X or Y" and "Y or X" never land in different splits.
    """
    rng = random.Random(f"cowest-demo-q-{seed}")
    pool = [_cost_n(p, n) for p in products for n in range(2, 6)]
    pool += [make(a, b) for i, a in enumerate(products) for b in products[i + 1:] for make in PAIR_QUESTIONS]
    rng.shuffle(pool)
    return pool


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    """Samples of `train` or `dev` (also `test`, an alias of dev); sized by the limits, at least 200 / 60."""
    from cowest.errors import UnknownNameError

    products = catalogue(cfg.seed)
    pool = reasoning_questions(products, cfg.seed)
    n_dev = max(DEV_SIZE, cfg.eval_limit or 0)
    facts = fact_questions(products)
    if split in ("dev", "test"):
        rows = pool[:n_dev]
    elif split == "train":
        n_train = max(TRAIN_SIZE, cfg.train_limit or 0)
        rows = facts + pool[n_dev:n_dev + max(0, n_train - len(facts))]
    else:
        raise UnknownNameError("split of task 'demo'", split, ["train", "dev", "test"])
    by_name = {p.name: p for p in products}
    return [
        Sample(id=f"demo-{split}-{i}", task="demo", family="qa", question=question, answers=answers,
               rationale=rationale,
               metadata={"type": kind, "company": COMPANY, "products": [by_name[n].facts() for n in used]})
        for i, (kind, question, answers, rationale, used) in enumerate(rows)
    ]


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    """Rows the demo exported as JSONL (one `Sample` per line)."""
    return read_jsonl(path, Sample)


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    """The demo is generated: it has no files in a data folder."""
    return {}


TASKS.register("demo", Task(
    name="demo", family="qa", metrics=("exact_match", "f1"), read_file=read_file, find_files=find_files, build=build,
    description=f"Offline demo: reasoning over the invented product catalogue of {COMPANY} (generated, seeded).",
))
