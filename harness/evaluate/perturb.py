"""Format robustness: the same suite item asked again under small, seeded prompt changes.

`--perturb K` re-asks every suite item under K variants. Variant k applies one or two of
these operations, chosen from (seed, k) so every model sees the very same variant texts:

- `paraphrase`: the first instruction phrase found in `PARAPHRASES` swapped for its
  paraphrase (a no-op, recorded as such, when the prompt has none of them);
- `whitespace`: a blank line after the first line, and a space before every line break;
- `casing`: the first line lower-cased;
- `punctuation`: the first line's final period dropped (or one added).

Perturbed answers land in their own task, `SUITE~perturbed` (item ids `ID~k`), scored by
the suite's metrics plus `consistent`: 1 when the answer under the variant equals, after
SQuAD-style normalisation, the model's answer to the original prompt. Paired statistics and
the gate treat that task like any other, so "the adapter is more brittle than the base" is a
`max_drop` rule on `consistent`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from harness.types import Prompt

SUFFIX = "~perturbed"
OPS = ("paraphrase", "whitespace", "casing", "punctuation")
PARAPHRASES = (
    ("Answer the question", "Respond to the question"),
    ("Reply with the answer only", "Give only the answer"),
    ("Reply with", "Respond with"),
    ("Summarize", "Write a summary of"),
    ("Summarise", "Write a summary of"),
    ("Translate", "Render"),
    ("Write", "Compose"),
    ("Extract", "Pull out"),
    ("Describe", "Give a description of"),
    ("Answer", "Respond"),
)


@dataclass(frozen=True)
class Variant:
    index: int  # 1..K
    ops: tuple[str, ...]

    def record(self) -> dict:
        return {"variant": self.index, "ops": list(self.ops)}


def variants(k: int, seed: int) -> list[Variant]:
    """K seeded variants, each one or two distinct operations."""
    out = []
    for i in range(1, k + 1):
        rng = random.Random(f"perturb:{seed}:{i}")
        out.append(Variant(i, tuple(sorted(rng.sample(OPS, rng.choice((1, 2))), key=OPS.index))))
    return out


def perturb_text(text: str, variant: Variant) -> str:
    for op in variant.ops:
        text = _APPLY[op](text)
    return text


def perturb_prompt(prompt: Prompt, variant: Variant) -> Prompt:
    """The prompt under `variant`: its text, or its last user message for chat prompts."""
    if prompt.messages is None:
        return replace(prompt, text=perturb_text(prompt.text or "", variant))
    messages = list(prompt.messages)
    last = max(i for i, (role, _) in enumerate(messages) if role == "user")
    messages[last] = ("user", perturb_text(messages[last][1], variant))
    return replace(prompt, messages=tuple(messages))


def task_name(suite: str) -> str:
    return suite + SUFFIX


def _paraphrase(text: str) -> str:
    for phrase, other in PARAPHRASES:
        if phrase in text:
            return text.replace(phrase, other, 1)
    return text


def _first_line(text: str, change) -> str:
    head, sep, rest = text.partition("\n")
    return change(head) + sep + rest


def _whitespace(text: str) -> str:
    head, sep, rest = text.partition("\n")
    return (head + "\n\n" + rest if sep else head + " ").replace("\n", " \n")


def _punctuation(head: str) -> str:
    stripped = head.rstrip()
    return stripped[:-1] if stripped.endswith(".") else stripped + "."


_APPLY = {
    "paraphrase": _paraphrase,
    "whitespace": _whitespace,
    "casing": lambda text: _first_line(text, str.lower),
    "punctuation": lambda text: _first_line(text, _punctuation),
}
