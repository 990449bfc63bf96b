"""A batch whose examples all open alike computes that opening once.

Every example of a brand chat run opens with the same brand voice: the system prompt
and the chat template's markup, about 40% of a short example's tokens (45 of 110 on the
held-out test brand). A plain training step runs the model over it once per example. The
trainer here runs it once per batch, over one row, keeps its keys and values, repeats them
for every row, and runs the rest of each example on top of them: the same attention, the
same loss, and, because autograd adds the gradients of the repeated keys and values, the
same gradients (a unit test compares both ways), at the cost of the shared tokens once.
Measured in a step's time on 2 CPU cores, see docs/training.md.

It applies only where it is sure to be exact: one process (a distributed wrapper keeps
its own books of a forward pass), no gradient checkpointing (which drops what it would
keep), a batch of padded rows (TRL's collator pads on the right) whose common opening is
unpadded and unlabelled and at least `MIN_SHARED_TOKENS` long; anything else trains the
plain way. With LoRA dropout the shared opening sees one dropout mask instead of one per
row: equal in expectation, not bit for bit.
"""

from __future__ import annotations

from typing import Any

from lorastack.train.length_groups import length_groups, row_lengths, rows_of

MIN_SHARED_TOKENS = 16
"""A shorter common opening saves too little to be worth a second forward call."""
_PLAIN_KEYS = frozenset({"input_ids", "attention_mask", "labels", "position_ids"})
"""What a padded batch of TRL's collator holds; other keys (padding-free packing, images)
mean another layout, trained the plain way."""


def _plain_batch(inputs: dict[str, Any]) -> bool:
    """A padded batch of TRL's collator, with labels and an attention mask."""
    return set(inputs) <= _PLAIN_KEYS and {"input_ids", "labels", "attention_mask"} <= set(inputs)


def shared_opening(inputs: dict[str, Any]) -> int:
    """How many leading tokens of the batch to compute once: every row has them, unpadded
    and unlabelled, and so has the token after them (unlabelled: the opening's last
    position would predict it, and its prediction is not computed); 0 for none."""
    ids, labels = inputs.get("input_ids"), inputs.get("labels")
    mask = inputs.get("attention_mask")
    if ids is None or labels is None or mask is None or not set(inputs) <= _PLAIN_KEYS:
        return 0
    if ids.dim() != 2 or ids.shape[0] < 2:
        return 0
    alike = (ids == ids[:1]).all(dim=0) & (mask == 1).all(dim=0) & (labels == -100).all(dim=0)
    run = int(alike.long().cumprod(dim=0).sum())  # the leading positions where all agree
    opening = run - 1
    return opening if opening >= MIN_SHARED_TOKENS else 0


def split_batch(inputs: dict[str, Any], opening: int) -> tuple[Any, dict[str, Any]]:
    """The opening's tokens (one row) and the rest of the batch after them; the attention
    mask stays whole, as the model reads the opening's part of it too."""
    rest = dict(inputs)
    for key in ("input_ids", "labels", "position_ids"):
        if key in rest:
            rest[key] = rest[key][:, opening:]
    return inputs["input_ids"][:1, :opening], rest


def labelled_tokens(labels: Any) -> Any:
    """The tokens a batch's loss is averaged over: those with a label to predict (the
    model predicts each position's label from the one before, so the first never counts)."""
    return (labels[:, 1:] != -100).sum()


def _plain_cache_layers(cache: Any) -> list[tuple[Any, Any]] | None:
    """The keys and values of each layer of a cache of plain layers; None for any other
    layout (sliding windows, quantised), which a fresh cache could not rebuild."""
    from transformers.cache_utils import DynamicLayer

    if not all(type(layer) is DynamicLayer for layer in cache.layers):
        return None
    return [(layer.keys, layer.values) for layer in cache.layers]


def _repeated(layers: list[tuple[Any, Any]], rows: int) -> Any:
    """A cache holding `layers`' keys and values once per row (expanded: autograd adds the
    rows' gradients back onto the one computation)."""
    from transformers.cache_utils import DynamicCache

    return DynamicCache(
        ddp_cache_data=[
            (keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
            for keys, values in layers
        ]
    )


def trainer_sharing_openings(base: type[Any]) -> type[Any]:
    """`base` (a TRL trainer class) with `compute_loss` computing a batch's shared opening
    once and its rows in groups of like length (`train/length_groups.py`)."""

    class SharingOpenings(base):  # type: ignore[misc]
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            # Outputs asked for are recomputed from `inputs` by TRL, after the cache is spent.
            lean = not return_outputs and self._can_share(model) and _plain_batch(inputs)
            opening = shared_opening(inputs) if lean else 0
            lengths = row_lengths(inputs["attention_mask"]) if lean else None
            groups = length_groups([n - opening for n in lengths]) if lengths else []
            items = num_items_in_batch
            if opening:
                head = inputs["input_ids"][:1, :opening]
                cache = self._backbone(model)(input_ids=head, use_cache=True).past_key_values
                layers = _plain_cache_layers(cache) if len(groups) > 1 else None
                if layers is not None:
                    return self._grouped_loss(model, inputs, groups, opening, layers, items)
                _, rest = split_batch(inputs, opening)  # one group: every row on one cache
                cache.batch_repeat_interleave(rest["input_ids"].shape[0])
                rest["past_key_values"] = cache
                return super().compute_loss(model, rest, False, items)
            if len(groups) > 1:
                return self._grouped_loss(model, inputs, groups, 0, [], items)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _grouped_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            groups: list[list[int]],
            opening: int,
            layers: list[tuple[Any, Any]],
            items: Any,
        ) -> Any:
            # Each group's loss over the whole batch's labelled tokens: they add up to the
            # batch's loss, as TRL averages it.
            items = labelled_tokens(inputs["labels"]) if items is None else items
            lengths = inputs["attention_mask"].sum(dim=1)
            total: Any = 0
            for rows in groups:
                part = rows_of(inputs, rows, int(lengths[rows].max()))
                if opening:
                    _, part = split_batch(part, opening)
                    part["past_key_values"] = _repeated(layers, len(rows))
                total = total + super().compute_loss(model, part, False, items)
            return total

        def _can_share(self, model: Any) -> bool:
            return (
                self.accelerator.num_processes == 1
                and not getattr(model, "is_gradient_checkpointing", False)
                and hasattr(model, "get_base_model")
            )

        @staticmethod
        def _backbone(model: Any) -> Any:
            return model.get_base_model().base_model  # LoRA layers are inside it

    SharingOpenings.__name__ = SharingOpenings.__qualname__ = f"{base.__name__}SharingOpenings"
    return SharingOpenings
