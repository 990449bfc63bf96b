"""Rows grouped by length: the fewest padded positions for the calls they cost."""

from __future__ import annotations

from lorastack.train.length_groups import length_groups, row_lengths, rows_of


def test_rows_of_like_length_share_a_group_when_the_padding_saved_outweighs_a_call() -> None:
    lengths = [10, 100, 12, 98]
    assert length_groups(lengths, cost=5) == [[0, 2], [1, 3]]
    assert length_groups(lengths, cost=1000) == [[0, 1, 2, 3]]  # a call costs more than padding
    assert length_groups([50] * 4, cost=1) == [[0, 1, 2, 3]]  # nothing to save
    assert length_groups([30, 10, 20], cost=0) == [[1], [2], [0]]  # shortest group first
    assert length_groups([], cost=5) == []


def test_every_row_is_in_exactly_one_group() -> None:
    lengths = [7, 3, 60, 58, 9, 31, 33, 2]
    groups = length_groups(lengths, cost=8)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    cost = sum(len(g) * max(lengths[r] for r in g) + 8 for g in groups)
    assert cost < len(lengths) * max(lengths) + 8  # cheaper than one padded batch


def test_lengths_come_from_a_right_padded_mask_only() -> None:
    import torch

    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert row_lengths(right) == [3, 2]
    assert row_lengths(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])) is None  # left padding
    assert row_lengths(torch.tensor([[1, 0, 1, 0]])) is None  # a hole


def test_rows_of_a_batch_are_cut_to_a_width() -> None:
    import torch

    batch = {"input_ids": torch.arange(12).reshape(3, 4), "labels": torch.zeros(3, 4)}
    part = rows_of(batch, [0, 2], 2)
    assert part["input_ids"].tolist() == [[0, 1], [8, 9]]
    assert part["labels"].shape == (2, 2)
