"""The Adapters tab (only with an admin key): the registry, what each engine holds and how
each version does with live traffic (its brand rules' pass rates, and what users said of
its answers: captured, thumbs up and down, the share up, corrections); each domain's usage
(tokens per day, answers and latency); load, unload, promote and roll back adapters, and
start or stop a canary; and the client keys (`ui.tabs.keys`): list, create, revoke, rotate;
all through the gateway's admin API."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeGuard

import gradio as gr

from lorastack.ui.client import Gateway
from lorastack.ui.errors import FeedbackNotCollected, UiClientError
from lorastack.ui.tabs import keys, usage
from lorastack.ui.wording import percent, warning

ADAPTER_HEADERS = [
    "domain",
    "version",
    "display name",
    "aliases, canary",
    "metrics",
    "live",
    "feedback",
    "loaded",
]
DONE_ICON = "\N{CHECK MARK}"

# The table's value, or `gr.update()` to leave it as it is.
Table = Any
# Domain -> its versions' feedback counts, as `GET /admin/feedback` lists them.
Feedback = Mapping[str, Sequence[Mapping[str, Any]]]


class _BadInput(Exception):
    """A field the action needs is empty or out of range: reported like a failed call, and
    nothing is sent."""


def adapter_rows(
    domains: Sequence[Mapping[str, Any]], feedback: Feedback | None = None
) -> list[list[str]]:
    """One table row per published version, from `GET /admin/adapters` (and, per domain,
    `GET /admin/feedback`)."""
    rows: list[list[str]] = []
    for entry in domains:
        aliases = entry.get("aliases") or {}
        canary = _mapping(entry.get("canary"))
        last_canary = _mapping(entry.get("last_canary"))
        capturing = _capturing(entry)
        counts = {c.get("version"): c for c in (feedback or {}).get(str(entry.get("domain")), ())}
        for version in entry.get("versions") or []:
            number = version.get("version")
            # An engine that unloaded the adapter keeps an `absent` slot: not worth a mention.
            engines = [e for e in version.get("engines") or [] if e.get("state") != "absent"]
            loaded = ", ".join(
                f"engine {e.get('engine', '?')}: {e.get('state', '?')}" for e in engines
            )
            rows.append(
                [
                    str(entry.get("domain", "")),
                    f"v{number}",
                    str(version.get("display_name") or ""),
                    _standing(number, aliases, canary, last_canary),
                    _metrics_summary(version.get("metrics")),
                    _live_summary(version.get("serving")),
                    _feedback_summary(counts.get(number), capturing),
                    loaded or "not loaded",
                ]
            )
    return rows


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _standing(
    number: Any,
    aliases: Mapping[str, Any],
    canary: Mapping[str, Any],
    last_canary: Mapping[str, Any],
) -> str:
    """The aliases pointing at a version, then its canary: running (with its share of the
    domain's conversations) or, for the last one, how it ended."""
    parts = sorted(a for a, v in aliases.items() if v == number)
    if canary and canary.get("version") == number:
        parts.append(f"canary {percent(canary.get('weight'))}")
    elif last_canary and last_canary.get("version") == number:
        outcome = str(last_canary.get("outcome") or "ended")
        # The gateway's reasons may repeat the outcome ("rolled back: prod keeps ...").
        reason = str(last_canary.get("reason") or "").strip()
        if reason == outcome or reason.startswith(f"{outcome}:"):
            reason = reason.removeprefix(outcome).lstrip(" :")
        parts.append(f"canary {outcome}: {reason}" if reason else f"canary {outcome}")
    return ", ".join(parts)


def _metrics_summary(metrics: Any, limit: int = 4) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    parts = []
    for name, value in metrics.items():
        if not _is_number(value):
            continue  # nested or textual entries do not fit a table cell
        parts.append(f"{name} {value:.4g}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def _live_summary(serving: Any) -> str:
    """What the gateway saw serving a version: each rule's pass rate, then the counts
    ("trail-tip 90%, max_sentences 100% (12 answers, 1 error)"); empty before any answer."""
    if not isinstance(serving, dict):
        return ""
    rules = serving.get("rules")
    rates = [
        f"{name} {_pass_rate(rate)}"
        for name, rate in (rules.items() if isinstance(rules, dict) else ())
        if _is_number(rate)
    ]
    counts = []
    answers, errors = serving.get("answers"), serving.get("errors")
    if _is_number(answers):
        counts.append(f"{answers} answer" + ("" if answers == 1 else "s"))
    if _is_number(errors) and errors:
        counts.append(f"{errors} error" + ("" if errors == 1 else "s"))
    if not rates:
        return ", ".join(counts)
    return ", ".join(rates) + (f" ({', '.join(counts)})" if counts else "")


def _capturing(entry: Mapping[str, Any]) -> bool:
    return bool(_mapping(entry.get("capture")).get("enabled"))


def _feedback_summary(counts: Mapping[str, Any] | None, capturing: bool) -> str:
    """What users said of a version's answers ("40 captured, 12 up, 3 down (80% up),
    2 corrections"); empty when nothing was captured and the domain captures nothing."""
    counts = counts or {}
    captured, up, down = (counts.get(k) for k in ("captured", "up", "down"))
    if not (capturing or any(_is_number(n) and n for n in (captured, up, down))):
        return ""
    parts = [f"{captured if _is_number(captured) else 0} captured"]
    if _is_number(up) and _is_number(down) and up + down:
        rate = counts.get("up_rate")
        share = f" ({_pass_rate(rate)} up)" if _is_number(rate) else ""
        parts.append(f"{up} up, {down} down{share}")
    corrections = counts.get("corrections")
    if _is_number(corrections) and corrections:
        parts.append(f"{corrections} correction" + ("" if corrections == 1 else "s"))
    return ", ".join(parts)


def _pass_rate(rate: float) -> str:
    # Rounded down: a rule that failed even once never reads as 100%.
    return f"{math.floor(rate * 100 + 1e-9)}%"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------- handlers


async def on_refresh(client: Gateway) -> tuple[Table, str]:
    """(the table, the result line): the table as the gateway has it now."""
    try:
        domains = await client.adapters()
    except UiClientError as error:
        return gr.update(), warning(error)
    feedback, problem = await _feedback(client, domains)
    return adapter_rows(domains, feedback), "" if problem is None else warning(problem)


async def _feedback(
    client: Gateway, domains: Sequence[Mapping[str, Any]]
) -> tuple[Feedback, UiClientError | None]:
    """Each domain's feedback counts, and the first failure worth a word: a gateway that
    keeps no feedback leaves the column empty, unless a domain captures its answers."""
    names = [str(d["domain"]) for d in domains if d.get("domain")]
    capturing = {str(d["domain"]) for d in domains if d.get("domain") and _capturing(d)}
    results = await asyncio.gather(
        *(client.feedback_counts(name) for name in names), return_exceptions=True
    )
    feedback: dict[str, Sequence[Mapping[str, Any]]] = {}
    problem: UiClientError | None = None
    for name, result in zip(names, results, strict=True):
        if isinstance(result, FeedbackNotCollected) and name not in capturing:
            continue
        if isinstance(result, UiClientError):
            problem = problem or result
        elif isinstance(result, BaseException):
            raise result  # a bug, not a refusal: Gradio reports it
        else:
            feedback[name] = result
    return feedback, problem


async def _act(client: Gateway, action: Callable[[], Awaitable[str]]) -> tuple[str, Table]:
    """(the result line, the table after it): run an admin action, then reread the table."""
    try:
        result = f"{DONE_ICON} {await action()}"
    except (UiClientError, _BadInput) as error:
        result = warning(error)
    table, _ = await on_refresh(client)  # left as it is if it cannot be read
    return result, table


def _required(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise _BadInput(f"enter the {what} first")
    return value


def _version(value: float | None) -> int:
    if value is None or int(value) < 1:
        raise _BadInput("enter a version number (1 or more)")
    return int(value)


def _alias(value: str | None) -> str:
    return (value or "").strip() or "prod"


async def on_load(client: Gateway, model: str) -> tuple[str, Table]:
    """Load an adapter (`domain`, `domain@2`, `domain@prod`) on every engine."""
    return await _act(client, lambda: client.load(_required(model, "adapter")))


async def on_unload(client: Gateway, model: str) -> tuple[str, Table]:
    """Unload an adapter from every engine."""
    return await _act(client, lambda: client.unload(_required(model, "adapter")))


async def on_promote(
    client: Gateway, domain: str, version: float | None, alias: str
) -> tuple[str, Table]:
    """Point `domain@alias` (prod by default) at `version`."""

    def promote() -> Awaitable[str]:
        return client.promote(_required(domain, "domain"), _version(version), _alias(alias))

    return await _act(client, promote)


async def on_rollback(client: Gateway, domain: str, alias: str) -> tuple[str, Table]:
    """Point `domain@alias` (prod by default) back at its previous version."""
    return await _act(client, lambda: client.rollback(_required(domain, "domain"), _alias(alias)))


async def on_start_canary(
    client: Gateway, domain: str, version: float | None, weight: float | None
) -> tuple[str, Table]:
    """Send `weight` percent of the domain's conversations to `version` (the rest stay on
    prod); a running canary gets the new version and weight."""

    def start() -> Awaitable[str]:
        name, number = _required(domain, "domain"), _version(version)
        if weight is None or not 0 < float(weight) <= 100:
            raise _BadInput("enter a share of conversations above 0%, up to 100%")
        return client.start_canary(name, number, float(weight))

    return await _act(client, start)


async def on_stop_canary(client: Gateway, domain: str, reason: str | None) -> tuple[str, Table]:
    """End the domain's canary: prod gets all its conversations again."""
    note = (reason or "").strip() or None
    return await _act(client, lambda: client.stop_canary(_required(domain, "domain"), note))


# ---------------------------------------------------------------------------- layout


def build(client: Gateway) -> None:
    """Lay out the tab (inside a `gr.Tab`) and wire its events."""
    gr.Markdown(
        "The adapter registry, what each engine holds and how each version does with live "
        "traffic: each rule's pass rate, and what users said of its answers (captured, thumbs "
        "up and down, the share up, corrections; where the domain captures answers). "
        "Actions use the admin key."
    )
    with gr.Row():
        refresh = gr.Button("\N{CLOCKWISE OPEN CIRCLE ARROW} Refresh", size="sm")
    table = gr.Dataframe(
        headers=ADAPTER_HEADERS,
        value=[],
        interactive=False,
        wrap=True,
        type="array",
        label="Adapters",
    )
    status = gr.Textbox(label="Result", interactive=False, lines=2)
    usage.build(client, refresh)
    with gr.Row(equal_height=True):
        ref = gr.Textbox(label="Adapter", placeholder="domain, domain@2 or domain@prod", scale=3)
        load = gr.Button("Load", scale=1)
        unload = gr.Button("Unload", scale=1)
    with gr.Row(equal_height=True):
        promote_domain = gr.Textbox(label="Domain", scale=2)
        promote_version = gr.Number(label="Version", precision=0, minimum=1, value=1, scale=1)
        promote_alias = gr.Textbox(label="Alias", value="prod", scale=1)
        promote = gr.Button("Promote", scale=1)
    with gr.Row(equal_height=True):
        rollback_domain = gr.Textbox(label="Domain", scale=2)
        rollback_alias = gr.Textbox(label="Alias", value="prod", scale=1)
        rollback = gr.Button("Roll back", scale=1)
    gr.Markdown(
        "A canary gets a share of a domain's conversations beside prod; the gateway may stop "
        "it by itself when it does worse than prod. Promoting a version to prod ends it."
    )
    with gr.Row(equal_height=True):
        canary_domain = gr.Textbox(label="Domain", scale=2)
        canary_version = gr.Number(label="Version", precision=0, minimum=1, value=2, scale=1)
        canary_weight = gr.Slider(
            label="Share of conversations (%)", minimum=1, maximum=100, step=1, value=10, scale=2
        )
        start_canary = gr.Button("Start canary", scale=1)
    with gr.Row(equal_height=True):
        stop_reason = gr.Textbox(label="Why stop it (optional)", scale=4)
        stop_canary = gr.Button("Stop canary", scale=1)
    keys.build(client, refresh)

    refresh.click(partial(on_refresh, client), None, [table, status], api_name="adapters")
    both = [status, table]
    load.click(partial(on_load, client), ref, both, api_name="load_adapter")
    unload.click(partial(on_unload, client), ref, both, api_name="unload_adapter")
    promote.click(
        partial(on_promote, client),
        [promote_domain, promote_version, promote_alias],
        both,
        api_name="promote",
    )
    rollback.click(
        partial(on_rollback, client), [rollback_domain, rollback_alias], both, api_name="rollback"
    )
    start_canary.click(
        partial(on_start_canary, client),
        [canary_domain, canary_version, canary_weight],
        both,
        api_name="start_canary",
    )
    stop_canary.click(
        partial(on_stop_canary, client), [canary_domain, stop_reason], both, api_name="stop_canary"
    )
