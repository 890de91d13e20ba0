"""How benchmark prompts are rendered: plain text, or through the model's chat template.

An instruct model scored on plain-text prompts measures something its users never send;
an adapter that breaks the chat format shows up only when the benchmark goes through the
template. lm-eval renders both ways itself (`apply_chat_template`, `fewshot_as_multiturn`,
`system_instruction`); this module carries the choice from the command line or the gate
policy into lm-eval, the cache keys and the run log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


@dataclass(frozen=True)
class BenchFormat:
    """lm-eval's prompt-rendering switches for benchmark tasks.

    Attributes:
        chat_template: Render each request through the base's chat template.
        fewshot_as_multiturn: With the template, few-shot examples become earlier
            user/assistant turns (lm-eval's default) rather than one user message.
        system_instruction: Text sent as the system turn (with the template) or
            prepended to the prompt (without it).
    """

    chat_template: bool = False
    fewshot_as_multiturn: bool = True
    system_instruction: str | None = None

    @property
    def active(self) -> bool:
        return self.chat_template or bool(self.system_instruction)

    def record(self) -> dict[str, Any]:
        """The run.json form (spec and provenance); empty for plain prompts."""
        if not self.active:
            return {}
        return {"chat_template": self.chat_template,
                "fewshot_as_multiturn": self.fewshot_as_multiturn if self.chat_template else False,
                **({"system_instruction": self.system_instruction} if self.system_instruction else {})}

    def lm_eval_kwargs(self) -> dict[str, Any]:
        return {"apply_chat_template": self.chat_template,
                "fewshot_as_multiturn": self.chat_template and self.fewshot_as_multiturn,
                "system_instruction": self.system_instruction or None}

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> "BenchFormat":
        data = data or {}
        return cls(chat_template=bool(data.get("chat_template")),
                   fewshot_as_multiturn=bool(data.get("fewshot_as_multiturn", True)),
                   system_instruction=data.get("system_instruction") or None)


def describe(record: dict[str, Any] | None) -> str:
    """One phrase for headers: 'chat template, few-shot as turns, system instruction' or 'plain'."""
    fmt = BenchFormat.from_record(record)
    if not fmt.active:
        return "plain prompts"
    parts = ["chat template" if fmt.chat_template else "plain prompts"]
    if fmt.chat_template:
        parts.append("few-shot as turns" if fmt.fewshot_as_multiturn else "few-shot in one turn")
    if fmt.system_instruction:
        parts.append(f"system instruction ({len(fmt.system_instruction)} chars)")
    return ", ".join(parts)


def system_text(value: str | None) -> str | None:
    """`--system-instruction TEXT`, or `@FILE` for the text of a file."""
    if not value or not value.startswith("@"):
        return value or None
    path = Path(value[1:])
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--system-instruction {value}: cannot read {path} ({exc.__class__.__name__})",
                          "pass the text itself, or @PATH of a readable UTF-8 file") from None
    if not text:
        raise ConfigError(f"--system-instruction {value}: {path} is empty", "write the instruction into the file")
    return text


def check_chat_template(base: str, trust_remote_code: bool = False) -> None:
    """Fail before any weights load when the base's tokenizer has no chat template."""
    from harness.evaluate.models import resolve_base

    kind, location, gguf = resolve_base(base)
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    tok = AutoTokenizer.from_pretrained(location, **kwargs)
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"--chat-template: the tokenizer of {base} has no chat template",
                          "drop --chat-template for this base (plain prompts), or use an instruct model whose "
                          "tokenizer_config.json carries one")


def with_policy(given: BenchFormat, policy) -> BenchFormat:
    """The format a gated run uses: the policy's `bench_prompts` unless the command line set
    one; a command line that contradicts the policy fails now, not after the run."""
    wanted = getattr(policy, "bench_prompts", None) if policy is not None else None
    if wanted is None:
        return given
    fmt = wanted.bench_format()
    if given.active and given.record() != fmt.record():
        raise ConfigError(f"--chat-template/--system-instruction ask for {describe(given.record())}, but the "
                          f"policy's bench_prompts require {describe(fmt.record())}",
                          "drop those flags (the policy's rendering is used), or change bench_prompts in the policy")
    return fmt
