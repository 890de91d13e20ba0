"""Generate data.jsonl for the data2text suite: facts -> one sentence (two references each).

Deterministic (seeded, standard library only): running it again rewrites the same bytes.

    python suites/data2text/make_data.py            # rewrite data.jsonl next to this file
    python suites/data2text/make_data.py --check    # exit 1 if data.jsonl is out of date
    python suites/data2text/make_data.py --out X    # write somewhere else

Each record: {"id", "type", "facts": [{"attribute", "value"}, ...], "references": [a, b]}.
The two references state the same 4-6 facts in two different phrasings.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Callable

SEED = 20240611
N_RECORDS = 200
HERE = Path(__file__).resolve().parent

CITIES = ["Lyon", "Porto", "Leeds", "Bologna", "Ghent", "Krakow", "Seville", "Dresden",
          "Utrecht", "Bergen", "Graz", "Tampere", "Cork", "Brno", "Nantes", "Aarhus"]
LANDMARKS = ["the cathedral", "the central station", "the river", "the old market",
             "the university", "the city museum", "the harbour", "the botanical garden"]
CUISINES = ["Italian", "Japanese", "Mexican", "Indian", "French", "Thai", "Greek",
            "Lebanese", "Korean", "Spanish", "Vietnamese", "Ethiopian"]
R_FIRST = ["Golden", "Blue", "Little", "Green", "Silver", "Red", "Old", "Wild", "Copper", "Olive"]
R_SECOND = ["Fork", "Lantern", "Spoon", "Garden", "Table", "Kettle", "Oak", "Harbour", "Pepper", "Fig"]
H_NAMES = ["Alder", "Beacon", "Cedar", "Dune", "Ember", "Falcon", "Granite", "Heron",
           "Ivy", "Juniper", "Kestrel", "Linden", "Maple", "Nordic", "Orchid", "Pine",
           "Quarry", "Raven", "Saffron", "Thistle", "Umber", "Willow", "Yarrow", "Zephyr"]
H_KINDS = ["Hotel {}", "The {} Inn", "{} House", "The {} Lodge"]
BRANDS = ["Arvex", "Bolt", "Corvin", "Dayla", "Elkon", "Fennix", "Gryph", "Halden"]
MODELS = ["Air", "Pro", "Nova", "Edge", "Flex", "Zen", "Studio", "Go"]
COLOURS = ["silver", "black", "blue", "white", "grey", "green"]


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# Each optional attribute: (label, value generator, phrasing A, phrasing B).
Attr = tuple[str, Callable[[random.Random], str], Callable[[str], str], Callable[[str], str]]

RESTAURANT: list[Attr] = [
    ("cuisine", lambda r: r.choice(CUISINES),
     lambda v: f"serves {v} food", lambda v: f"specialises in {v} cuisine"),
    ("price range", lambda r: r.choice(["low", "moderate", "high"]),
     lambda v: f"has {v} prices", lambda v: f"is in the {v} price range"),
    ("customer rating", lambda r: f"{r.choice(['2', '2.5', '3', '3.5', '4', '4.5', '5'])} out of 5",
     lambda v: f"is rated {v} by customers", lambda v: f"has a customer rating of {v}"),
    ("family friendly", lambda r: r.choice(["yes", "no"]),
     lambda v: "is family-friendly" if v == "yes" else "is not family-friendly",
     lambda v: "welcomes children" if v == "yes" else "does not cater for children"),
    ("near", lambda r: r.choice(LANDMARKS),
     lambda v: f"is near {v}", lambda v: f"can be found close to {v}"),
]

HOTEL: list[Attr] = [
    ("stars", lambda r: str(r.randint(2, 5)),
     lambda v: f"has {v} stars", lambda v: f"is rated {v} stars"),
    ("rooms", lambda r: str(r.randint(12, 240)),
     lambda v: f"has {v} rooms", lambda v: f"offers {v} rooms"),
    ("breakfast included", lambda r: r.choice(["yes", "no"]),
     lambda v: "includes breakfast" if v == "yes" else "does not include breakfast",
     lambda v: "serves breakfast to its guests" if v == "yes" else "does not serve breakfast"),
    ("swimming pool", lambda r: r.choice(["yes", "no"]),
     lambda v: "has a swimming pool" if v == "yes" else "has no swimming pool",
     lambda v: "offers a pool" if v == "yes" else "does not offer a pool"),
    ("distance to station", lambda r: r.choice(["200 metres", "450 metres", "800 metres",
                                                 "1.5 kilometres", "3 kilometres"]),
     lambda v: f"is {v} from the train station", lambda v: f"lies {v} away from the station"),
]

LAPTOP: list[Attr] = [
    ("screen size", lambda r: r.choice(["13.3 inches", "14 inches", "15.6 inches", "16 inches"]),
     lambda v: f"has a {v.replace(' inches', '-inch')} screen",
     lambda v: f"comes with a {v.replace(' inches', '-inch')} display"),
    ("weight", lambda r: f"{r.choice(['1.1', '1.3', '1.5', '1.8', '2.1'])} kg",
     lambda v: f"weighs {v}", lambda v: f"has a weight of {v}"),
    ("battery life", lambda r: f"{r.randint(6, 20)} hours",
     lambda v: f"offers {v} of battery life", lambda v: f"runs for {v} on a single charge"),
    ("price", lambda r: f"{r.choice([499, 649, 799, 899, 1099, 1299, 1599])} euros",
     lambda v: f"costs {v}", lambda v: f"sells for {v}"),
    ("colour", lambda r: r.choice(COLOURS),
     lambda v: f"comes in {v}", lambda v: f"is available in {v}"),
]


def _restaurant(r: random.Random, used: set[str]) -> tuple[list[tuple[str, str]], Callable, Callable]:
    name = _unique(used, lambda: f"The {r.choice(R_FIRST)} {r.choice(R_SECOND)}")
    city = r.choice(CITIES)
    head = [("name", name), ("city", city)]
    a = lambda vps: f"{name} is a restaurant in {city} that {_join(vps)}."  # noqa: E731
    b = lambda vps: f"In {city}, there is a restaurant called {name} which {_join(vps)}."  # noqa: E731
    return head, a, b


def _hotel(r: random.Random, used: set[str]) -> tuple[list[tuple[str, str]], Callable, Callable]:
    name = _unique(used, lambda: r.choice(H_KINDS).format(r.choice(H_NAMES)))
    city = r.choice(CITIES)
    head = [("name", name), ("city", city)]
    a = lambda vps: f"{name} is a hotel in {city} that {_join(vps)}."  # noqa: E731
    b = lambda vps: f"Located in {city}, {name} is a hotel which {_join(vps)}."  # noqa: E731
    return head, a, b


def _laptop(r: random.Random, used: set[str]) -> tuple[list[tuple[str, str]], Callable, Callable]:
    brand = r.choice(BRANDS)
    name = _unique(used, lambda: f"{brand} {r.choice(MODELS)} {r.randint(2, 9)}")
    head = [("name", name), ("brand", brand)]
    a = lambda vps: f"The {name} is a laptop made by {brand} that {_join(vps)}."  # noqa: E731
    b = lambda vps: f"Made by {brand}, the {name} is a laptop which {_join(vps)}."  # noqa: E731
    return head, a, b


def _unique(used: set[str], make: Callable[[], str]) -> str:
    for _ in range(1000):
        value = make()
        if value not in used:
            used.add(value)
            return value
    raise RuntimeError("ran out of unique names")


TYPES = [("restaurant", _restaurant, RESTAURANT), ("hotel", _hotel, HOTEL), ("laptop", _laptop, LAPTOP)]


def make_records(seed: int = SEED, n: int = N_RECORDS) -> list[dict]:
    r = random.Random(seed)
    used: set[str] = set()
    records = []
    for i in range(n):
        kind, make_head, attrs = TYPES[i % len(TYPES)]
        head, style_a, style_b = make_head(r, used)
        n_optional = r.randint(2, 4)  # with the two head facts: 4-6 facts
        chosen = sorted(r.sample(range(len(attrs)), n_optional))
        facts = list(head)
        vps_a, vps_b = [], []
        for j in chosen:
            label, gen, phrase_a, phrase_b = attrs[j]
            value = gen(r)
            facts.append((label, value))
            vps_a.append(phrase_a(value))
            vps_b.append(phrase_b(value))
        records.append({
            "id": f"d2t-{i + 1:04d}",
            "type": kind,
            "facts": [{"attribute": k, "value": v} for k, v in facts],
            "references": [style_a(vps_a), style_b(list(reversed(vps_b)))],
        })
    return records


def render(records: list[dict]) -> bytes:
    return "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data.jsonl")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    data = render(make_records())
    if args.check:
        current = args.out.read_bytes() if args.out.is_file() else b""
        if current != data:
            print(f"{args.out} is out of date; run {Path(__file__).name} to regenerate it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_bytes(data)
    print(f"wrote {len(data.splitlines())} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
