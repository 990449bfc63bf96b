"""The Compare tab: one prompt answered side by side by the base model and a domain."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from lorastack.ui.catalogue import Catalogue
from lorastack.ui.client import AnsweredBy, Gateway, GuardrailNotice, Message
from lorastack.ui.errors import UiClientError
from lorastack.ui.streaming import ANSWER_PARAMS, merge_streams
from lorastack.ui.tabs import CONCURRENCY_LIMIT
from lorastack.ui.wording import notice_text, warning

# ---------------------------------------------------------------------------- handlers


async def on_compare(
    client: Gateway, catalogue: Catalogue, text: str, model: str | None
) -> AsyncGenerator[tuple[Any, Any], None]:
    """Stream both answers to `text`: (the base model's box, the domain's box)."""
    text = (text or "").strip()
    if not text:
        yield "", ""
        return
    if not model:
        yield "", warning("pick a domain first")
        return
    try:
        if catalogue.base is None:  # not listed yet (no page load), or it was down
            await catalogue.refresh()
    except UiClientError as error:
        yield warning(error), warning(error)
        return
    base = catalogue.base
    if base is None:
        yield warning("the gateway lists no base model"), ""
        return
    label = await catalogue.title(model)
    texts = {"base": "", "domain": ""}
    notes: dict[str, str] = {"base": "", "domain": ""}
    wire = [Message("user", text)]
    yield gr.update(value="", label=base.label), gr.update(value="", label=label)
    streams = {
        "base": client.stream_chat(base.id, wire, **ANSWER_PARAMS),
        "domain": client.stream_chat(model, wire, **ANSWER_PARAMS),
    }
    async for key, item in merge_streams(streams):
        relabel: str | None = None
        if isinstance(item, UiClientError):
            notes[key] = warning(item)
        elif isinstance(item, GuardrailNotice):
            notes[key] = notice_text(item)
        elif isinstance(item, AnsweredBy):
            if key != "domain" or item.model == model:
                continue
            # The version that answered (`coffee-shop@v2`, perhaps the canary), by its name.
            relabel = f"{label} \N{MIDDLE DOT} {item.model}"
        elif isinstance(item, str):
            texts[key] += item
        else:
            continue  # one stream ended; the other may still be talking
        domain_box = _with_note(texts["domain"], notes["domain"])
        yield (
            _with_note(texts["base"], notes["base"]),
            domain_box if relabel is None else gr.update(value=domain_box, label=relabel),
        )


def _with_note(text: str, note: str) -> str:
    return f"{text}\n\n{note}" if note and text else note or text


# ---------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class CompareParts:
    """What the page-wide events need from the Compare tab."""

    domain: gr.Dropdown
    base_answer: gr.Textbox


def build(client: Gateway, catalogue: Catalogue) -> CompareParts:
    """Lay out the tab (inside a `gr.Tab`) and wire its events."""
    gr.Markdown("One prompt, answered side by side by the base model and a domain.")
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(
            show_label=False, placeholder="Type a prompt and press Enter", scale=5, max_lines=8
        )
        domain = gr.Dropdown(label="Domain", choices=[], allow_custom_value=True, scale=2)
    with gr.Row():
        run = gr.Button("Compare", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    with gr.Row(equal_height=True):
        base_answer = gr.Textbox(
            label="Base model", lines=12, max_lines=30, interactive=False, buttons=["copy"]
        )
        domain_answer = gr.Textbox(
            label="Domain", lines=12, max_lines=30, interactive=False, buttons=["copy"]
        )

    comparing = gr.on(
        [prompt.submit, run.click],
        partial(on_compare, client, catalogue),
        [prompt, domain],
        [base_answer, domain_answer],
        api_name="compare",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    stop.click(None, None, None, cancels=[comparing], api_visibility="private")
    return CompareParts(domain, base_answer)
