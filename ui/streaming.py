"""Answer streams: what the UI asks for an answer, and several streams read as one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from lorastack.ui.client import StreamPiece
from lorastack.ui.errors import UiClientError

# A chat answer, not an essay: small models otherwise ramble on to the context limit.
ANSWER_PARAMS: dict[str, Any] = {"max_tokens": 256, "temperature": 0.7}

MergedItem = StreamPiece | UiClientError | None


async def merge_streams(
    streams: Mapping[str, AsyncIterator[StreamPiece]],
) -> AsyncGenerator[tuple[str, MergedItem], None]:
    """Interleave several answer streams: (key, piece), (key, error), then (key, None)."""
    queue: asyncio.Queue[tuple[str, MergedItem]] = asyncio.Queue()

    async def pump(key: str, stream: AsyncIterator[StreamPiece]) -> None:
        try:
            async for piece in stream:
                await queue.put((key, piece))
        except UiClientError as error:
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
