"""Refuse a prompt the engine cannot take, before any screening works on it.

Screening a prompt costs time in proportion to its length, on threads every
client shares; the engine would refuse anything over its context length
anyway. So the gateway counts first, cheaply:

1. bytes: no token covers more bytes than the longest one in the vocabulary,
   so a prompt of more than `context_tokens x longest_token_bytes` bytes is
   over the limit without tokenizing it; a request body three times that size
   is refused as it arrives, before it is even parsed (`max_request_bytes`,
   checked by serve/limits.py), so a flood of huge prompts costs the gateway
   little more than reading them;
2. tokens: a prompt that could be over is tokenized (the model's own fast
   tokenizer, in a thread) and refused if its texts alone hold more tokens
   than the context. The chat template adds a few more, which the engine
   counts; this check only ever refuses what the engine would refuse too.

Without the model's tokenizer (a gateway fronting engines whose model it does
not hold), only the byte bound applies, with a conservative bytes-per-token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorastack.serve.errors import BadRequest

logger = logging.getLogger(__name__)

# Without a vocabulary to measure: longer than almost any token of a BPE vocabulary.
FALLBACK_TOKEN_BYTES = 64


class PromptTooLong(BadRequest):
    code = "context_length_exceeded"

    @classmethod
    def unread(cls, body_bytes: int) -> PromptTooLong:
        return cls(
            f"the request body ({body_bytes} bytes) holds a prompt longer than the model's "
            "context; shorten the messages",
            param="messages",
        )


class PromptLimit:
    """The largest prompt the engines take, and the check against it."""

    def __init__(
        self, context_tokens: int, longest_token_bytes: int, tokenizer: Any | None = None
    ) -> None:
        self.context_tokens = context_tokens
        self.max_bytes = context_tokens * longest_token_bytes
        # A request body this large holds a prompt over `max_bytes`: JSON escapes at most
        # triple real text (`\uXXXX` for a three-byte character, a surrogate pair for an
        # emoji), and 64 KiB is room for everything else a request carries.
        self.max_request_bytes = 3 * self.max_bytes + 64 * 1024
        self._tokenizer = tokenizer

    @classmethod
    def for_checkpoint(cls, context_tokens: int, checkpoint: Path | None) -> PromptLimit:
        """From the model's `tokenizer.json` when there is one, else the byte bound alone."""
        path = checkpoint / "tokenizer.json" if checkpoint is not None else None
        if path is None or not path.is_file():
            return cls(context_tokens, FALLBACK_TOKEN_BYTES)
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(path))
            longest = _longest_token_bytes(tokenizer)
        except Exception as error:  # tokenizers raises plain Exception for a bad file
            logger.warning(
                "cannot read %s (%s): prompts are bounded by size only", path, type(error).__name__
            )
            return cls(context_tokens, FALLBACK_TOKEN_BYTES)
        return cls(context_tokens, longest, tokenizer)

    async def check(self, texts: Sequence[str]) -> None:
        """Raise `PromptTooLong` when `texts` cannot fit the engine's context."""
        size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
        if size > self.max_bytes:
            raise self._too_long()
        # Every token is at least one byte: a prompt this small always fits.
        if size <= self.context_tokens or self._tokenizer is None:
            return
        tokens = await asyncio.to_thread(_count_tokens, self._tokenizer, list(texts))
        if tokens > self.context_tokens:
            raise self._too_long(tokens)

    def _too_long(self, tokens: int | None = None) -> PromptTooLong:
        counted = f" ({tokens} tokens)" if tokens is not None else ""
        return PromptTooLong(
            f"the prompt{counted} is longer than the model's context of "
            f"{self.context_tokens} tokens; shorten the messages",
            param="messages",
        )


def _count_tokens(tokenizer: Any, texts: list[str]) -> int:
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    return sum(len(e.ids) for e in encoded)


def _longest_token_bytes(tokenizer: Any) -> int:
    """How many bytes of text the vocabulary's longest token decodes to.

    A byte-level token that is part of a longer character decodes to U+FFFD (three
    bytes for what may be one): an overestimate, which keeps the bound safe.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    texts = tokenizer.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
    return max((len(text.encode("utf-8")) for text in texts), default=FALLBACK_TOKEN_BYTES)
