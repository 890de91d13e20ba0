"""ACLSum records -> a readable abstract and a single reference summary."""

from __future__ import annotations

import re

_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}]|'s|n't|'re|'ve|'ll|'d|'m)(?=\s|$)")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_QUOTES = re.compile(r"`` ?| ?''")


def detok(text: str) -> str:
    """Undo the tokeniser's spaces around punctuation: 'a ( b ) , c .' -> 'a (b), c.'."""
    text = _QUOTES.sub('"', text)
    text = _NO_SPACE_AFTER.sub(r"\1", text)
    previous = None
    while previous != text:  # ") ," needs two passes
        previous, text = text, _NO_SPACE_BEFORE.sub(r"\1", text)
    return text.strip()


def transform(record: dict) -> dict:
    summary = record["summary"]
    return {
        "id": record["id"],
        "title": record["title"].strip(),
        "abstract": detok(" ".join(record["sentences"]["abstract"])),
        "reference": " ".join(summary[k].strip() for k in ("challenge", "approach", "outcome")),
    }

