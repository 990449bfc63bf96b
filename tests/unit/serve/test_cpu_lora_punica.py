"""lorastack's Punica wrapper gives what vLLM's own CPU wrapper gives, on vLLM's metadata."""

from __future__ import annotations

import pytest
import torch

punica_cpu = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")
from vllm.lora.layers import LoRAMapping  # noqa: E402

from lorastack.serve.cpu_lora.punica import GroupedPunicaWrapperCPU  # noqa: E402

HIDDEN = 32
VOCAB = 50
SLOTS = 4
# Adapter ids in slots 0..2; slot 3 stays empty. vLLM's own ops index rows without an
# adapter (-1) as the last slot, which is harmless only while that slot holds zeros.
SLOT_IDS: list[int | None] = [7, 8, 9, None]


def _wrappers(
    token_ids: tuple[int, ...], prompt_ids: tuple[int, ...]
) -> tuple[punica_cpu.PunicaWrapperCPU, GroupedPunicaWrapperCPU]:
    mapping = LoRAMapping(token_ids, prompt_ids, is_prefill=True)
    made = []
    for cls in (punica_cpu.PunicaWrapperCPU, GroupedPunicaWrapperCPU):
        wrapper = cls(max_num_batched_tokens=64, max_batches=8, device="cpu")
        wrapper.update_metadata(mapping, SLOT_IDS, SLOTS + 1, VOCAB)
        made.append(wrapper)
    return made[0], made[1]  # type: ignore[return-value]


def _stacked(rank: int, outs: tuple[int, ...], in_size: int = HIDDEN):
    generator = torch.Generator().manual_seed(rank + len(outs))
    lora_a = tuple(torch.randn(SLOTS, 1, rank, in_size, generator=generator) for _ in outs)
    lora_b = tuple(torch.randn(SLOTS, 1, out, rank, generator=generator) for out in outs)
    for a, b in zip(lora_a, lora_b, strict=True):
        a[3].zero_()
        b[3].zero_()
    return lora_a, lora_b


# Two requests of 3 prompt tokens (ids 7 and 9), one of the base model, one of id 8,
# then a decode-like step where ids alternate token by token.
MAPPINGS = {
    "prefill": ((7, 7, 7, 0, 0, 9, 9, 9, 8), (7, 0, 9, 8)),
    "interleaved": ((7, 8, 7, 0, 9, 8), (7, 8, 7, 0, 9, 8)),
    "base-only": ((0, 0, 0), (0, 0, 0)),
}


@pytest.mark.parametrize("outs", [(24,), (32, 8, 8), (40, 40)], ids=["o_proj", "qkv", "gate_up"])
@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
def test_linear_layers_match_vllms_ops(outs: tuple[int, ...], mapping: str) -> None:
    token_ids, prompt_ids = MAPPINGS[mapping]
    stock, ours = _wrappers(token_ids, prompt_ids)
    lora_a, lora_b = _stacked(8, outs)
    x = torch.randn(len(token_ids), HIDDEN)
    y = torch.randn(len(token_ids), sum(outs))
    y_stock, y_ours = y.clone(), y.clone()

    stock.add_lora_linear(y_stock, x, lora_a, lora_b, 1.0, outs)
    ours.add_lora_linear(y_ours, x, lora_a, lora_b, 1.0, outs)

    torch.testing.assert_close(y_ours, y_stock)


def test_logits_use_each_requests_adapter() -> None:
    token_ids, prompt_ids = MAPPINGS["prefill"]
    stock, ours = _wrappers(token_ids, prompt_ids)
    lora_a, lora_b = _stacked(4, (VOCAB,))
    x = torch.randn(len(prompt_ids), HIDDEN)
    y = torch.randn(len(prompt_ids), VOCAB + 6)  # padded past the vocabulary
    y_stock, y_ours = y.clone(), y.clone()

    stock.add_lora_logits(y_stock, x, lora_a[0], lora_b[0], 1.0)
    ours.add_lora_logits(y_ours, x, lora_a[0], lora_b[0], 1.0)

    torch.testing.assert_close(y_ours, y_stock)
    assert torch.equal(y_ours[1], y[1])  # the base model's request


def test_embeddings_add_each_tokens_adapter() -> None:
    token_ids, prompt_ids = MAPPINGS["interleaved"]
    stock, ours = _wrappers(token_ids, prompt_ids)
    _, lora_b = _stacked(4, (HIDDEN,))
    x = torch.randn(len(token_ids), 4)
    y = torch.randn(len(token_ids), HIDDEN)
    y_stock, y_ours = y.clone(), y.clone()

    stock.add_lora_embedding(y_stock, x, lora_b[0], add_inputs=True)
    ours.add_lora_embedding(y_ours, x, lora_b[0], add_inputs=True)

    torch.testing.assert_close(y_ours, y_stock)


def test_a_compiled_forward_follows_each_steps_adapters() -> None:
    """Traced once (as vLLM compiles the model), the LoRA op still reads every new step's
    rows: the grouping is not frozen into the graph at the first batch."""
    outs = (32, 8, 8)
    lora_a, lora_b = _stacked(8, outs)
    ours = GroupedPunicaWrapperCPU(max_num_batched_tokens=64, max_batches=8, device="cpu")

    def layer(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = y * 1.0  # an intermediate, as a linear layer's output is
        ours.add_lora_linear(y, x, lora_a, lora_b, 1.0, outs)
        return y

    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True, dynamic=True)
    torch._dynamo.reset()
    # Base-only first: the step a trace made at the first batch would keep.
    for name in ("base-only", "prefill", "interleaved"):
        token_ids, prompt_ids = MAPPINGS[name]
        stock, _ = _wrappers(token_ids, prompt_ids)
        mapping = LoRAMapping(token_ids, prompt_ids, is_prefill=True)
        ours.update_metadata(mapping, SLOT_IDS, SLOTS + 1, VOCAB)
        x = torch.randn(len(token_ids), HIDDEN)
        y = torch.randn(len(token_ids), sum(outs))
        expected = y.clone()
        stock.add_lora_linear(expected, x, lora_a, lora_b, 1.0, outs)
        torch.testing.assert_close(compiled(y, x), expected, msg=name)
