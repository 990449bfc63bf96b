"""The Gradio app: chat with a domain, compare it with the base model, manage adapters.

A plain HTTP client of the gateway (`ui.client`); nothing here touches the engine, the
registry or the guardrails directly. Tabs:

- Chat: pick a domain (the `model`), stream its answers; switching domain keeps the
  transcript and marks the switch; each answer is titled with the domain that wrote it.
- Compare: one prompt answered side by side by the base model and a domain.
- Adapters (only with an admin key): the registry and engine state; load, unload,
  promote, roll back.

Every event has an explicit `api_name`, so `gradio_client` (and the tests) can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import gradio as gr

from lorastack.ui.client import (
    Domain,
    GatewayClient,
    GatewayError,
    GuardrailNotice,
    Message,
    StreamPiece,
)

TITLE = "lorastack"
NOTICE_ICON = "\N{SHIELD}\ufe0f"
ERROR_ICON = "\N{WARNING SIGN}\ufe0f"
DASH = "\N{EM DASH}"

# Readable on a laptop screen (about 1366x650 of page): the chat fits the window with the
# domain picker in view, and answers read at the normal text size. Gradio shows an answer
# titled with its domain (message metadata) as a "thought" box in small, faded text: the
# rules below give it the look of an ordinary answer whose first line names the domain.
CSS = """
.lorastack-chat .thought-group { border: none; background: none; padding: 0; margin: 0;
  font-size: var(--text-md); }
.lorastack-chat .thought-group .title .md { font-size: var(--text-md) !important; }
.lorastack-chat .thought-group .content { margin-left: 0; }
.lorastack-chat .thought-group .content * { font-size: inherit; }
.lorastack-chat .thought-group .message-content { opacity: 1; }
"""

# Launch options shared by the CLI and the tests: nothing reachable beyond what the user
# asked for (no share link, no extra files served), and no API docs link in the footer.
LAUNCH_OPTIONS: dict[str, Any] = {
    "share": False,
    "allowed_paths": None,
    "footer_links": ["gradio", "settings"],
    "ssr_mode": False,
    "mcp_server": False,
    "css": CSS,
}

# Events that call the gateway run this many at once (Gradio's default is one at a time):
# several people may chat at once, and the gateway limits what reaches the engine.
# Admin actions keep the default, one at a time.
CONCURRENCY_LIMIT = 32
# A chat answer, not an essay: small models otherwise ramble on to the context limit.
ANSWER_PARAMS = {"max_tokens": 256, "temperature": 0.7}


class Turn(TypedDict):
    """One entry of the transcript, as the session keeps it (gr.State)."""

    kind: Literal["user", "answer", "marker", "error"]
    text: str
    model: str  # the domain that answered, was switched to, or failed ("" for user turns)
    title: str  # its display name
    note: str  # subdued detail shown next to the title (the guardrail notice)
    pending: bool  # an answer still streaming


def _turn(
    kind: Literal["user", "answer", "marker", "error"],
    text: str,
    model: str = "",
    title: str = "",
    note: str = "",
    *,
    pending: bool = False,
) -> Turn:
    return Turn(kind=kind, text=text, model=model, title=title, note=note, pending=pending)


# ---------------------------------------------------------------------------- transcript


def render(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The Chatbot's messages for a transcript."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn["kind"] == "user":
            messages.append({"role": "user", "content": turn["text"]})
        elif turn["kind"] == "answer":
            # The metadata title names the domain that wrote the answer.
            metadata: dict[str, Any] = {"title": turn["title"]}
            if turn["note"]:
                metadata["log"] = turn["note"]
            if turn["pending"]:
                metadata["status"] = "pending"
            messages.append({"role": "assistant", "content": turn["text"], "metadata": metadata})
        elif turn["kind"] == "marker":
            messages.append(
                {"role": "assistant", "content": f"*{DASH} switched to {turn['title']} {DASH}*"}
            )
        else:
            messages.append(
                {"role": "assistant", "content": f"{ERROR_ICON} {turn['title']}: {turn['text']}"}
            )
    return messages


def conversation(turns: Sequence[Turn]) -> list[Message]:
    """What the gateway gets: user and assistant turns only, no markers and no errors.

    A question whose answer failed is dropped once a later question follows, so the
    roles keep alternating as chat templates expect.
    """
    messages: list[Message] = []
    waiting: Turn | None = None
    for turn in turns:
        if turn["kind"] == "user":
            waiting = turn
        elif turn["kind"] == "answer" and turn["text"] and waiting is not None:
            messages += [Message("user", waiting["text"]), Message("assistant", turn["text"])]
            waiting = None
    if waiting is not None:
        messages.append(Message("user", waiting["text"]))
    return messages


def settled(turns: Sequence[Turn]) -> list[Turn]:
    """The transcript with no answer shown as streaming (after Stop cut one short)."""
    return [{**t, "pending": False} if t["pending"] else t for t in turns]


def current_model(turns: Sequence[Turn]) -> str | None:
    """The domain the transcript is on: the last one that answered, failed or was picked."""
    for turn in reversed(turns):
        if turn["kind"] != "user":
            return turn["model"]
    return None


def with_switch_marker(turns: Sequence[Turn], model: str, title: str) -> list[Turn]:
    """The transcript with a marker if `model` is not the domain it is on.

    Switching back and forth with nothing said in between leaves one marker, or none.
    """
    result = list(turns)
    if result and result[-1]["kind"] == "marker":
        result.pop()
    current = current_model(result)
    if current is not None and current != model:
        result.append(_turn("marker", "", model, title))
    return result


# ---------------------------------------------------------------------------- domains


class Catalogue:
    """The gateway's model list, shared by every session; refetched on a miss."""

    def __init__(self, client: GatewayClient) -> None:
        self._client = client
        self.domains: list[Domain] = []

    async def refresh(self) -> list[Domain]:
        self.domains = await self._client.list_domains()
        return self.domains

    def find(self, model: str) -> Domain | None:
        # `coffee-shop@2` is the same domain as `coffee-shop` for naming purposes.
        name = model.split("@", 1)[0]
        return next((d for d in self.domains if d.id in (model, name)), None)

    async def lookup(self, model: str) -> Domain | None:
        found = self.find(model)
        if found is None:
            with contextlib.suppress(GatewayError):  # the chat call will report it
                await self.refresh()
            found = self.find(model)
        return found

    async def title(self, model: str) -> str:
        found = await self.lookup(model)
        return found.label if found is not None else model

    @property
    def base(self) -> Domain | None:
        return next((d for d in self.domains if d.is_base), None)


def describe(domain: Domain | None) -> str:
    """The "About this assistant" text of a domain."""
    if domain is None:
        return "*Pick an assistant above.*"
    lines = [f"**{domain.label}** (`{domain.id}`)"]
    if domain.description:
        lines.append(domain.description)
    facts = []
    if domain.version is not None:
        facts.append(f"version v{domain.version}")
    if domain.aliases:
        facts.append(", ".join(f"{a} \N{RIGHTWARDS ARROW} v{v}" for a, v in domain.aliases.items()))
    facts.append("loaded" if domain.loaded else "loads on first use")
    lines.append(" \N{MIDDLE DOT} ".join(facts))
    return "\n\n".join(lines)


def notice_text(notice: GuardrailNotice | None) -> str:
    return f"{NOTICE_ICON} {notice.text}" if notice is not None and notice.text else ""


# ---------------------------------------------------------------------------- streams


async def _merge(
    streams: Mapping[str, AsyncIterator[StreamPiece]],
) -> AsyncIterator[tuple[str, StreamPiece | GatewayError | None]]:
    """Interleave several answer streams: (key, piece), (key, error), then (key, None)."""
    queue: asyncio.Queue[tuple[str, StreamPiece | GatewayError | None]] = asyncio.Queue()

    async def pump(key: str, stream: AsyncIterator[StreamPiece]) -> None:
        try:
            async for piece in stream:
                await queue.put((key, piece))
        except GatewayError as error:
            await queue.put((key, error))
        finally:
            await queue.put((key, None))

    tasks = [asyncio.create_task(pump(key, stream)) for key, stream in streams.items()]
    try:
        remaining = len(tasks)
        while remaining:
            key, item = await queue.get()
            if item is None:
                remaining -= 1
            yield key, item
    finally:
        # A cancelled event (Stop) lands here: cancelling the pumps closes their streams,
        # so the gateway stops generating.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------- the app


def build_app(api_url: str, api_key: str | None, admin_key: str | None) -> gr.Blocks:
    """The Gradio Blocks app for the gateway at `api_url`.

    The Adapters tab (and its API endpoints) exists only when `admin_key` is given.
    """
    client = GatewayClient(api_url, api_key, admin_key)
    catalogue = Catalogue(client)

    app = gr.Blocks(title=TITLE, analytics_enabled=False)
    with app:
        gr.Markdown(f"## {TITLE} \N{MIDDLE DOT} domain assistants")
        with gr.Tab("Chat", id="chat"):
            chat = _chat_tab(client, catalogue)
        with gr.Tab("Compare", id="compare"):
            compare = _compare_tab(client, catalogue)
        if admin_key:
            with gr.Tab("Adapters", id="adapters"):
                _adapters_tab(client)

        async def load_domains(
            chosen: str | None, compared: str | None
        ) -> tuple[Any, Any, str, Any]:
            """Fill the domain lists from /v1/models (on page load and on refresh)."""
            try:
                domains = await catalogue.refresh()
            except GatewayError as error:
                problem = f"{ERROR_ICON} {error}"
                return gr.update(), gr.update(), problem, gr.update()
            choices = [(d.label, d.id) for d in domains]
            ids = [d.id for d in domains]
            domain_ids = [d.id for d in domains if not d.is_base]
            value = chosen if chosen in ids else _first(domain_ids or ids)
            compare_value = compared if compared in domain_ids else _first(domain_ids)
            base = catalogue.base
            return (
                gr.update(choices=choices, value=value),
                gr.update(
                    choices=[(d.label, d.id) for d in domains if not d.is_base],
                    value=compare_value,
                ),
                describe(catalogue.find(value) if value else None),
                gr.update(label=base.label if base else "Base model (none listed)"),
            )

        outputs = [chat.domain, compare.domain, chat.about, compare.base_answer]
        app.load(
            load_domains,
            [chat.domain, compare.domain],
            outputs,
            api_name="domains",
            concurrency_limit=CONCURRENCY_LIMIT,
            show_progress="hidden",
        )
        chat.refresh.click(
            load_domains,
            [chat.domain, compare.domain],
            outputs,
            api_name="refresh_domains",
            concurrency_limit=CONCURRENCY_LIMIT,
            show_progress="hidden",
        )
    return app


def _first(ids: Sequence[str]) -> str | None:
    return ids[0] if ids else None


@dataclass(frozen=True)
class _ChatParts:
    """What the page-wide events need from the Chat tab."""

    domain: gr.Dropdown
    about: gr.Markdown
    refresh: gr.Button


@dataclass(frozen=True)
class _CompareParts:
    domain: gr.Dropdown
    base_answer: gr.Textbox


ChatOutput = tuple[list[dict[str, Any]], list[Turn], str, str]


def _chat_tab(client: GatewayClient, catalogue: Catalogue) -> _ChatParts:
    turns_state = gr.State([])
    # Compact enough for a laptop screen: the picker shares its row with the domain's
    # details, and the message box its row with the buttons.
    with gr.Row():
        domain = gr.Dropdown(
            label="Assistant",
            info="The domain answering; type `name@version` or `name@alias` for another one.",
            choices=[],
            allow_custom_value=True,  # domain@2, domain@canary
            scale=3,
        )
        with gr.Column(scale=1, min_width=220):
            refresh = gr.Button("\N{CLOCKWISE OPEN CIRCLE ARROW} Refresh the list", size="sm")
            with gr.Accordion("About this assistant", open=False):
                about = gr.Markdown(describe(None))
    chatbot = gr.Chatbot(
        label="Conversation",
        # The window's height less the rest of the tab: the picker and the message box
        # stay in view on a laptop; a taller window gets a taller transcript.
        height="calc(100vh - 360px)",
        min_height=240,
        group_consecutive_messages=False,  # a switch marker is not part of an answer
        elem_classes=["lorastack-chat"],
        buttons=["copy", "copy_all"],
        placeholder="Ask the selected assistant anything.",
        feedback_options=None,
    )
    with gr.Row():
        message = gr.Textbox(
            show_label=False,
            placeholder="Type a message and press Enter",
            autofocus=True,
            scale=4,
            max_lines=8,
        )
        with gr.Column(scale=1, min_width=220):
            send = gr.Button("Send", variant="primary", size="md")
            with gr.Row():
                stop = gr.Button("Stop", variant="stop", size="sm", min_width=60)
                retry = gr.Button("Retry", size="sm", min_width=60)
                clear = gr.Button("Clear", size="sm", min_width=60)
    notice = gr.Markdown()  # the guardrail notice of the last answer

    async def answer(turns: list[Turn], model: str) -> AsyncIterator[ChatOutput]:
        """Stream the answer to the transcript's last question, yielding the Chatbot value."""
        title = await catalogue.title(model)
        wire = conversation(turns)
        reply = _turn("answer", "", model, title, pending=True)
        turns = [*settled(turns), reply]
        yield render(turns), turns, "", ""
        notice_value: GuardrailNotice | None = None
        pieces: list[str] = []
        try:
            async for piece in client.stream_chat(model, wire, **ANSWER_PARAMS):
                if isinstance(piece, GuardrailNotice):
                    notice_value = piece
                    continue
                pieces.append(piece)
                turns[-1] = {**reply, "text": "".join(pieces)}
                yield render(turns), turns, "", ""
        except GatewayError as error:
            turns = turns[:-1]
            if pieces:  # what arrived stays; the error right after it says why it stopped
                turns.append({**reply, "text": "".join(pieces), "pending": False})
            turns.append(_turn("error", str(error), model, title))
            yield render(turns), turns, "", ""
            return
        note = notice_text(notice_value)
        turns[-1] = {**reply, "text": "".join(pieces), "note": note, "pending": False}
        yield render(turns), turns, notice_text(notice_value), ""

    async def on_send(text: str, model: str | None, turns: list[Turn]) -> AsyncIterator[ChatOutput]:
        text = (text or "").strip()
        if not text:
            yield render(turns), turns, "", ""
            return
        if not model:
            problem = _turn("error", "pick an assistant first", "", "No assistant")
            turns = [*turns, _turn("user", text), problem]
            yield render(turns), turns, "", ""
            return
        turns = with_switch_marker(turns, model, await catalogue.title(model))
        turns = [*turns, _turn("user", text)]
        async for output in answer(turns, model):
            yield output

    async def on_retry(model: str | None, turns: list[Turn]) -> AsyncIterator[ChatOutput]:
        last = max((i for i, t in enumerate(turns) if t["kind"] == "user"), default=None)
        if last is None or not model:
            yield render(turns), turns, "", ""
            return
        async for output in answer(list(turns[: last + 1]), model):
            yield output

    def on_clear() -> tuple[list[dict[str, Any]], list[Turn], str, str]:
        return [], [], "", ""

    def on_stop(turns: list[Turn]) -> tuple[list[dict[str, Any]], list[Turn]]:
        turns = settled(turns)
        return render(turns), turns

    async def on_switch(
        model: str | None, turns: list[Turn]
    ) -> tuple[list[dict[str, Any]], list[Turn], str]:
        if not model:
            return render(turns), turns, describe(None)
        found = await catalogue.lookup(model)
        title = found.label if found is not None else model
        turns = with_switch_marker(turns, model, title)
        return render(turns), turns, describe(found)

    chat_outputs = [chatbot, turns_state, notice, message]
    sending = gr.on(
        [message.submit, send.click],
        on_send,
        [message, domain, turns_state],
        chat_outputs,
        api_name="send",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    retrying = retry.click(
        on_retry,
        [domain, turns_state],
        chat_outputs,
        api_name="retry",
        show_progress="hidden",
        concurrency_limit=CONCURRENCY_LIMIT,
    )
    # Stop cancels the streaming event; closing its generator closes the stream, and the
    # gateway stops the engine. What arrived so far stays in the transcript, settled.
    stop.click(
        on_stop, turns_state, [chatbot, turns_state], api_name="stop", cancels=[sending, retrying]
    )
    clear.click(on_clear, None, chat_outputs, api_name="clear", cancels=[sending, retrying])
    # The Chatbot's own trash button empties what is shown; the session's transcript must
    # follow, or the next answer brings the old conversation back (and sends it on).
    chatbot.clear(
        on_clear, None, chat_outputs, cancels=[sending, retrying], api_visibility="private"
    )
    # `input`, not `change`: filling the list on page load is not a switch.
    domain.input(
        on_switch,
        [domain, turns_state],
        [chatbot, turns_state, about],
        api_name="switch_domain",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    return _ChatParts(domain, about, refresh)


def _compare_tab(client: GatewayClient, catalogue: Catalogue) -> _CompareParts:
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

    async def on_compare(text: str, model: str | None) -> AsyncIterator[tuple[Any, Any]]:
        text = (text or "").strip()
        if not text:
            yield "", ""
            return
        if not model:
            yield "", f"{ERROR_ICON} pick a domain first"
            return
        try:
            if catalogue.base is None:  # not listed yet (no page load), or it was down
                await catalogue.refresh()
        except GatewayError as error:
            yield f"{ERROR_ICON} {error}", f"{ERROR_ICON} {error}"
            return
        base = catalogue.base
        if base is None:
            yield f"{ERROR_ICON} the gateway lists no base model", ""
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
        async for key, item in _merge(streams):
            if isinstance(item, GatewayError):
                notes[key] = f"{ERROR_ICON} {item}"
            elif isinstance(item, GuardrailNotice):
                notes[key] = notice_text(item)
            elif isinstance(item, str):
                texts[key] += item
            else:
                continue  # one stream ended; the other may still be talking
            yield (
                _with_note(texts["base"], notes["base"]),
                _with_note(texts["domain"], notes["domain"]),
            )

    comparing = gr.on(
        [prompt.submit, run.click],
        on_compare,
        [prompt, domain],
        [base_answer, domain_answer],
        api_name="compare",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    stop.click(None, None, None, cancels=[comparing], api_visibility="private")
    return _CompareParts(domain, base_answer)


def _with_note(text: str, note: str) -> str:
    return f"{text}\n\n{note}" if note and text else note or text


# ---------------------------------------------------------------------------- admin

ADAPTER_HEADERS = ["domain", "version", "display name", "aliases", "metrics", "loaded"]


def adapter_rows(domains: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One table row per published version, from `GET /admin/adapters`."""
    rows: list[list[str]] = []
    for entry in domains:
        aliases = entry.get("aliases") or {}
        for version in entry.get("versions") or []:
            number = version.get("version")
            pointing = sorted(a for a, v in aliases.items() if v == number)
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
                    ", ".join(pointing),
                    _metrics_summary(version.get("metrics")),
                    loaded or "not loaded",
                ]
            )
    return rows


def _metrics_summary(metrics: Any, limit: int = 4) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # nested or textual entries do not fit a table cell
        parts.append(f"{name} {value:.4g}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def _adapters_tab(client: GatewayClient) -> None:
    gr.Markdown("The adapter registry and what each engine holds. Actions use the admin key.")
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

    async def rows() -> list[list[str]]:
        return adapter_rows(await client.adapters())

    async def on_refresh() -> tuple[Any, str]:
        try:
            return await rows(), ""
        except GatewayError as error:
            return gr.update(), f"{ERROR_ICON} {error}"

    async def act(action: Coroutine[Any, Any, str]) -> tuple[str, Any]:
        try:
            result = f"\N{CHECK MARK} {await action}"
        except GatewayError as error:
            result = f"{ERROR_ICON} {error}"
        try:
            table_value: Any = await rows()
        except GatewayError:
            table_value = gr.update()
        return result, table_value

    def required(value: str | None, what: str) -> str:
        value = (value or "").strip()
        if not value:
            raise GatewayError(f"enter the {what} first")
        return value

    async def on_load(model: str) -> tuple[str, Any]:
        async def run() -> str:
            return await client.load(required(model, "adapter"))

        return await act(run())

    async def on_unload(model: str) -> tuple[str, Any]:
        async def run() -> str:
            return await client.unload(required(model, "adapter"))

        return await act(run())

    async def on_promote(domain: str, version: float | None, alias: str) -> tuple[str, Any]:
        async def run() -> str:
            if version is None or int(version) < 1:
                raise GatewayError("enter a version number (1 or more)")
            name = required(domain, "domain")
            return await client.promote(name, int(version), (alias or "").strip() or "prod")

        return await act(run())

    async def on_rollback(domain: str, alias: str) -> tuple[str, Any]:
        async def run() -> str:
            name = required(domain, "domain")
            return await client.rollback(name, (alias or "").strip() or "prod")

        return await act(run())

    refresh.click(on_refresh, None, [table, status], api_name="adapters")
    both = [status, table]
    load.click(on_load, ref, both, api_name="load_adapter")
    unload.click(on_unload, ref, both, api_name="unload_adapter")
    promote.click(
        on_promote, [promote_domain, promote_version, promote_alias], both, api_name="promote"
    )
    rollback.click(on_rollback, [rollback_domain, rollback_alias], both, api_name="rollback")


def launch_app(app: gr.Blocks, host: str, port: int, *, quiet: bool = False) -> str:
    """Serve the app on `host:port` in the background with the safe options; its URL.

    The caller keeps the process alive (`app.block_thread()`) and closes it (`app.close()`).
    """
    _, local_url, _ = app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=quiet,
        **LAUNCH_OPTIONS,
    )
    return str(local_url)
