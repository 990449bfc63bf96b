"""LoRA matmuls grouped by adapter, in as few CPU ops as the maths allows.

vLLM keeps the weights of the adapters resident in a batch stacked by slot: per layer and
per slice of a merged layer (q, k, v of qkv_proj; gate, up of gate_up_proj), an `A` of
(slots, 1, rank, in) and a `B` of (slots, 1, out, rank), zero-padded to the engine's
largest rank. Here, per layer, the slices' `A` are stacked into one shrink matrix of
(slots, in, slices * rank) and their `B` into one block-diagonal expand matrix of
(slots, slices * rank, sum of outs): a merged layer costs one shrink and one expand,
whatever its slices. The block-diagonal expand multiplies zeros, which on a CPU costs less
than an op per slice: LoRA's ranks are small next to the layer.

The fused matrices are float32, transposed for a row-major matmul, cached per layer and
rebuilt when vLLM writes a slot (loading an adapter bumps the stacked tensors' version
counters). Float32 because PyTorch's CPU matmul of a few rows in bfloat16 took 3x longer
than in float32 (43 against 9 us for one token through a 576-wide layer on AVX-512); the
LoRA delta is added to the layer's output in its own dtype. A slot whose adapter leaves a
layer alone (a q/v adapter's MLP) is all zeros there and is skipped.

A batch of a few rows from several adapters (decoding many domains at once) runs as one
batched matmul over the slots, its rows padded to the largest group: two matmuls and a
scatter for the whole batch instead of two per adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

NO_ADAPTER = -1
"""vLLM's slot index for tokens of requests to the base model."""
COMPUTE_DTYPE = torch.float32
PADDED_MAX_ROWS = 64
"""Batches of at most this many adapter rows, from two adapters or more, run padded."""


@dataclass(frozen=True)
class RowGroup:
    """The rows of one batch that one adapter slot applies to."""

    slot: int
    rows: slice | torch.Tensor
    """A slice when the rows are contiguous (one request, or requests next to each other),
    else their indices."""


@dataclass(frozen=True)
class PaddedRows:
    """A batch's adapter rows laid out as (slots, per_slot) for one batched matmul."""

    slots: int
    """Slots 0 .. slots - 1 are covered (those without rows are padding)."""
    per_slot: int
    gather: torch.Tensor
    """(slots * per_slot,) row of the input for each position; padding reads row 0."""
    positions: torch.Tensor
    """The positions holding a real row, in the flattened (slots * per_slot)."""
    rows: torch.Tensor
    """The output row of each of `positions`."""


@dataclass(frozen=True)
class BatchRows:
    """Where each adapter applies in one engine step, worked out once for all its layers."""

    groups: tuple[RowGroup, ...]
    padded: PaddedRows | None = None


def group_rows(slots: Sequence[int]) -> tuple[RowGroup, ...]:
    """Group row indices by adapter slot, in slot order; rows without an adapter are left out."""
    rows_by_slot = _rows_by_slot(slots)
    groups = []
    for slot, rows in rows_by_slot.items():
        if rows[-1] - rows[0] + 1 == len(rows):
            groups.append(RowGroup(slot, slice(rows[0], rows[-1] + 1)))
        else:
            groups.append(RowGroup(slot, torch.tensor(rows, dtype=torch.long)))
    return tuple(groups)


def _rows_by_slot(slots: Sequence[int]) -> dict[int, list[int]]:
    rows_by_slot: dict[int, list[int]] = {}
    for row, slot in enumerate(slots):
        if slot != NO_ADAPTER:
            rows_by_slot.setdefault(slot, []).append(row)
    return dict(sorted(rows_by_slot.items()))


def plan_rows(slots: Sequence[int], padded_max_rows: int = PADDED_MAX_ROWS) -> BatchRows:
    """The groups of a batch, and its padded layout when several adapters share few rows."""
    groups = group_rows(slots)
    rows_by_slot = _rows_by_slot(slots)
    count = sum(len(rows) for rows in rows_by_slot.values())
    if len(groups) < 2 or count > padded_max_rows:
        return BatchRows(groups)
    covered = max(rows_by_slot) + 1
    per_slot = max(len(rows) for rows in rows_by_slot.values())
    gather = [0] * (covered * per_slot)
    positions, rows = [], []
    for slot, slot_rows in rows_by_slot.items():
        for offset, row in enumerate(slot_rows):
            position = slot * per_slot + offset
            gather[position] = row
            positions.append(position)
            rows.append(row)
    padded = PaddedRows(
        covered,
        per_slot,
        torch.tensor(gather, dtype=torch.long),
        torch.tensor(positions, dtype=torch.long),
        torch.tensor(rows, dtype=torch.long),
    )
    return BatchRows(groups, padded)


@dataclass(frozen=True)
class FusedLayer:
    """One layer's LoRA weights, fused across its slices, for every slot."""

    shrink: torch.Tensor
    """(slots, in, slices * rank), float32, contiguous."""
    expand: torch.Tensor
    """(slots, slices * rank, out), block-diagonal over the slices, float32, contiguous."""
    active: tuple[bool, ...]
    """Per slot: whether its adapter changes this layer at all."""
    shrinks: tuple[torch.Tensor, ...]
    """Per slot, `shrink[slot]`: taken once, since indexing a tensor costs microseconds
    at every one of the hundred-odd calls of an engine step."""
    expands: tuple[torch.Tensor, ...]
    """Per slot, `expand[slot]`."""


def fuse(lora_a: Sequence[torch.Tensor], lora_b: Sequence[torch.Tensor]) -> FusedLayer:
    """Fuse a layer's per-slice stacked weights (vLLM's layout, see the module docstring)."""
    if len(lora_a) != len(lora_b) or not lora_a:
        raise ValueError("every slice needs an A and a B")
    slots, _, rank, _ = lora_a[0].shape
    shrink = torch.cat([a[:, 0] for a in lora_a], dim=1).transpose(1, 2)
    outs = [b.shape[2] for b in lora_b]
    expand = torch.zeros(slots, rank * len(lora_b), sum(outs), dtype=COMPUTE_DTYPE)
    offset = 0
    for index, (b, out) in enumerate(zip(lora_b, outs, strict=True)):
        block = b[:, 0].transpose(1, 2)
        expand[:, index * rank : (index + 1) * rank, offset : offset + out] = block
        offset += out
    shrink = shrink.to(COMPUTE_DTYPE).contiguous()
    active = tuple(bool(shrink[slot].any()) and bool(expand[slot].any()) for slot in range(slots))
    return FusedLayer(shrink, expand, active, tuple(shrink.unbind(0)), tuple(expand.unbind(0)))


def _versions(tensors: Sequence[torch.Tensor]) -> tuple[int, ...] | None:
    try:
        return tuple(t._version for t in tensors)
    except RuntimeError:
        # Tensors made under torch.inference_mode keep no version counter.
        return None


class FusedLayerCache:
    """Fused weights per layer, rebuilt whenever vLLM writes into the layer's slots."""

    def __init__(self) -> None:
        self._layers: dict[int, tuple[tuple[torch.Tensor, ...], tuple[int, ...], FusedLayer]] = {}

    def get(self, lora_a: Sequence[torch.Tensor], lora_b: Sequence[torch.Tensor]) -> FusedLayer:
        tensors = (*lora_a, *lora_b)
        versions = _versions(tensors)
        key = id(lora_a[0])
        cached = self._layers.get(key)
        if (
            versions is not None
            and cached is not None
            and cached[0][0] is lora_a[0]
            and cached[1] == versions
        ):
            return cached[2]
        fused = fuse(lora_a, lora_b)
        if versions is not None:
            # The tensors are kept so that their ids stay theirs while cached.
            self._layers[key] = (tensors, versions, fused)
        return fused


def _take(x: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    return x[rows] if isinstance(rows, slice) else x.index_select(0, rows)


def _add_into(target: torch.Tensor, rows: slice | torch.Tensor, delta: torch.Tensor) -> None:
    if isinstance(rows, slice):
        target[rows].add_(delta)
    else:
        target.index_add_(0, rows, delta.to(target.dtype))


def add_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    batch: BatchRows,
    layer: FusedLayer,
    scale: float = 1.0,
) -> None:
    """`y[rows, :out] += (x[rows] @ A[slot].T * scale) @ B[slot].T` for every group, in place."""
    if not any(layer.active[group.slot] for group in batch.groups):
        return
    out = layer.expand.shape[2]
    width = min(out, y.shape[1])
    target = y if width == y.shape[1] else y[:, :width]
    inputs = x.to(COMPUTE_DTYPE)
    if batch.padded is not None:
        _add_padded(target, inputs, batch.padded, layer, width, scale)
        return
    rows_in_batch = x.shape[0]
    for group in batch.groups:
        if not layer.active[group.slot]:
            continue
        # The usual decode step (one domain, or one request) takes every row: no gather.
        whole = _covers(group.rows, rows_in_batch)
        hidden = torch.mm(inputs if whole else _take(inputs, group.rows), layer.shrinks[group.slot])
        if scale != 1.0:
            hidden.mul_(scale)
        expand = layer.expands[group.slot]
        delta = torch.mm(hidden, expand if width == out else expand[:, :width])
        if whole:
            target.add_(delta)
        else:
            _add_into(target, group.rows, delta)


def _covers(rows: slice | torch.Tensor, count: int) -> bool:
    return isinstance(rows, slice) and rows.start == 0 and rows.stop == count


def _add_padded(
    target: torch.Tensor,
    inputs: torch.Tensor,
    padded: PaddedRows,
    layer: FusedLayer,
    width: int,
    scale: float,
) -> None:
    rows = inputs.index_select(0, padded.gather).view(padded.slots, padded.per_slot, -1)
    hidden = torch.bmm(rows, layer.shrink[: padded.slots])
    if scale != 1.0:
        hidden.mul_(scale)
    delta = torch.bmm(hidden, layer.expand[: padded.slots, :, :width])
    delta = delta.view(-1, width).index_select(0, padded.positions)
    target.index_add_(0, padded.rows, delta.to(target.dtype))


def add_expand(
    y: torch.Tensor,
    x: torch.Tensor,
    groups: Sequence[RowGroup],
    lora_b: torch.Tensor,
) -> None:
    """`y[rows, :out] += x[rows] @ B[slot].T` for every group (an embedding's LoRA, whose
    shrink is a lookup); `lora_b` is vLLM's (slots, 1, out, rank)."""
    width = min(lora_b.shape[2], y.shape[1])
    target = y[:, :width]
    for group in groups:
        expand = lora_b[group.slot, 0, :width].to(COMPUTE_DTYPE)
        delta = torch.mm(_take(x, group.rows).to(COMPUTE_DTYPE), expand.t())
        _add_into(target, group.rows, delta)
