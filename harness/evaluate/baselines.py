"""Baseline arms of `harness compare`: what the team could have had without training.

    --baseline fewshot:K       the base, shown K solved examples from the suite's own pool
                               (suite.yaml `fewshot:`; never eval items) before each item
    --baseline system:FILE     the base under FILE's text as its system prompt
    --baseline-model [NAME=]PATH|ASSET        another local model, loaded like the base
    --baseline-model [NAME=]openai:MODEL@URL  a hosted model through the judges' HTTP client

Each arm answers the same suite items as the base and the adapters and is recorded under
its own model name (`base+fewshot:3`, `base+system:terse`, NAME) in items.jsonl, with what
defines it (the chosen example ids, file hashes, weights or endpoint) in run.json
`provenance.baselines`; the comparison then puts every adapter against every arm as well
as against the base. A prompted arm is the engine's "base" variant asked with other
prompts: its cache keys differ from the base's because the prompt tokens are part of every
key. Arms answer suites only (benchmarks have their own `--num-fewshot`), are not judged,
and are not re-asked under `--perturb`.

Everything a user can get wrong (an unknown kind, K larger than a pool, a suite without a
pool, a pool that overlaps the eval set, a missing file or model, an endpoint that does not
answer) fails in `prepare`, before any model loads.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.errors import ConfigError
from harness.hashing import sha256_bytes
from harness.types import Example, Prompt

FEWSHOT, SYSTEM, MODEL, HOSTED = "fewshot", "system", "model", "hosted"
PROMPTED = (FEWSHOT, SYSTEM)  # arms that are the base model asked differently
HOSTED_PREFIX = "openai:"
KINDS_HINT = ("use fewshot:K (K solved examples from the suite's few-shot pool) or system:FILE (a system prompt); "
              "another model goes to --baseline-model")


@dataclass
class Baseline:
    """One arm. `shots` (suite -> chosen pool examples) and `text` are filled by `prepare`."""

    name: str
    kind: str
    arg: str  # as given on the command line
    k: int | None = None
    file: Path | None = None
    model: str | None = None
    url: str | None = None
    text: str | None = None
    shots: dict[str, list[Example]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self, suite) -> Callable[[Example], Prompt]:
        """How this arm asks one item of `suite`."""
        if self.kind == FEWSHOT:
            shots = self.shots[suite.name]
            return lambda ex: fewshot_prompt(suite, ex, shots)
        if self.kind == SYSTEM:
            text = self.text or ""
            return lambda ex: system_prompt(suite, ex, text)
        return suite.render


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+:-]+", "-", name).strip("-")


def parse_baseline(arg: str) -> Baseline:
    """One `--baseline` value (syntax and files only).

    Raises:
        ConfigError: an unknown kind, a K that is no positive whole number, a missing or empty file.
    """
    kind, sep, rest = arg.partition(":")
    if kind == FEWSHOT and sep:
        if not rest.isdigit() or int(rest) < 1:
            raise ConfigError(f"--baseline {arg}: K must be a whole number of examples, 1 or more",
                              "write e.g. --baseline fewshot:3")
        return Baseline(name=f"base+fewshot:{int(rest)}", kind=FEWSHOT, arg=arg, k=int(rest))
    if kind == SYSTEM and sep and rest:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ConfigError(f"--baseline {arg}: {path} is not a file", "pass a text file holding the system prompt")
        return Baseline(name=f"base+system:{_safe(path.stem) or 'prompt'}", kind=SYSTEM, arg=arg, file=path)
    raise ConfigError(f"--baseline {arg}: unknown baseline kind '{kind if sep else arg}'", KINDS_HINT)


def parse_baseline_model(arg: str) -> Baseline:
    """One `--baseline-model` value: `[NAME=]PATH|ASSET` or `[NAME=]openai:MODEL@URL` (syntax only)."""
    name, sep, spec = arg.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        name, spec = "", arg
    if spec.startswith(HOSTED_PREFIX):
        model, at, url = spec[len(HOSTED_PREFIX):].partition("@")
        if not model or not at or not url.startswith(("http://", "https://")):
            raise ConfigError(f"--baseline-model {arg}: a hosted model is written openai:MODEL@URL",
                              "e.g. --baseline-model big=openai:gpt-4o-mini@https://api.openai.com/v1 "
                              "(the key, if any, in HARNESS_BASELINE_API_KEY)")
        return Baseline(name=_safe(name or model), kind=HOSTED, arg=arg, model=model, url=url)
    if not spec:
        raise ConfigError(f"--baseline-model {arg!r}: no model given", "pass a model folder, asset name or NAME=PATH")
    return Baseline(name=_safe(name or Path(spec).expanduser().name or spec), kind=MODEL, arg=arg, model=spec)


def parse_all(baselines: Iterable[str], models: Iterable[str], reserved: Iterable[str] = ()) -> list[Baseline]:
    """Every arm of a command line, with unique names that no model of the run uses.

    Raises:
        ConfigError: a bad value (see `parse_baseline`), or two arms / an arm and a model of one name.
    """
    arms = [parse_baseline(a) for a in baselines or []] + [parse_baseline_model(m) for m in models or []]
    taken = {"base", *reserved}
    seen: set[str] = set()
    for arm in arms:
        if arm.name in seen:
            raise ConfigError(f"two baselines are named '{arm.name}'", "pass each baseline once, or name them NAME=...")
        if arm.name in taken:
            raise ConfigError(f"baseline '{arm.arg}' is named '{arm.name}', like a model of the run",
                              "name it: --baseline-model OTHER=...")
        seen.add(arm.name)
    return arms


def choose_shots(pool: list[Example], k: int, seed: int, suite: str) -> list[Example]:
    """K pool examples, the same for every item of the suite; seeded by the run's seed and the suite."""
    rng = random.Random(int(sha256_bytes(f"fewshot|{seed}|{suite}|{k}".encode())[:16], 16))
    return rng.sample(pool, k)


def shot_answer(example: Example) -> str:
    """The solved answer a shot shows: its shortest reference (EM/F1 take the best reference,
    so the shortest is correct and shows the briefest style)."""
    return min(example.references, key=lambda a: (len(a), a))


def fewshot_prompt(suite, example: Example, shots: list[Example]) -> Prompt:
    """The item's prompt after K solved examples: chat suites get one user/assistant turn pair
    per shot (the system message, if any, stays first); plain-text suites get each shot's
    prompt and answer, separated by a blank line."""
    target = suite.render(example)
    if target.messages:
        system = tuple(m for m in target.messages if m[0] == "system")
        turns: list[tuple[str, str]] = []
        for shot in shots:
            user = [c for r, c in suite.render(shot).messages or () if r != "system"]
            turns += [("user", "\n".join(user)), ("assistant", shot_answer(shot))]
        return Prompt(messages=system + tuple(turns) + tuple(m for m in target.messages if m[0] != "system"))
    parts = []
    for shot in shots:
        text = suite.render(shot).text or ""
        parts.append(text + ("" if text.endswith((" ", "\n")) else " ") + shot_answer(shot) + "\n\n")
    return Prompt(text="".join(parts) + (target.text or ""))


def system_prompt(suite, example: Example, text: str) -> Prompt:
    """The item's prompt under another system prompt: it replaces the suite's system message
    (chat suites), or comes first, followed by a blank line (plain-text suites)."""
    target = suite.render(example)
    if target.messages:
        return Prompt(messages=(("system", text),) + tuple(m for m in target.messages if m[0] != "system"))
    return Prompt(text=text.rstrip() + "\n\n" + (target.text or ""))


def prepare(arms: list[Baseline], suites: list, *, seed: int, engine: str = "transformers",
            allow_pickle: bool = False, trust_remote_code: bool = False) -> None:
    """Everything knowable before a model loads: pools and K, the shots, files, models, endpoints.

    Raises:
        ConfigError: no suite, a suite without a pool, K larger than a pool, a pool that
            overlaps the eval set, an empty system prompt, an endpoint that does not answer.
        ModelError: a local baseline model that is missing or not allowed.
    """
    if arms and not suites:
        raise ConfigError("baselines answer suite items, and this run has no --suite",
                          "add --suite NAME, or drop --baseline/--baseline-model")
    for arm in arms:
        if arm.kind == FEWSHOT:
            assert arm.k is not None
            for suite in suites:
                pool = suite.fewshot_pool()
                if arm.k > len(pool):
                    raise ConfigError(f"--baseline {arm.arg}: suite '{suite.name}' has {len(pool)} examples in its "
                                      f"few-shot pool, fewer than K={arm.k}",
                                      f"pass K of at most {len(pool)}, or grow the pool (fewshot: in its suite.yaml)")
                arm.shots[suite.name] = choose_shots(pool, arm.k, seed, suite.name)
                arm.pools[suite.name] = {"pool_size": len(pool), "pool_sha256": suite.fewshot_pool_hash(),
                                         "pool": suite.spec.fewshot.model_dump(exclude_none=True)}
        elif arm.kind == SYSTEM:
            assert arm.file is not None
            try:
                arm.text = arm.file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--baseline {arm.arg}: cannot read {arm.file}: {exc}", "pass a UTF-8 text file") from None
            if not arm.text:
                raise ConfigError(f"--baseline {arm.arg}: {arm.file} is empty", "write the system prompt into it")
        elif arm.kind == MODEL:
            if engine != "transformers":
                raise ConfigError(f"--baseline-model {arm.arg}: a local baseline model needs --engine transformers "
                                  "(a second vLLM engine would not fit beside the first)",
                                  "drop --engine vllm, or evaluate that model in its own run")
            from harness.evaluate.models import check_files

            check_files(arm.model or "", [], allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        else:
            hosted = hosted_engine(arm)
            try:
                hosted.ping()
            finally:
                hosted.close()


def hosted_engine(arm: Baseline, batch_size: int = 16):
    from harness.evaluate.engines.hosted import HostedEngine

    return HostedEngine(arm.model or "", arm.url or "", batch_size=batch_size)


def provenance(arm: Baseline, engine: Any, seed: int) -> dict[str, Any]:
    """What run.json records of an arm (`provenance.baselines[name]`)."""
    out: dict[str, Any] = {"kind": arm.kind, "arg": arm.arg}
    if arm.kind == FEWSHOT:
        out.update(k=arm.k, seed=seed, variant="base", answer="shortest reference",
                   shots={s: {"ids": [ex.id for ex in shots], **arm.pools[s]} for s, shots in arm.shots.items()})
    elif arm.kind == SYSTEM:
        out.update(variant="base", file=str(arm.file), sha256=sha256_bytes((arm.text or "").encode("utf-8")))
    elif arm.kind == MODEL:
        out.update(model=engine.base.__dict__)
    else:
        out.update(model=engine.identity)
    return out


def evaluate(arms: list[Baseline], cfg, engine, suites: list, placement, run_suite: Callable[..., tuple],
             warn: Callable[[str], None]) -> tuple[list[dict], dict[str, dict], dict[str, dict]]:
    """Every arm on every suite: (records, suite -> arm -> aggregates, arm -> provenance).

    Args:
        arms: Prepared arms (`prepare`).
        cfg: The `RunConfig`.
        engine: The run's engine; prompted arms use its "base" variant.
        suites: The loaded suites.
        placement: Where the run's models are; local baseline models load there too.
        run_suite: `evaluate_suite` with the run's cache, progress and ranks bound:
            run_suite(engine, suite, model_names, render=..., variants=...).
        warn: Where loading warnings go.
    """
    records: list[dict] = []
    aggs: dict[str, dict] = {}
    prov: dict[str, dict] = {}
    for arm in arms:
        own = None
        if arm.kind == MODEL:
            from dataclasses import replace

            from harness.evaluate.engines.open import open_engine

            own = open_engine(replace(cfg, base=arm.model, adapters=[]), placement, warn)
        elif arm.kind == HOSTED:
            own = hosted_engine(arm, cfg.batch_size)
        try:
            for suite in suites:
                recs, per_task = run_suite(own or engine, suite, [arm.name], render=arm.render(suite),
                                           variants={arm.name: "base"})
                records.extend(recs)
                aggs.setdefault(suite.name, {}).update(per_task[suite.name])
            prov[arm.name] = provenance(arm, own or engine, cfg.seed)
        finally:
            if own is not None:
                own.close()
    return records, aggs, prov
