"""Clients' ratings of captured answers (`POST /v1/feedback`): checked, masked, stored.

A rating names the answer by the `id` its client received. Only that client's key may
rate it: an answer captured under another key is reported exactly like one that does
not exist (404), so a key cannot learn of another's answers. An answer that was not
captured (its domain's capture is off, the base model, purged) does not exist either.

A rating right after its answer may find the exchange still queued for the store
(capture.py): it waits for that write first. Its correction and comment are masked with
the domain's input policy before they are stored, with the rated version's vocabulary
(the names its training data kept, so a correction reads as that version's training data
did), failing closed: when the screening fails, the rating is refused (503), never stored
raw. Every store call runs off the event loop; a store that fails is a 503, whatever it
raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from lorastack.errors import DatabaseError, ExchangeNotFound
from lorastack.feedback import Exchange, FeedbackStore, Rating, Vote
from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRegistry
from lorastack.serve.capture import ExchangeCapture
from lorastack.serve.errors import FeedbackUnavailable, NotFound
from lorastack.serve.guarding import GuardProvider
from lorastack.serve.keys import ClientKey
from lorastack.serve.metrics import Metrics
from lorastack.serve.targets import Target

T = TypeVar("T")

logger = logging.getLogger(__name__)

PENDING_WAIT_S = 5.0
"""How long a rating waits for its answer's exchange to be written."""


def _not_found() -> NotFound:
    # The same words for "no such id" and "another key's answer".
    return NotFound("no answer with this id to rate for this key", param="response_id")


class FeedbackService:
    def __init__(
        self,
        store: FeedbackStore,
        capture: ExchangeCapture,
        guards: GuardProvider,
        metrics: Metrics,
        registry: AdapterRegistry | None = None,
        *,
        pending_wait_s: float = PENDING_WAIT_S,
    ) -> None:
        self.store = store
        self.capture = capture
        self.guards = guards
        self.metrics = metrics
        self.registry = registry  # for the rated version's vocabulary
        self.pending_wait_s = pending_wait_s

    async def rate(
        self,
        response_id: str,
        vote: Vote,
        key: ClientKey | None,
        request_id: str,
        *,
        correction: str | None = None,
        comment: str | None = None,
    ) -> Exchange:
        """Store the key's rating of the answer `response_id`; the exchange it rated."""
        key_hash = key.sha256 if key is not None else None
        if self.capture.is_pending(response_id):
            await asyncio.to_thread(self.capture.wait_written, response_id, self.pending_wait_s)
        exchange = await self._call(self.store.get_exchange, response_id)
        if exchange is None or exchange.key_hash != key_hash:
            raise _not_found()
        texts = [text for text in (correction, comment) if text is not None]
        if texts:
            masked = iter(await self._mask(exchange, texts, key, request_id))
            correction = next(masked) if correction is not None else None
            comment = next(masked) if comment is not None else None
        rating = Rating(response_id, vote, key_hash, correction=correction, comment=comment)
        await self._call(self.store.add_rating, rating)
        self.metrics.rated(exchange.domain, f"v{exchange.version}", vote)
        return exchange

    async def counts(self, domain: str) -> dict[int, dict[str, int]]:
        """Per version of the domain: `captured`, `up`, `down` and `corrections`."""
        return await self._call(self.store.counts, domain)

    async def _mask(
        self, exchange: Exchange, texts: list[str], key: ClientKey | None, request_id: str
    ) -> list[str]:
        """The texts masked by the domain's input policy, fail closed (never stored raw).

        Placeholders are numbered afresh (the answer's own vault lived for its request
        only), so `<PERSON_1>` here need not be the conversation's `<PERSON_1>`."""
        tenant = key.name if key is not None else "open"
        manifest = await asyncio.to_thread(self._manifest, exchange)
        target = Target(exchange.domain, exchange.domain, manifest=manifest)
        return await self.guards.screening(target, request_id, tenant).texts_to_store(texts)

    def _manifest(self, exchange: Exchange) -> AdapterManifest | None:
        """The rated version's manifest; None when it is gone or unreadable, and the
        texts are then masked without its vocabulary: more is masked, never less."""
        if self.registry is None:
            return None
        try:
            return self.registry.manifest(exchange.domain, exchange.version)
        except Exception as error:
            logger.warning(
                "feedback for %s v%d masked without its vocabulary: %s",
                exchange.domain,
                exchange.version,
                type(error).__name__,
            )
            return None

    async def _call(self, operation: Callable[..., T], *args: object) -> T:
        """A blocking store call on a worker thread; any failure of the store is a 503."""
        try:
            return await asyncio.to_thread(operation, *args)
        except (ExchangeNotFound, DatabaseError):
            raise  # typed: errors.py maps them (404, 503)
        except Exception as error:
            # The type only: a database error's message can quote the stored texts.
            logger.error("feedback store failed: %s", type(error).__name__)
            raise FeedbackUnavailable(
                "the feedback store is unavailable; try again later"
            ) from None
