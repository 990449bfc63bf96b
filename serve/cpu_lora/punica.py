"""vLLM's CPU Punica wrapper with the grouped ops of `ops.py`.

vLLM's LoRA layers call their Punica wrapper: `update_metadata` once per engine step with
the slot of every token, then `add_lora_linear` (every linear layer), `add_lora_logits`
(lm_head) and `add_lora_embedding` (embed_tokens). Those three run here; the rest (the
metadata, full-linear heads) stays vLLM's.

The linear and embedding ops run inside the model's forward, which vLLM can compile
(`engine.lora_compile`, plugin.py): there they are PyTorch custom ops (`torch.ops.lorastack.*`),
which the compiler keeps as opaque calls. Which rows belong to which adapter changes every
step and is plain Python (`plan_rows`); traced, it would be frozen at the first step's
batch. The ops find the step's rows through the wrapper they are given by number, since a
custom op takes tensors and scalars only. vLLM's GPU LoRA kernels are custom ops for the
same reason. The logits op runs outside the compiled forward and stays a method.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
from vllm.utils.torch_utils import direct_register_custom_op

from lorastack.serve.cpu_lora.ops import BatchRows, FusedLayerCache, add_expand, add_lora, plan_rows

if TYPE_CHECKING:
    from vllm.lora.layers import LoRAMapping


_WRAPPERS: dict[int, GroupedPunicaWrapperCPU] = {}
"""Every wrapper of this process, by number: an engine makes one and keeps it."""
_NUMBERS = itertools.count()


def _lora_linear(
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a: list[torch.Tensor],
    lora_b: list[torch.Tensor],
    scale: float,
    wrapper: int,
) -> None:
    _WRAPPERS[wrapper].apply_linear(y, x, lora_a, lora_b, scale)


def _lora_embedding(y: torch.Tensor, x: torch.Tensor, lora_b: torch.Tensor, wrapper: int) -> None:
    _WRAPPERS[wrapper].apply_embedding(y, x, lora_b)


def _nothing(*args: Any) -> None:
    """What the compiler traces instead of an op: it writes into `y` and returns nothing."""
    return None


_LIBRARY = torch.library.Library("lorastack", "FRAGMENT")  # type: ignore[no-untyped-call]
direct_register_custom_op(
    "lora_linear", _lora_linear, ["y"], _nothing, target_lib=_LIBRARY, dispatch_key="CPU"
)
direct_register_custom_op(
    "lora_embedding", _lora_embedding, ["y"], _nothing, target_lib=_LIBRARY, dispatch_key="CPU"
)


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
        self._number = next(_NUMBERS)
        _WRAPPERS[self._number] = self

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
        y, x = y.view(-1, y.shape[-1]), x.view(-1, x.shape[-1])
        if not torch.compiler.is_compiling():
            # Eager, the method itself: the custom op's dispatch costs about 30 us a call,
            # as much as the LoRA maths of a decode step's layer.
            self.apply_linear(y, x, lora_a_stacked, lora_b_stacked, scale)
            return
        torch.ops.lorastack.lora_linear(
            y, x, list(lora_a_stacked), list(lora_b_stacked), scale, self._number
        )

    def apply_linear(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_a_stacked: Sequence[torch.Tensor],
        lora_b_stacked: Sequence[torch.Tensor],
        scale: float,
    ) -> None:
        """The LoRA delta of this step's rows into `y`; `y` and `x` are (rows, features)."""
        if not self._tokens.groups:
            return
        layer = self._fused.get(lora_a_stacked, lora_b_stacked)
        add_lora(y, x, self._tokens, layer, scale)

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
        if not torch.compiler.is_compiling():
            self.apply_embedding(y, x, lora_b_stacked)
            return
        torch.ops.lorastack.lora_embedding(y, x, lora_b_stacked, self._number)

    def apply_embedding(self, y: torch.Tensor, x: torch.Tensor, lora_b: torch.Tensor) -> None:
        add_expand(y, x, self._tokens.groups, lora_b)
