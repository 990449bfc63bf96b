"""The usage section of the Adapters tab: each domain's tokens per day as a chart, and its
answers, tokens and mean latency over the same days (`GET /admin/usage`, summed by domain
and UTC day). Refreshed with the tab's table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import gradio as gr
import pandas as pd

from lorastack.ui.client import Gateway
from lorastack.ui.errors import UiClientError
from lorastack.ui.wording import warning

USAGE_HEADERS = ["domain", "answers", "tokens", "mean latency"]
USAGE_DAYS = 14


def usage_frame(groups: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The chart's data: one row per UTC day and domain, with its tokens."""
    rows = [
        (str(g.get("day") or ""), str(g.get("domain") or ""), _count(g.get("total_tokens")))
        for g in groups
    ]
    return pd.DataFrame(sorted(rows), columns=["day", "domain", "tokens"])


def usage_rows(groups: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The table: per domain over all the days, its answers, tokens and mean latency (the
    days' means weighted by their answers); the most tokens first."""
    totals: dict[str, list[float]] = {}  # domain -> [answers, tokens, latency x answers]
    for group in groups:
        answers = _count(group.get("requests"))
        entry = totals.setdefault(str(group.get("domain") or ""), [0, 0, 0.0])
        entry[0] += answers
        entry[1] += _count(group.get("total_tokens"))
        entry[2] += answers * _number(group.get("mean_latency_s"))
    ranked = sorted(totals.items(), key=lambda item: (-item[1][1], item[0]))
    return [
        [
            domain,
            f"{answers:,.0f}",
            f"{tokens:,.0f}",
            f"{weighted / answers:.2f} s" if answers else "",
        ]
        for domain, (answers, tokens, weighted) in ranked
    ]


def _number(value: Any) -> float:
    """A number of the gateway's answer; 0 for anything else (bool included)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _count(value: Any) -> int:
    return int(_number(value))


async def on_usage(client: Gateway) -> tuple[Any, Any, str]:
    """(the chart, the table, a note): each domain's usage over the last `USAGE_DAYS` days;
    the chart and the table are left as they are when it cannot be read (the note says
    why)."""
    try:
        groups = await client.usage(f"{USAGE_DAYS}d", "domain", daily=True)
    except UiClientError as error:
        return gr.update(), gr.update(), warning(error)
    return usage_frame(groups), usage_rows(groups), ""


def build(client: Gateway, refresh: gr.Button) -> None:
    """Lay out the section (inside the Adapters tab); `refresh` reloads it."""
    with gr.Row(equal_height=True):
        chart = gr.BarPlot(
            usage_frame([]),
            x="day",
            y="tokens",
            color="domain",
            label=f"Tokens per day (UTC), last {USAGE_DAYS} days",
            scale=3,
        )
        table = gr.Dataframe(
            headers=USAGE_HEADERS,
            value=[],
            interactive=False,
            type="array",
            label=f"Usage, last {USAGE_DAYS} days",
            scale=2,
        )
    note = gr.Markdown()
    refresh.click(partial(on_usage, client), None, [chart, table, note], api_name="usage")
