"""Building judge calls and asking them: render the prompts, dedupe by cache key, re-ask once.

Every judge question is one *call*: its messages are hashed into a cache key, so identical
questions (two models giving the same answer, a resumed run) are asked once. A call whose
reply does not parse is re-asked once, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.errors import ConfigError
from harness.evaluate.judges.base import Budget, CallStats, ChatRequest, Completion, one_line, read_api_key, redact
from harness.evaluate.judges.cache import JudgeCache, call_key, default_path
from harness.evaluate.judges.check import backend_class, suite_where
from harness.evaluate.judges.parse import PairwiseParse, PointwiseParse, parse_pairwise, parse_pointwise
from harness.evaluate.judges.spec import CriterionSpec, JudgeSpec
from harness.evaluate.judges.templates import PAIRWISE_FORMAT, compile_templates, criterion_vars, pointwise_format


@dataclass
class Call:
    """One judge question (deduplicated by cache key) and what became of it."""

    kind: str  # pointwise | pairwise
    criteria: list[CriterionSpec]
    request: ChatRequest
    reply: Completion | None = None
    parsed: PointwiseParse | PairwiseParse | None = None
    reask: ChatRequest | None = None
    reask_reply: Completion | None = None
    raw: list[str] = field(default_factory=list)
    error: str | None = None


class JudgeSession:
    """One judging pass over a suite: the backend, the cache and every distinct call.

    Callers add calls (`pointwise_call`, `pairwise_call`, each returning the call's key),
    then `run_calls()` asks them all, re-asking once where a reply does not parse.
    """

    def __init__(self, suite: Any, spec: JudgeSpec, log: Callable[[str], None], use_cache: bool):
        self.suite = suite
        self.spec = spec
        self.where = suite_where(suite)
        self.log = lambda msg: log(redact(msg))
        self.templates = compile_templates(spec, self.where)
        read_api_key(spec.api_key_env, self.where)
        self.stats = CallStats()
        b = spec.budget
        self.budget = Budget(b.max_requests, b.max_tokens, b.max_seconds, stats=self.stats)
        self.backend = backend_class(spec, self.where)(spec, self.stats, self.budget, self.log)
        self.cache = JudgeCache(default_path() if use_cache else None)
        self.identity = self.backend.identity()
        self.params = self.backend.params()
        self.calls: dict[str, Call] = {}
        self.rubric = {c.name: criterion_vars(c) for c in spec.criteria}
        self.cached = 0
        self.reasks = 0

    def close(self) -> None:
        """Close the cache and the backend's connections."""
        self.cache.close()
        self.backend.close()

    # ----------------------------------------------------------------- building

    def _render(self, name: str, ctx: dict[str, Any]) -> str:
        try:
            return self.templates[name].render(ctx)
        except Exception as exc:  # a template bug must name the template, not crash deep inside
            raise ConfigError(f"{self.where}: judge.prompt.{name}: rendering failed: "
                              f"{type(exc).__name__}: {one_line(str(exc), 160)}", "fix the template") from None

    def _system(self, criteria: list[CriterionSpec]) -> str:
        return self._render("system", {"criteria": [criterion_vars(c) for c in criteria], "rubric": self.rubric})

    def _base_context(self, example: Any, criteria: list[CriterionSpec]) -> dict[str, Any]:
        prompt = self.suite.render(example)
        if prompt.text is not None:
            task = prompt.text
        else:
            task = "\n\n".join(content for role, content in prompt.messages or () if role == "user")
        refs = list(example.references) if self.spec.reference else []
        return {"criteria": [criterion_vars(c) for c in criteria], "rubric": self.rubric, "prompt": task,
                "reference": refs[0] if refs else None, "references": refs, "vars": dict(example.vars),
                "item_id": example.id}

    def _add(self, kind: str, criteria: list[CriterionSpec], user: str) -> str:
        messages = (("system", self._system(criteria)), ("user", user))
        key = call_key(self.identity, [{"role": r, "content": c} for r, c in messages], self.params)
        if key not in self.calls:
            self.calls[key] = Call(kind, criteria, ChatRequest(key, messages))
        return key

    def pointwise_call(self, example: Any, criteria: list[CriterionSpec], response: str) -> str:
        """Add the question "score this response on these criteria"; returns its key."""
        ctx = self._base_context(example, criteria)
        ctx.update(response=response, format=pointwise_format(criteria))
        return self._add("pointwise", criteria, self._render("pointwise", ctx))

    def pairwise_call(self, example: Any, first: str, second: str) -> str:
        """Add the question "which response is better, A (`first`) or B (`second`)"; returns its key."""
        criteria = list(self.spec.criteria)
        ctx = self._base_context(example, criteria)
        ctx.update(response_a=first, response_b=second, format=PAIRWISE_FORMAT)
        return self._add("pairwise", criteria, self._render("pairwise", ctx))

    # ----------------------------------------------------------------- asking

    def _ask(self, pending: list[tuple[Call, ChatRequest]], round_name: str) -> None:
        """Answer each (call, request) from the cache or the backend; replies land on the call."""
        if not pending:
            return
        by_key: dict[str, list[Call]] = {}
        for call, request in pending:
            by_key.setdefault(request.key, []).append(call)
        requests = {request.key: request for _, request in pending}
        hits = self.cache.get_many(requests)
        for key, value in hits.items():
            reply = Completion(redact(value["text"]), value.get("prompt_tokens", 0),
                               value.get("completion_tokens", 0), cached=True)
            for call in by_key[key]:
                self._deliver(call, reply, round_name)
        self.cached += len(hits)
        missing = [r for k, r in requests.items() if k not in hits]
        if not missing:
            return
        total, done = len(missing), 0
        last_report = time.monotonic()
        self.log(f"judge · {self.suite.name}: {round_name}: {total} call(s) to send, {len(hits)} from cache")

        def on_done(request: ChatRequest, reply: Completion) -> None:
            nonlocal done, last_report
            done += 1
            if reply.ok:
                self.cache.put(request.key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                             "completion_tokens": reply.completion_tokens})
            for call in by_key[request.key]:
                self._deliver(call, reply, round_name)
            now = time.monotonic()
            if done == total or now - last_report >= 10:
                last_report = now
                self.log(f"judge · {self.suite.name}: {round_name}: {done}/{total} answered "
                         f"({self.stats.retries} retries, {self.stats.failures} failed so far)")

        self.backend.complete_many(missing, on_done)

    def _deliver(self, call: Call, reply: Completion, round_name: str) -> None:
        if round_name == "ask":
            call.reply = reply
        else:
            call.reask_reply = reply

    def run_calls(self) -> None:
        """Ask every call (cache first), then re-ask once each call whose reply did not parse."""
        calls = list(self.calls.values())
        self._ask([(c, c.request) for c in calls], "ask")
        reasks: list[tuple[Call, ChatRequest]] = []
        for call in calls:
            reply = call.reply
            if reply is None or not reply.ok:
                call.error = (reply.error if reply else None) or "no reply"
                continue
            call.raw.append(reply.text or "")
            call.parsed = self._parse(call, reply.text)
            if call.parsed.error is not None:
                call.reask = self._reask_request(call, reply)
                reasks.append((call, call.reask))
        self.reasks = len(reasks)
        self._ask(reasks, "re-ask")
        for call, _ in reasks:
            self._take_reask(call)

    def _reask_request(self, call: Call, reply: Completion) -> ChatRequest:
        """The conversation so far plus "your reply was unusable because ...; answer again"."""
        assert call.parsed is not None
        ctx = {"error": call.parsed.error, "raw": reply.text, "criteria": [criterion_vars(c) for c in call.criteria],
               "rubric": self.rubric,
               "format": pointwise_format(call.criteria) if call.kind == "pointwise" else PAIRWISE_FORMAT}
        messages = (*call.request.messages, ("assistant", reply.text or ""), ("user", self._render("reask", ctx)))
        key = call_key(self.identity, [{"role": r, "content": c} for r, c in messages], self.params)
        return ChatRequest(key, messages)

    def _take_reask(self, call: Call) -> None:
        """Merge the re-ask's reply into the call: its scores win where both replies scored."""
        reply = call.reask_reply
        first = call.parsed
        assert first is not None
        if reply is None or not reply.ok:
            call.error = f"{first.error}; re-ask failed: {(reply.error if reply else None) or 'no reply'}"
            return
        call.raw.append(reply.text or "")
        second = self._parse(call, reply.text)
        if isinstance(first, PointwiseParse) and isinstance(second, PointwiseParse):
            merged = dict(first.scores)
            merged.update(second.scores)  # the answer to the re-ask wins where both scored
            missing = [c.name for c in call.criteria if c.name not in merged]
            call.parsed = PointwiseParse(merged, None if not missing else second.error)
        else:
            call.parsed = second
        if call.parsed.error is not None:
            call.error = f"unusable reply after one re-ask: {call.parsed.error}"

    def _parse(self, call: Call, text: str | None) -> PointwiseParse | PairwiseParse:
        if call.kind == "pointwise":
            return parse_pointwise(text, call.criteria)
        return parse_pairwise(text)
