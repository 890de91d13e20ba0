"""Format robustness: the same suite item asked again under small, seeded prompt changes.

`--perturb K` re-asks every suite item under K variants. Variant k applies one or two of
these operations, chosen from (seed, k) so every model sees the very same variant texts:

- `paraphrase`: the first instruction phrase found in `PARAPHRASES` swapped for its
  paraphrase (a no-op, recorded as such, when the prompt has none of them);
- `whitespace`: a blank line after the first line, and a space before every line break;
- `casing`: the first line lower-cased;
- `punctuation`: the first line's final period dropped (or one added).

Multiple-choice prompts (a run of lines "A. ...", "B) ...", "(C) ...", lettered from A)
also get their options shuffled in every variant (seeded by the variant and the text): a
reference that is a bare option letter follows its option to the new letter, and
`consistent` compares the chosen option, not the letter.

Perturbed answers land in their own task, `SUITE~perturbed` (item ids `ID~k`), scored by
the suite's metrics plus `consistent`: 1 when the answer under the variant equals, after
SQuAD-style normalisation, the model's answer to the original prompt. Paired statistics and
the gate treat that task like any other, so "the adapter is more brittle than the base" is a
`max_drop` rule on `consistent`.
"""

from __future__ import annotations

import random
import re
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


_OPTION = re.compile(r"^(\s*\(?)([A-Z])([.):]\s+)(\S.*)$")


def shuffle_options(text: str, variant: Variant) -> tuple[str, dict[str, str]]:
    """The first block of lettered options (A, B, C, ... on consecutive lines) reordered
    by a seeded permutation that moves at least one option; returns (text, {old letter:
    new letter}), or (text, {}) when the text has no such block."""
    lines = text.split("\n")
    for start, line in enumerate(lines):
        m = _OPTION.match(line)
        if not m or m.group(2) != "A":
            continue
        block = []
        for line2 in lines[start:]:
            m2 = _OPTION.match(line2)
            if not m2 or m2.group(2) != chr(ord("A") + len(block)):
                break
            block.append(m2)
        if len(block) < 2:
            continue
        rng = random.Random(f"options:{variant.index}:{text}")
        order = list(range(len(block)))
        while order == sorted(order):
            rng.shuffle(order)
        for pos, src in enumerate(order):  # position `pos` now shows the option that was at `src`
            head, _, sep, _ = block[pos].groups()
            lines[start + pos] = f"{head}{chr(ord('A') + pos)}{sep}{block[src].group(4)}"
        return "\n".join(lines), {chr(ord("A") + src): chr(ord("A") + pos) for pos, src in enumerate(order)}
    return text, {}


def letter_of(answer: str, letters) -> str | None:
    """The option letter an answer names: "B", "b", "B.", "(B)", "B) text"; else None."""
    m = re.match(r"^\s*\(?([A-Za-z])(?:[.):]|\s|$)", answer)
    letter = m.group(1).upper() if m else None
    return letter if letter and letter in letters else None


def moved_answer(answer: str, moved: dict[str, str]) -> str:
    """A bare option letter ("B", "b.", "(B)") renamed to where its option moved; else as is."""
    letter = letter_of(answer, moved)
    return moved[letter] if letter and len(answer.strip(" .()")) == 1 else answer


def perturb_item(prompt: Prompt, references, variant: Variant) -> tuple[Prompt, tuple[str, ...], dict[str, str]]:
    """`perturb_prompt`, plus the options shuffle of multiple-choice prompts: returns the
    prompt, the references (a bare letter follows its option) and {old: new} letters."""
    prompt = perturb_prompt(prompt, variant)
    if prompt.messages is None:
        text, moved = shuffle_options(prompt.text or "", variant)
        prompt = replace(prompt, text=text)
    else:
        messages = list(prompt.messages)
        last = max(i for i, (role, _) in enumerate(messages) if role == "user")
        text, moved = shuffle_options(messages[last][1], variant)
        messages[last] = ("user", text)
        prompt = replace(prompt, messages=tuple(messages))
    return prompt, tuple(moved_answer(r, moved) for r in references), moved


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
