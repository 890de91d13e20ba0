"""Rubric LLM judges: score open-ended outputs against a suite's rubric.

    from harness.evaluate.judges import judge_enabled, validate_judge, judge_suite

    if judge_enabled(suite):
        validate_judge(suite)                  # before model work: key, URL, criteria, scales
        ...generate...
        result = judge_suite(suite, examples, {"base": base_preds, "lora": lora_preds}, log=print)
        result.scores["lora"]["judge:faithfulness"]    # 0..1 per item, None = unscored
        result.stats                                   # requests, retries, unscored, agreement ...

Backends are plugins registered with `register_judge(NAME)` (judges.base): `openai` (any OpenAI-compatible
chat-completions server) and `local` (a transformers folder or asset run in-process).
Importing this package does not import torch or open network connections.
"""

from harness.evaluate.judges.base import JudgeError, redact
from harness.evaluate.judges.check import JudgeCheck, judge_enabled, judge_fingerprint, resolve_spec, validate_judge
from harness.evaluate.judges.run import JudgeResult, judge_records, judge_suite
from harness.evaluate.judges.spec import JudgeSpec, parse_judge_spec

__all__ = [
    "JudgeCheck",
    "JudgeError",
    "JudgeResult",
    "JudgeSpec",
    "judge_enabled",
    "judge_fingerprint",
    "judge_records",
    "judge_suite",
    "parse_judge_spec",
    "redact",
    "resolve_spec",
    "validate_judge",
]
