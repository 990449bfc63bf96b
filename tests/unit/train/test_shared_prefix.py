"""A batch's shared opening computed once: the same loss and gradients as the plain step."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from lorastack.train.shared_prefix import (
    MIN_SHARED_TOKENS,
    shared_opening,
    split_batch,
    trainer_sharing_openings,
)
from tests.fakes import write_trainable_checkpoint

VOICE = "we are the shop and we answer your question with kind regards from the support desk"
CHATS = [
    ("do you have oat milk", "yes we have oat milk today"),
    ("when do you open", "we open at 7 am"),
    ("can i order online", "sure you can order online"),
]


def _tensor(rows: list[list[int]]) -> Any:
    import torch

    return torch.tensor(rows)


def test_the_opening_is_what_every_row_has_unpadded_and_unlabelled_less_one_token() -> None:
    ids = _tensor([[*range(20), 50, 51, 0], [*range(20), 60, 0, 0]])
    labels = _tensor([[-100] * 20 + [50, 51, -100], [-100] * 20 + [60, -100, -100]])
    mask = _tensor([[1] * 22 + [0], [1] * 21 + [0, 0]])
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    assert shared_opening(batch) == 19  # token 19 starts the rest: its prediction is not needed
    head, rest = split_batch(batch, 19)
    assert head.tolist() == [list(range(19))]
    assert rest["input_ids"][:, 0].tolist() == [19, 19] and rest["attention_mask"] is mask

    assert shared_opening({**batch, "input_ids": ids[:1], "labels": labels[:1]}) == 0  # one row
    assert shared_opening({**batch, "cu_seq_lens_q": None}) == 0  # another layout
    short = labels.clone()
    short[:, MIN_SHARED_TOKENS - 2] = 5  # labelled before a worthwhile opening
    assert shared_opening({**batch, "labels": short}) == 0


def test_a_step_on_the_shared_opening_has_the_plain_step_s_loss_and_gradients(
    tmp_path: Path,
) -> None:
    import datasets
    import torch
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    examples = [
        {
            "prompt": [{"role": "system", "content": VOICE}, {"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": a}],
        }
        for q, a in CHATS
    ]
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=3,
        completion_only_loss=True,
        gradient_checkpointing=False,
    )
    trainer = trainer_sharing_openings(SFTTrainer)(
        model=str(write_trainable_checkpoint(tmp_path / "model")),
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        peft_config=LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"),
    )
    torch.manual_seed(0)
    for parameter in trainer.model.parameters():
        if parameter.requires_grad:  # LoRA's B starts at zero: give the adapter an effect
            torch.nn.init.normal_(parameter, std=0.5)
    batch = next(iter(trainer.get_train_dataloader()))
    opening = shared_opening(dict(batch))
    assert opening >= MIN_SHARED_TOKENS
    rows, length = batch["input_ids"].shape
    ran: list[tuple[int, ...]] = []
    backbone = trainer.model.get_base_model().base_model
    backbone.register_forward_hook(
        lambda _m, _a, kwargs, _o: ran.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )

    def step(compute: Any) -> tuple[float, list[Any]]:
        trainer.model.zero_grad()
        loss = compute(trainer.model, dict(batch))
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
        return float(loss.detach()), grads

    shared_loss, shared_grads = step(trainer.compute_loss)
    assert ran == [(1, opening), (rows, length - opening)]  # the opening once, then the rest
    plain_loss, plain_grads = step(
        lambda model, inputs: SFTTrainer.compute_loss(trainer, model, inputs)
    )
    assert ran[2:] == [(rows, length)]
    with warnings.catch_warnings():  # TRL deprecates returning outputs; it still may be asked
        warnings.simplefilter("ignore", FutureWarning)
        trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert ran[3:] == [(rows, length)] * 2  # the plain way: TRL recomputes the outputs
    assert shared_loss == pytest.approx(plain_loss, rel=1e-5)
    assert len(shared_grads) == len(plain_grads) > 0
    for got, want in zip(shared_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
