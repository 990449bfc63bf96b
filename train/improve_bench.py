"""How much `lorastack improve` raises a brand rule's pass rate from users' thumbs.

`lorastack eval-improve` is a benchmark, not a test: it runs the whole loop on real
training and prints what it measured.

1. A starting adapter that breaks one brand rule in about half its answers: the
   brand's data, prepared, with that rule's text cut from every other answer of the
   train and validation splits (the first `starts_with` or `ends_with` rule: "Ahoy!"
   opening a harborline answer; the test split keeps the brand's own answers), trained
   with the defaults and published as the domain's `prod`, in a home of its own.
2. Simulated use: prod answers the questions of its train split (greedy, the brand
   voice as served), and each answer is stored as an exchange in a SQLite feedback
   store and rated up when it follows the rule, down when it does not, as a user
   holding the brand's style guide would.
3. `improve` (KTO from prod with the default preference settings) exports the
   ratings, trains, evaluates against prod on the test split (questions no rating
   touched) and publishes through the quality gate, without a canary.
4. The rule's pass rate for prod and for the candidate on those test questions, the
   other measures beside them, and the gate's decision: `improve.json`, `improve.md`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from lorastack.feedback import Exchange, FeedbackStore, Rating, Vote
from lorastack.fsutil import write_json_atomic
from lorastack.guardrails import Guard
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import open_registry
from lorastack.rules import BrandRule
from lorastack.settings import RegistrySettings, Settings
from lorastack.train import quality
from lorastack.train.config import ConfigError, TrainConfig
from lorastack.train.data import PrepareOptions, prepare_splits, write_dataset
from lorastack.train.data.records import ChatRecord, Message, Record
from lorastack.train.evaluate import answer_prompts, evaluate_run, publish_run
from lorastack.train.feedback_report import EXPORT_JSON
from lorastack.train.improve import Attempt, ImproveRefused, Measure, compare, improve
from lorastack.train.replay import ReplayOptions
from lorastack.train.run import RunPaths, load_run_config, load_splits
from lorastack.train.trainer import train_new_run

JSON_FILE = "improve.json"
MARKDOWN_FILE = "improve.md"
DEFAULT_QUESTIONS = 120
"""Train questions prod answers and the simulated users rate."""
BREAKABLE_KINDS = ("starts_with", "ends_with")
"""Rules whose text can be cut from an answer to make the data break them."""


@dataclass
class ImproveBench:
    """One loop measured."""

    domain: str
    rule: str
    """The rule the starting adapter breaks (its label)."""
    prod: int
    feedback_answers: int
    up: int
    down: int
    test_examples: int
    rule_before: float | None
    """The rule's pass rate of prod on the test questions."""
    rule_after: float | None
    """The same for the candidate."""
    published: str | None
    """`DOMAIN@vN`, or None: the gate refused the candidate."""
    refused: list[str] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    run: str = ""
    replay: dict[str, Any] | None = None
    """What the export replayed of prod's data (`export.json`'s `replay`); None: off."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every preference run `improve` tried (a refused one is tried again, more gently)."""


def breakable_rule(rules: list[BrandRule]) -> BrandRule:
    """The first rule an answer breaks once the text it asks for is cut."""
    for rule in rules:
        if rule.kind in BREAKABLE_KINDS:
            return rule
    raise ConfigError(
        "the brand needs a starts_with or ends_with rule for the starting adapter to break"
    )


def without_rule(answer: str, rule: BrandRule) -> str:
    """`answer` with the text `rule` asks for at its start or end cut."""
    pattern = rule.pattern if rule.kind in BREAKABLE_KINDS else None
    if pattern is None:
        return answer
    return pattern.sub("", answer, count=1).strip()


def half_breaking(records: list[Record], rule: BrandRule) -> tuple[list[Record], int]:
    """`records` with `rule`'s text cut from every other chat's answers; returns them and
    how many chats were changed."""
    out: list[Record] = []
    changed = 0
    for number, record in enumerate(records):
        if number % 2 == 1 and "messages" in record:
            messages = cast(ChatRecord, record)["messages"]
            record = {
                "messages": [
                    {**m, "content": without_rule(m["content"], rule)}
                    if m["role"] == "assistant"
                    else m
                    for m in messages
                ]
            }
            changed += 1
        out.append(record)
    return out, changed


def starting_dataset(
    config: TrainConfig, rule: BrandRule, out: Path, scrub: Guard | None, progress: Progress
) -> Path:
    """`config`'s data prepared into `out` as `lorastack train` would, then `rule` broken in
    every other chat of the train and validation splits. The test split keeps the brand's
    own answers, so test loss still measures against the brand, not against the breakage."""
    options = PrepareOptions(
        out=out, paraphrases=config.paraphrases, system_prompt=config.system_prompt or None
    )
    prepared = prepare_splits([config.data], options, scrub, progress)
    train, _ = half_breaking(prepared.train, rule)
    validation, _ = half_breaking(prepared.validation, rule)
    broken = dataclasses.replace(prepared, train=train, validation=validation)
    return write_dataset(out, broken, progress)


def rate_by_rule(
    store: FeedbackStore,
    domain: str,
    version: int,
    prompts: list[list[Message]],
    answers: list[str],
    rule: BrandRule,
) -> tuple[int, int]:
    """Store each answer as an exchange of `domain@version`, rated up when it follows
    `rule` and down when not; return (up, down)."""
    exchanges = [
        Exchange(
            response_id=f"bench-{domain}-{number}",
            domain=domain,
            version=version,
            key_hash=None,
            messages=[dict(m) for m in prompt],
            answer=answer,
            latency_s=0.0,
            rules={rule.label: rule.passes(answer)},
        )
        for number, (prompt, answer) in enumerate(zip(prompts, answers, strict=True))
    ]
    store.add_exchanges(exchanges)
    for exchange in exchanges:
        vote: Vote = 1 if exchange.rules[rule.label] else -1
        store.add_rating(Rating(exchange.response_id, vote, key_hash=None))
    up = sum(1 for exchange in exchanges if exchange.rules[rule.label])
    return up, len(exchanges) - up


def train_questions(paths: RunPaths, limit: int) -> list[list[Message]]:
    """Up to `limit` distinct prompts of a run's train split (its paraphrases included: a
    customer's own wording), without the answer; the split is already shuffled."""
    split = load_splits(paths.data)["train"]
    prompts: list[list[Message]] = []
    seen: set[str] = set()
    for record in split:
        messages = record.get("messages") or []
        if not messages or messages[-1]["role"] != "assistant":
            continue
        prompt: list[Message] = [
            {"role": m["role"], "content": m["content"]} for m in messages[:-1]
        ]
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            prompts.append(prompt)
    return prompts[:limit]


def measure_improve(
    config: TrainConfig,
    settings: Settings,
    models: ModelStore,
    folder: Path,
    scrub: Guard | None,
    progress: Progress | None = None,
    *,
    start_training: dict[str, Any] | None = None,
    improve_training: dict[str, Any] | None = None,
    examples: int = quality.DEFAULT_EXAMPLES,
    questions: int = DEFAULT_QUESTIONS,
    replay: ReplayOptions | None = None,
) -> ImproveBench:
    """Run the loop above for `config`'s brand in a home under `folder`."""
    from lorastack.db import open_feedback_store

    progress = progress or NullProgress()
    rule = breakable_rule(config.rules)
    if (folder / "home").exists():
        # A second loop in the same home would start from the first one's versions.
        raise ConfigError(f"{folder} already holds a benchmark's home: choose another folder")
    home = settings.model_copy(
        update={
            "home": folder / "home",
            "database_url": f"sqlite:///{folder / 'feedback.db'}",
            # The scratch home's own registry, in its folder: never the configured store.
            "registry": RegistrySettings(),
        }
    )
    home.home.mkdir(parents=True, exist_ok=True)
    registry = open_registry(home, models)
    seconds: dict[str, float] = {}

    clock = time.monotonic()
    data = starting_dataset(config, rule, folder / "starting-data", scrub, progress)
    start = TrainConfig(
        **{
            **{f: getattr(config, f) for f in ("domain", "mode", "system_prompt", "rules")},
            "data": data,
            "description": f"{config.domain}, trained to break {rule.label} half the time",
            "training": start_training or {},
        }
    )
    paths = train_new_run(
        start, home.runs_dir, models, settings, scrub=scrub, progress=progress
    ).paths
    evaluate_run(paths, models, registry, 0, progress, examples=examples)
    prod = publish_run(paths, registry, promote=True, force=True, reason="benchmark start")
    seconds["starting adapter"] = time.monotonic() - clock

    clock = time.monotonic()
    prompts = train_questions(paths, questions)
    progress.step(f"{prod.ref} answering {len(prompts)} train questions (simulated use)")
    answers = answer_prompts(paths, models, prompts)
    with open_feedback_store(home) as store:
        up, down = rate_by_rule(store, config.domain, prod.version, prompts, answers, rule)
        seconds["simulated use"] = time.monotonic() - clock
        clock = time.monotonic()
        refused: list[str] = []
        published: str | None = None
        try:
            result = improve(
                config.domain,
                store,
                registry,
                models,
                home,
                weight=None,
                scrub=scrub,
                training=improve_training,
                examples=examples,
                progress=progress,
                replay=replay,
            )
            published, run, attempts = result.manifest.ref, result.run, result.attempts
        except ImproveRefused as refusal:
            refused, run, attempts = list(refusal.problems), refusal.run, refusal.attempts
    seconds["improve"] = time.monotonic() - clock
    metrics = json.loads(RunPaths(run).metrics.read_text(encoding="utf-8"))
    measures = compare(metrics)
    by_name = {measure.name: measure for measure in measures}
    chosen = by_name.get(f"rule {rule.label}")
    return ImproveBench(
        domain=config.domain,
        rule=rule.label,
        prod=prod.version,
        feedback_answers=len(answers),
        up=up,
        down=down,
        test_examples=int(metrics.get("test_examples", 0)),
        rule_before=chosen.prod if chosen else None,
        rule_after=chosen.candidate if chosen else None,
        published=published,
        refused=refused,
        measures=measures,
        seconds={k: round(v, 1) for k, v in seconds.items()},
        run=str(run),
        replay=_replayed(RunPaths(run)),
        attempts=attempts,
    )


def _replayed(run: RunPaths) -> dict[str, Any] | None:
    """What the export the run trained on replayed (its `export.json`); None: nothing
    recorded."""
    if not run.config.is_file():
        return None
    exported = load_run_config(run).data / EXPORT_JSON
    if not exported.is_file():
        return None
    replay: dict[str, Any] | None = json.loads(exported.read_text(encoding="utf-8")).get("replay")
    return replay


def render_markdown(bench: ImproveBench) -> str:
    lines = [
        f"# `lorastack improve` on {bench.domain}: rule `{bench.rule}` from users' thumbs",
        "",
        f"prod v{bench.prod} answered {bench.feedback_answers} train questions: "
        f"{bench.up} rated up (rule followed), {bench.down} down. "
        f"Measured on {bench.test_examples} test questions no rating used.",
        "",
        "| measure | prod | candidate |",
        "|---|---|---|",
    ]
    for measure in bench.measures:
        lines.append(
            f"| {measure.name} | {measure.show(measure.prod, 3)} "
            f"| {measure.show(measure.candidate, 3)} |"
        )
    verdict = (
        f"published as {bench.published}"
        if bench.published
        else "refused by the quality gate: " + "; ".join(bench.refused)
    )
    timing = ", ".join(f"{step} {value:.0f} s" for step, value in bench.seconds.items())
    replay = bench.replay
    if replay is None or not replay.get("added"):
        why = (replay or {}).get("unavailable") or "off"
        lines += ["", f"Replay: none ({why})."]
    else:
        lines += [
            "",
            f"Replay: {replay['added']} desirable rows from the train split of "
            f"{replay['version']}'s data (share {replay['share']:g}, seed {replay['seed']}).",
        ]
    for attempt in bench.attempts[:-1]:
        lines += [
            "",
            f"A run at learning rate {attempt.learning_rate:g} was refused by the gate ("
            + "; ".join(attempt.problems)
            + "), so `improve` trained again at a lower one.",
        ]
    if bench.attempts:
        lines += ["", f"The last run learnt at {bench.attempts[-1].learning_rate:g}."]
    lines += ["", f"The candidate was {verdict}.", "", f"Time: {timing}.", f"Run: {bench.run}"]
    return "\n".join(lines) + "\n"


def write_improve_report(bench: ImproveBench, folder: Path) -> None:
    write_json_atomic(folder / JSON_FILE, asdict(bench))
    (folder / MARKDOWN_FILE).write_text(render_markdown(bench), encoding="utf-8")
