"""vLLM's CPU Punica wrapper with the grouped ops of `ops.py`.

vLLM's LoRA layers call their Punica wrapper: `update_metadata` once per engine step with
the slot of every token, then `add_lora_linear` (every linear layer), `add_lora_logits`
(lm_head) and `add_lora_embedding` (embed_tokens). Those three run here; the rest (the
metadata, full-linear heads) stays vLLM's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from lorastack.serve.cpu_lora.ops import BatchRows, FusedLayerCache, add_expand, add_lora, plan_rows

if TYPE_CHECKING:
    from vllm.lora.layers import LoRAMapping


class GroupedPunicaWrapperCPU(PunicaWrapperCPU):
    """PunicaWrapperCPU whose LoRA ops handle each adapter's tokens together."""

    def __init__(
        self,
        max_num_batched_tokens: int,
        max_batches: int,
        device: torch.device | str,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_num_batched_tokens, max_batches, device, **kwargs)
        self._tokens = BatchRows(())
        self._requests = BatchRows(())
        self._fused = FusedLayerCache()

    def update_metadata(
        self,
        mapping: LoRAMapping,
        lora_index_to_id: list[int | None],
        max_loras: int,
        vocab_size: int,
        **kwargs: Any,
    ) -> None:
        super().update_metadata(mapping, lora_index_to_id, max_loras, vocab_size, **kwargs)
        # Once per step, not per layer: every layer of the step reuses the groups.
        self._tokens = plan_rows(self.token_lora_indices.tolist())
        self._requests = plan_rows(self.sampler_indices.tolist())

    def add_lora_linear(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_a_stacked: tuple[torch.Tensor, ...],
        lora_b_stacked: tuple[torch.Tensor, ...],
        scale: float,
        output_slices: tuple[int, ...],
        *,
        buffer: tuple[torch.Tensor, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._tokens.groups:
            return
        layer = self._fused.get(lora_a_stacked, lora_b_stacked)
        add_lora(y.view(-1, y.shape[-1]), x.view(-1, x.shape[-1]), self._tokens, layer, scale)

    def add_lora_logits(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_a_stacked: torch.Tensor,
        lora_b_stacked: torch.Tensor,
        scale: float,
        *,
        buffer: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._requests.groups:
            return
        layer = self._fused.get((lora_a_stacked,), (lora_b_stacked,))
        add_lora(y.view(-1, y.shape[-1]), x.view(-1, x.shape[-1]), self._requests, layer, scale)

    def add_lora_embedding(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_b_stacked: torch.Tensor,
        add_inputs: bool = True,
        **kwargs: Any,
    ) -> None:
        if not add_inputs:
            # Not called this way by vLLM's layers; vLLM's own op handles it if ever.
            super().add_lora_embedding(y, x, lora_b_stacked, add_inputs, **kwargs)
            return
        add_expand(y, x, self._tokens.groups, lora_b_stacked)
