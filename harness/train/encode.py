"""Samples -> token ids and labels, with the loss on the completion only.

Labels equal the input ids on tokens the model must learn to produce and -100 (ignored
by the loss) everywhere else: the prompt, system and user turns, and the template's own
markup before each assistant reply. The assistant's end-of-turn marker *is* labelled,
so the adapter learns where to stop.

Prompt and completion are tokenized separately and concatenated. The prompt tokens are
therefore exactly what evaluation feeds the model (`harness.evaluate.suite_eval.encode_prompt`: the chat
template with `add_generation_prompt=True`, tokenized without extra special tokens; or
the plain prompt with the tokenizer's special tokens), and the completion is learned
from the same boundary that generation starts at. Tokenizing the joined text instead
could merge tokens across the boundary into pieces evaluation never produces.

Chat conversations are split with the template itself: for every assistant turn i, the
rendering of turns [:i] with the generation prompt must be a prefix of the rendering of
turns [:i+1]; the difference is that turn's labelled text. Templates that rewrite
earlier turns (dropping "thinking" from past replies) break that, and then only the
last assistant turn is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError
from harness.train.data import Sample

IGNORE = -100


@dataclass
class Encoded:
    """One tokenized sample.

    Attributes:
        input_ids: Token ids (at most max_length).
        labels: Same length; -100 where no loss is taken.
        truncated: Whether tokens were cut off at max_length.
    """

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_labelled(self) -> int:
        """Tokens that contribute to the loss (the first token predicts nothing)."""
        return sum(1 for lab in self.labels[1:] if lab != IGNORE)


def use_chat(sample: Sample, fmt: str, tokenizer) -> bool:
    """Whether this sample goes through the chat template under format `fmt`."""
    if fmt == "plain":
        if sample.form == "messages":
            raise ConfigError(f"record {sample.id}: chat records need the chat template",
                              "use --format chat (or auto) for `messages` data")
        return False
    if fmt == "chat" and sample.form == "text":
        raise ConfigError(f"record {sample.id}: text records have no turns to put through a chat template",
                          "use --format plain, or map --field prompt=... --field completion=...")
    chat = fmt == "chat" or sample.form == "messages"
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the base model's tokenizer has no chat template",
                          "use --format plain with prompt/completion data, or an instruct model")
    return chat


def _render(tokenizer, messages, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)


def _chat_segments(tokenizer, messages: list[dict[str, str]], sample_id: str) -> list[tuple[str, bool]]:
    """(text, labelled) pieces whose concatenation is the rendered conversation."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[: last + 1]  # turns after the last reply teach nothing
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        through = _render(tokenizer, messages[: i + 1], False)
        if not (before.startswith(done) and through.startswith(before)):
            return _last_turn_segments(tokenizer, messages, sample_id)
        segments += [(before[len(done):], False), (through[len(before):], True)]
        done = through
    return segments


def _last_turn_segments(tokenizer, messages: list[dict[str, str]], sample_id: str) -> list[tuple[str, bool]]:
    before = _render(tokenizer, messages[:-1], True)
    through = _render(tokenizer, messages, False)
    if not through.startswith(before):
        raise ConfigError(f"record {sample_id}: the chat template does not render the reply after the prompt "
                          "(its output for the prompt is not a prefix of the full conversation)",
                          "use prompt/completion data with --format plain")
    return [(before, False), (through[len(before):], True)]


def encode_sample(tokenizer, sample: Sample, fmt: str = "auto", max_length: int = 1024,
                  add_eos: bool = True) -> Encoded:
    """Token ids and completion-only labels for one sample.

    Args:
        tokenizer: The base model's tokenizer.
        sample: The record.
        fmt: "auto", "chat" or "plain" (see TrainConfig.format).
        max_length: Longer sequences lose prompt tokens on the left first, then tokens at the end.
        add_eos: Append EOS after plain completions and texts.

    Raises:
        ConfigError: the format does not fit the record or the tokenizer.
    """
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, labelled: bool, special: bool = False) -> None:
        if not text:
            return
        toks = tokenizer(text, add_special_tokens=special)["input_ids"]
        ids.extend(toks)
        labels.extend(toks if labelled else [IGNORE] * len(toks))

    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    if use_chat(sample, fmt, tokenizer):
        messages = sample.messages if sample.form == "messages" else [
            {"role": "user", "content": sample.prompt or ""}, {"role": "assistant", "content": sample.completion or ""}]
        for text, labelled in _chat_segments(tokenizer, messages, sample.id):
            add(text, labelled)
    elif sample.form == "prompt/completion":
        add(sample.prompt or "", False, special=True)  # as encode_prompt does for plain prompts
        add(sample.completion or "", True)
        ids.extend(eos)
        labels.extend(eos)
    else:
        add(sample.text or "", True, special=True)
        ids.extend(eos)
        labels.extend(eos)
    over = len(ids) - max_length
    if over <= 0:
        return Encoded(ids, labels, False)
    # As evaluation does: a long prompt loses its start, so the completion it teaches survives;
    # only what still does not fit (a long completion, a plain text) is cut at the end.
    prompt = next((i for i, x in enumerate(labels) if x != IGNORE), len(labels))
    left = min(over, prompt)
    return Encoded(ids[left:left + max_length], labels[left:left + max_length], True)
