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

MIN_SHARED_TOKENS = 16
"""A shorter common opening saves too little to be worth a second forward call."""
_PLAIN_KEYS = frozenset({"input_ids", "attention_mask", "labels", "position_ids"})
"""What a padded batch of TRL's collator holds; other keys (padding-free packing, images)
mean another layout, trained the plain way."""


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


def trainer_sharing_openings(base: type[Any]) -> type[Any]:
    """`base` (a TRL trainer class) with `compute_loss` computing a batch's shared opening
    once."""

    class SharingOpenings(base):  # type: ignore[misc]
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            # Outputs asked for are recomputed from `inputs` by TRL, after the cache is spent.
            sharing = not return_outputs and self._can_share(model)
            opening = shared_opening(inputs) if sharing else 0
            if not opening:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            head, rest = split_batch(inputs, opening)
            backbone = model.get_base_model().base_model  # LoRA layers are inside it
            cache = backbone(input_ids=head, use_cache=True).past_key_values
            cache.batch_repeat_interleave(rest["input_ids"].shape[0])
            rest["past_key_values"] = cache
            return super().compute_loss(model, rest, return_outputs, num_items_in_batch)

        def _can_share(self, model: Any) -> bool:
            return (
                self.accelerator.num_processes == 1
                and not getattr(model, "is_gradient_checkpointing", False)
                and hasattr(model, "get_base_model")
            )

    SharingOpenings.__name__ = SharingOpenings.__qualname__ = f"{base.__name__}SharingOpenings"
    return SharingOpenings
