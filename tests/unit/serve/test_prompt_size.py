"""The prompt-size check: a cheap byte bound, then the model's own tokenizer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from lorastack.serve.prompt_size import FALLBACK_TOKEN_BYTES, PromptLimit, PromptTooLong

VOCAB = {"[UNK]": 0, "hello": 1, "world": 2, "extraordinarily": 3}


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def _check(limit: PromptLimit, *texts: str) -> None:
    asyncio.run(limit.check(list(texts)))


def test_the_bound_comes_from_the_longest_token(checkpoint: Path) -> None:
    limit = PromptLimit.for_checkpoint(10, checkpoint)
    assert limit.max_bytes == 10 * len("extraordinarily")


def test_texts_are_counted_in_tokens_across_the_request(checkpoint: Path) -> None:
    limit = PromptLimit.for_checkpoint(10, checkpoint)
    _check(limit, "hello world " * 2, "hello " * 6)  # 10 tokens: fits
    with pytest.raises(PromptTooLong, match=r"\(11 tokens\).*context of 10 tokens") as refused:
        _check(limit, "hello world " * 2, "hello " * 7)
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.status == 400


def test_a_prompt_over_the_byte_bound_is_refused_without_tokenizing(checkpoint: Path) -> None:
    limit = PromptLimit.for_checkpoint(10, checkpoint)
    with pytest.raises(PromptTooLong) as refused:
        _check(limit, "x" * (limit.max_bytes + 1))
    assert "tokens)" not in str(refused.value)  # not counted: refused by size


def test_without_a_tokenizer_only_the_byte_bound_applies(tmp_path: Path) -> None:
    limit = PromptLimit.for_checkpoint(10, tmp_path)
    assert limit.max_bytes == 10 * FALLBACK_TOKEN_BYTES
    _check(limit, "hello " * 100)  # 600 bytes: not counted, let the engine decide
    with pytest.raises(PromptTooLong):
        _check(limit, "hello " * 200)
