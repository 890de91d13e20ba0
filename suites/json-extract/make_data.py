"""Generate data.jsonl for the json-extract suite: a short event description -> one JSON object.

Deterministic (seeded, standard library only): running it again rewrites the same bytes.
The events, names, venues and sentences are synthetic, written for this project.

    python suites/json-extract/make_data.py            # rewrite data.jsonl next to this file
    python suites/json-extract/make_data.py --check    # exit 1 if data.jsonl is out of date
    python suites/json-extract/make_data.py --out X    # write somewhere else

Each record: {"id", "text", "gold": {name, category, date, city, price}, "reference": the gold
object as one JSON text}. `gold` follows schema.json; `price` is the regular ticket price in
euros (0 when entry is free). Texts state the date and price in varied forms and add
distractors (start times, student prices, expected visitors) so the fields must be read, not
copied from fixed positions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path

SEED = 20250117
N_RECORDS = 60
HERE = Path(__file__).resolve().parent

CITIES = ["Lyon", "Porto", "Leeds", "Bologna", "Ghent", "Krakow", "Seville", "Dresden",
          "Utrecht", "Bergen", "Graz", "Tampere", "Cork", "Brno", "Nantes", "Aarhus"]
VENUES = ["the Old Mill", "Harbour Hall", "the town library", "Riverside Park", "the Glasshouse",
          "St. Anne's Church", "the Corn Exchange", "the Northern Pavilion", "Market Square",
          "the Science Centre"]
WORDS = ["Amber", "Birch", "Copper", "Delta", "Ember", "Fjord", "Granite", "Harbour", "Indigo",
         "Juniper", "Kestrel", "Lantern", "Meadow", "Nightingale", "Orchard", "Pebble", "Quartz",
         "Rowan", "Saffron", "Thistle", "Umber", "Willow"]
TOPICS = ["Urban Beekeeping", "Tidal Energy", "Medieval Maps", "Soil Microbes", "Bridge Design",
          "Deep-Sea Fish", "Glass Recycling", "Dark Skies"]
NAMES = {
    "concert": ["{w} Jazz Night", "The {w} String Quartet", "{w} Brass Evening", "{w} Choir in Concert"],
    "workshop": ["{w} Pottery Workshop", "Bookbinding with {w} Studio", "{w} Bread Baking Class",
                 "{w} Watercolour Workshop"],
    "market": ["{w} Farmers' Market", "{w} Vintage Fair", "{w} Night Market", "{w} Craft Market"],
    "talk": ["{t}: A Public Lecture", "An Evening on {t}", "{t} Explained", "Talking {t}"],
    "race": ["{w} 10K", "{w} Trail Run", "{w} Half Marathon", "{w} Fun Run"],
    "exhibition": ["{w}: New Photographs", "{w} Print Show", "Light and {w}", "{w} Sculpture Garden"],
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


DATE_FORMS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.strftime('%A')} {d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: d.isoformat(),
]


def _money(v: float) -> str:
    return f"{v:.2f}" if v != int(v) else str(int(v))


PRICE_FORMS = [
    lambda v: f"tickets cost \u20ac{_money(v)}",
    lambda v: f"entry is {_money(v)} euros",
    lambda v: f"admission is EUR {_money(v)}",
    lambda v: f"a ticket costs {_money(v)} EUR",
]
FREE_FORMS = ["entry is free", "admission is free of charge", "there is no entrance fee"]

TEMPLATES = [
    "{Name} is {a_category} at {venue} in {city} on {date}; {price}, and doors open at {time}.",
    "Join us for {name}, {a_category} held at {venue}, {city}, on {date}. Good to know: {price}.",
    "{City} hosts {name} on {date}. This {category} expects around {crowd} visitors and {price}.",
    "On {date}, {venue} in {city} presents {name}, {a_category} starting at {time}. {Price}.",
    "{Name} ({category}, {city}, {date}): {price}; students pay {student}.",
    "Save the date: the {category} {name} comes to {city} on {date}. {Price}, with {crowd} places.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_record(i: int, rng: random.Random) -> dict:
    category = rng.choice(sorted(NAMES))
    name = rng.choice(NAMES[category]).format(w=rng.choice(WORDS), t=rng.choice(TOPICS))
    city = rng.choice(CITIES)
    date = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(0, 730))
    free = rng.random() < 0.15
    price = 0 if free else rng.choice([5, 8, 10, 12, 15, 18, 20, 25, 30, 35, 7.5, 12.5, 14.9, 22.5])
    student = _money(round(price * 0.6, 1)) if price else "nothing"
    price_text = rng.choice(FREE_FORMS) if free else rng.choice(PRICE_FORMS)(price)
    template = TEMPLATES[i % len(TEMPLATES)]
    text = template.format(
        name=name, Name=name, category=category,
        a_category=("an " if category[0] in "aeiou" else "a ") + category,
        venue=rng.choice(VENUES), city=city, City=city,
        date=rng.choice(DATE_FORMS)(date), price=price_text, Price=_cap(price_text),
        time=f"{rng.choice([10, 11, 14, 18, 19, 20])}:{rng.choice(['00', '30'])}",
        crowd=rng.choice([80, 150, 300, 1200, 4000]), student=f"\u20ac{student}" if price else student,
    )
    gold = {"name": name, "category": category, "date": date.isoformat(), "city": city, "price": price}
    return {"id": f"je-{i + 1:03d}", "text": text, "gold": gold,
            "reference": json.dumps(gold, ensure_ascii=False)}


def records() -> list[dict]:
    rng = random.Random(SEED)
    return [make_record(i, rng) for i in range(N_RECORDS)]


def render() -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "data.jsonl")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {N_RECORDS} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
