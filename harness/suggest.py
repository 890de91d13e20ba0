"""The one did-you-mean helper: a close known name for a misspelt one."""

from __future__ import annotations

import difflib
from typing import Iterable


def close_match(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to `name` (difflib ratio >= cutoff), or None."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """"did you mean 'x'? " (with the trailing space) for a close known name, else ""."""
    close = close_match(name, known, cutoff)
    return f"did you mean '{close}'? " if close else ""


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """"unknown metric 'f11'; did you mean 'f1'? available: ..." for any kind of name."""
    known = sorted(known)
    close = close_match(name, known)
    guess = f"; did you mean '{close}'?" if close else ""
    return f"unknown {kind} '{name}'{guess} available: {', '.join(known) or 'none'}"
