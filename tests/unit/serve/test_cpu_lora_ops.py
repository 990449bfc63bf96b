"""The grouped CPU LoRA ops against a per-token reference `x @ A.T @ B.T * scale`."""

from __future__ import annotations

import pytest
import torch

from lorastack.serve.cpu_lora.ops import (
    NO_ADAPTER,
    BatchRows,
    FusedLayerCache,
    add_expand,
    add_lora,
    fuse,
    group_rows,
    plan_rows,
)

IN = 24


def _stacked(
    slots: int, rank: int, outs: tuple[int, ...], seed: int
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """vLLM's layout: per slice an A of (slots, 1, rank, in) and a B of (slots, 1, out, rank)."""
    generator = torch.Generator().manual_seed(seed)
    lora_a = tuple(torch.randn(slots, 1, rank, IN, generator=generator) for _ in outs)
    lora_b = tuple(torch.randn(slots, 1, out, rank, generator=generator) for out in outs)
    return lora_a, lora_b


def _reference(
    y: torch.Tensor,
    x: torch.Tensor,
    token_slots: list[int],
    lora_a: tuple[torch.Tensor, ...],
    lora_b: tuple[torch.Tensor, ...],
    scale: float,
) -> torch.Tensor:
    expected = y.clone()
    for row, slot in enumerate(token_slots):
        if slot == NO_ADAPTER:
            continue
        offset = 0
        for a, b in zip(lora_a, lora_b, strict=True):
            out = b.shape[2]
            delta = (x[row] @ a[slot, 0].T * scale) @ b[slot, 0].T
            expected[row, offset : offset + out] += delta
            offset += out
    return expected


@pytest.mark.parametrize("rank", [1, 8, 16])
@pytest.mark.parametrize("outs", [(20,), (16, 8, 8), (32, 32)], ids=["plain", "qkv", "gate_up"])
@pytest.mark.parametrize(
    "token_slots",
    [
        [0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 0, 1, 2, NO_ADAPTER, 2],
        [NO_ADAPTER, 2, NO_ADAPTER, 2],
        [NO_ADAPTER, NO_ADAPTER],
    ],
    ids=["one-adapter", "contiguous", "interleaved", "with-base-rows", "base-only"],
)
@pytest.mark.parametrize("padded", [False, True], ids=["grouped", "padded"])
def test_add_lora_matches_the_per_token_reference(
    rank: int, outs: tuple[int, ...], token_slots: list[int], padded: bool
) -> None:
    lora_a, lora_b = _stacked(3, rank, outs, seed=rank)
    x = torch.randn(len(token_slots), IN)
    y = torch.randn(len(token_slots), sum(outs))
    expected = _reference(y, x, token_slots, lora_a, lora_b, scale=0.5)
    batch = plan_rows(token_slots, padded_max_rows=64 if padded else 0)

    add_lora(y, x, batch, fuse(lora_a, lora_b), scale=0.5)

    torch.testing.assert_close(y, expected)


def test_rows_without_an_adapter_are_left_exactly_as_they_were() -> None:
    lora_a, lora_b = _stacked(2, 8, (16, 8, 8), seed=0)
    x, y = torch.randn(4, IN), torch.randn(4, 32)
    before = y.clone()

    add_lora(y, x, plan_rows([NO_ADAPTER, 1, NO_ADAPTER, 1]), fuse(lora_a, lora_b))

    assert torch.equal(y[0], before[0]) and torch.equal(y[2], before[2])
    assert not torch.equal(y[1], before[1])


def test_an_output_wider_than_the_adapter_keeps_its_extra_columns() -> None:
    """vLLM's logits can be padded past the vocabulary the LoRA covers."""
    lora_a, lora_b = _stacked(1, 4, (10,), seed=1)
    x, y = torch.randn(3, IN), torch.randn(3, 13)
    expected = y.clone()
    expected[:, :10] = _reference(y[:, :10], x, [0, 0, 0], lora_a, lora_b, 1.0)

    add_lora(y, x, plan_rows([0, 0, 0]), fuse(lora_a, lora_b))

    torch.testing.assert_close(y, expected)


def test_rows_are_grouped_by_slot_as_slices_when_contiguous() -> None:
    groups = group_rows([1, 1, NO_ADAPTER, 0, 1])
    assert [g.slot for g in groups] == [0, 1]
    assert groups[0].rows == slice(3, 4)
    assert isinstance(groups[1].rows, torch.Tensor)
    assert groups[1].rows.tolist() == [0, 1, 4]
    assert group_rows([NO_ADAPTER] * 3) == ()
    assert group_rows([]) == ()


def test_a_slot_whose_adapter_leaves_the_layer_alone_is_inactive() -> None:
    lora_a, lora_b = _stacked(3, 8, (16, 16), seed=2)
    for b in lora_b:
        b[1].zero_()  # slot 1: an adapter without this layer (a q/v adapter's MLP)
    assert fuse(lora_a, lora_b).active == (True, False, True)


def test_the_cache_rebuilds_a_layer_when_vllm_writes_a_slot() -> None:
    cache = FusedLayerCache()
    lora_a, lora_b = _stacked(2, 4, (8, 8), seed=3)
    first = cache.get(lora_a, lora_b)
    assert cache.get(lora_a, lora_b) is first

    # vLLM loads an adapter into slot 0 the way LoRA layers' set_lora does: in place.
    lora_b[1][0, 0, :2, :].copy_(torch.ones(2, 4))
    rebuilt = cache.get(lora_a, lora_b)

    assert rebuilt is not first
    assert torch.equal(rebuilt.expand[0, 4:8, 8:10], torch.ones(4, 2))

    lora_a[0][1] = 0  # reset_lora
    assert cache.get(lora_a, lora_b) is not rebuilt


def test_weights_made_under_inference_mode_are_fused_every_time() -> None:
    with torch.inference_mode():
        lora_a, lora_b = _stacked(1, 4, (8,), seed=4)
        cache = FusedLayerCache()
        first = cache.get(lora_a, lora_b)
        lora_b[0].fill_(1.0)
        second = cache.get(lora_a, lora_b)
    assert second is not first
    assert torch.equal(second.expand, torch.ones(1, 4, 8))


def test_bfloat16_layers_get_the_delta_computed_in_float32() -> None:
    """Weights and inputs in bfloat16; the LoRA maths in float32, added to y in its dtype."""
    lora_a, lora_b = _stacked(2, 8, (16, 16), seed=5)
    lora_a = tuple(a.bfloat16() for a in lora_a)
    lora_b = tuple(b.bfloat16() for b in lora_b)
    x = torch.randn(3, IN).bfloat16()
    y = torch.randn(3, 32).bfloat16()
    slots = [1, 0, 1]
    wide = tuple(t.float() for t in lora_a), tuple(t.float() for t in lora_b)
    expected = _reference(y.float(), x.float(), slots, *wide, scale=1.0).bfloat16()

    for padded in (0, 64):
        result = y.clone()
        add_lora(result, x, plan_rows(slots, padded), fuse(lora_a, lora_b))
        assert result.dtype == torch.bfloat16
        torch.testing.assert_close(result, expected, atol=0.05, rtol=0.02)


def test_few_rows_of_several_adapters_are_laid_out_for_one_batched_matmul() -> None:
    batch = plan_rows([2, NO_ADAPTER, 0, 2, 0, 2])
    assert batch.padded is not None
    assert (batch.padded.slots, batch.padded.per_slot) == (3, 3)
    # slot 0: rows 2, 4; slot 1: none; slot 2: rows 0, 3, 5
    assert batch.padded.positions.tolist() == [0, 1, 6, 7, 8]
    assert batch.padded.rows.tolist() == [2, 4, 0, 3, 5]
    assert batch.padded.gather.tolist() == [2, 4, 0, 0, 0, 0, 0, 3, 5]
    # One adapter, or more rows than a decode step has: one matmul pair per adapter.
    assert plan_rows([1, 1, 1]).padded is None
    assert plan_rows([0, 1] * 40).padded is None
    assert plan_rows([]) == BatchRows(())


def test_add_expand_matches_the_per_token_reference() -> None:
    generator = torch.Generator().manual_seed(6)
    lora_b = torch.randn(3, 1, 12, 4, generator=generator)
    x, y = torch.randn(5, 4), torch.randn(5, 12)
    slots = [2, NO_ADAPTER, 0, 2, 0]
    expected = y.clone()
    for row, slot in enumerate(slots):
        if slot != NO_ADAPTER:
            expected[row] += x[row] @ lora_b[slot, 0].T

    add_expand(y, x, group_rows(slots), lora_b)

    torch.testing.assert_close(y, expected)
