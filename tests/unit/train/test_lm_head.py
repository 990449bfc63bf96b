"""On a CPU, TRL's fused LM head scores only the labelled tokens, with the same loss and
gradients as when it scores every token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes import write_trainable_checkpoint


def _loss_and_grads(model: Any, batch: dict[str, Any]) -> tuple[float, list[Any]]:
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    return float(out.loss.detach()), [
        p.grad.clone() for p in model.parameters() if p.grad is not None
    ]


def test_only_the_labelled_positions_reach_the_lm_head_and_nothing_else_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.kernels import chunked_logprob
    from trl.trainer import utils

    from lorastack import precision

    # TRL's own choice, whatever an earlier trainer in this process installed; restored after.
    monkeypatch.setattr(utils, "_use_triton", chunked_logprob._use_triton)
    model = AutoModelForCausalLM.from_pretrained(write_trainable_checkpoint(tmp_path / "m"))
    utils.add_fused_lm_head(model)
    scored: list[int] = []
    project = utils._ChunkedLogProbFunction.apply

    def counting(hidden: Any, *args: Any) -> Any:
        scored.append(hidden.shape[0])
        return project(hidden, *args)

    monkeypatch.setattr(utils._ChunkedLogProbFunction, "apply", counting)
    torch.manual_seed(0)
    input_ids = torch.randint(6, 40, (3, 12))
    labels = input_ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 10:] = -100  # padding
    batch = {"input_ids": input_ids, "labels": labels}

    every_loss, every_grads = _loss_and_grads(model, batch)
    assert precision.score_labelled_tokens_only() is True
    assert precision.score_labelled_tokens_only() is True  # once is enough
    labelled_loss, labelled_grads = _loss_and_grads(model, batch)

    shifted = int((labels[:, 1:] != -100).sum())
    assert scored == [3 * 11, shifted] and shifted == 3 * 5 - 2
    assert labelled_loss == pytest.approx(every_loss, rel=1e-5)
    assert len(labelled_grads) == len(every_grads)
    for got, want in zip(labelled_grads, every_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_without_trl_s_helper_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.trainer import utils

    from lorastack import precision

    monkeypatch.delattr(utils, "_use_triton")
    assert precision.score_labelled_tokens_only() is False
