"""A streamed answer's way back to the client: engine events in, safe SSE bytes out.

Each engine event goes through small steps: a usage-only event is kept for
the metrics (and passed on if the client asked for usage); each choice's new
text goes through that choice's stream screening; the event is labelled with
the version that answered and the answer's `id`, and written by the request's
`AnswerFormat` (formats.py: chat chunks, or the Responses API's events). What each
choice said is kept, so that once the last event went out the whole answer's brand
rules can be checked (and, captured, the first choice's answer as the engine wrote it,
masked). An error after the first byte becomes the format's last events (for chat, an
error event, then `[DONE]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lorastack.serve.call import Call
from lorastack.serve.fields import answer_slots, answer_text, append_to_channel
from lorastack.serve.formats import AnswerFormat
from lorastack.serve.guarding import StreamScreening
from lorastack.serve.pool import EngineStream


def _is_usage_only(event: dict[str, Any]) -> bool:
    return bool(event.get("usage")) and not event.get("choices")


def _worth_sending(choice: dict[str, Any], holder_key: str | None) -> bool:
    """Whether a choice still says something once its texts went through the screening."""
    if choice.get("finish_reason") is not None or choice.get("logprobs"):
        return True
    if holder_key is None:
        return bool(choice.get("text"))
    holder = choice.get(holder_key)
    return isinstance(holder, dict) and any(v not in (None, "", []) for v in holder.values())


class StreamRelay:
    """Relays one engine stream to the client, making each piece safe on the way."""

    def __init__(
        self, call: Call, stream: EngineStream, forward_usage: bool, answer_format: AnswerFormat
    ) -> None:
        self._call = call
        self._stream = stream
        self._forward_usage = forward_usage
        self._format = answer_format
        # One screening per (choice, channel): a choice's content, its reasoning, each of
        # its tool calls' arguments are separate texts, each held back on its own.
        self._screens: dict[tuple[int, str], StreamScreening] = {}
        # Each choice's answer text as the client received it, piece by piece.
        self._said: dict[int, list[str]] = {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        usage: dict[str, Any] | None = None
        call = self._call
        try:
            opening = self._format.opened(call.response_id, call.target.answered_by)
            if opening:
                yield opening
            async for event in self._stream.events:
                if _is_usage_only(event):
                    usage = event["usage"]
                    if not self._forward_usage:
                        continue
                else:
                    event.pop("usage", None)
                    if not await self._make_safe(event):
                        continue
                written = self._format.event(self._label(event))
                if written:
                    yield written
            yield self._format.end(usage)
            # The client has the whole answer: only now is it counted, judged and captured.
            call.finish(usage, self._texts())
            call.after_sent()
        except Exception as error:  # every failure is answered in the stream itself
            yield self._format.failed(call.fail(error))
        finally:
            # Closing the engine's stream makes it stop generating (a client that
            # went away, or an error) and releases the engine and the adapter.
            await self._stream.aclose()

    def _label(self, event: dict[str, Any]) -> dict[str, Any]:
        event["model"] = self._call.target.answered_by
        event["id"] = self._call.response_id
        return event

    def _texts(self) -> list[str]:
        texts = ("".join(self._said[index]) for index in sorted(self._said))
        return [text for text in texts if text]

    async def _make_safe(self, event: dict[str, Any]) -> bool:
        """Pass each choice's new texts through their screening; False if nothing is left."""
        holder_key, worth_sending = self._call.api.holder(streamed=True), False
        for choice in event.get("choices") or []:
            if self._call.screening is not None:
                await self._screen_choice(choice, holder_key)
            if any(slot.text for _, slot in answer_slots(choice, holder_key)):
                self._call.first_token()
            said = answer_text(choice, holder_key)
            if said:
                self._said.setdefault(int(choice.get("index", 0)), []).append(said)
            worth_sending = _worth_sending(choice, holder_key) or worth_sending
        return worth_sending

    async def _screen_choice(self, choice: dict[str, Any], holder_key: str | None) -> None:
        assert self._call.screening is not None
        index = int(choice.get("index", 0))
        finished = choice.get("finish_reason") is not None
        # Single tokens cannot be judged by any policy: no logprobs while screening.
        if "logprobs" in choice:
            choice["logprobs"] = None
        present = dict(answer_slots(choice, holder_key))
        for channel, slot in present.items():
            screen = self._screens.get((index, channel))
            if screen is None:
                screen = self._screens[(index, channel)] = self._call.screening.stream()
            released = await screen.feed(slot.text, last=finished)
            slot.replace(released.shown)
            self._call.keep_masked(index, channel, released.masked)
        if not finished:
            return
        # What each other text of this choice still holds back goes out with its end.
        for key in [k for k in self._screens if k[0] == index]:
            screen = self._screens.pop(key)
            if key[1] not in present:
                rest = await screen.feed("", last=True)
                self._call.keep_masked(index, key[1], rest.masked)
                if rest.shown:
                    append_to_channel(choice, holder_key, key[1], rest.shown)
