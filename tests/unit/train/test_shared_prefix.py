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
LONG = " ".join(["we roast our own beans every morning and grind them fresh"] * 6)
MIXED = [
    ("hi", "hello"),
    ("when do you open", LONG),
    ("oat milk", "yes"),
    ("can i order online and pick it up later today", LONG + " thanks"),
]
"""Two terse chats and two long ones: length groups pay off."""


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


def _trainer(tmp_path: Path, chats: list[tuple[str, str]], voice: str) -> Any:
    import datasets
    import torch
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    def prompt(question: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": voice}] if voice else []
        return [*system, {"role": "user", "content": question}]

    examples = [
        {"prompt": prompt(q), "completion": [{"role": "assistant", "content": a}]} for q, a in chats
    ]
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=len(chats),
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
    return trainer


def _shapes_run(trainer: Any) -> list[tuple[int, ...]]:
    """The input shapes of every backbone call from now on."""
    ran: list[tuple[int, ...]] = []
    backbone = trainer.model.get_base_model().base_model
    backbone.register_forward_hook(
        lambda _m, _a, kwargs, _o: ran.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    return ran


def _step(trainer: Any, batch: Any, compute: Any) -> tuple[float, list[Any]]:
    trainer.model.zero_grad()
    loss = compute(trainer.model, dict(batch))
    loss.backward()
    grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    return float(loss.detach()), grads


def _assert_same_step(got: tuple[float, list[Any]], want: tuple[float, list[Any]]) -> None:
    import torch

    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert len(got[1]) == len(want[1]) > 0
    for mine, plain in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(mine, plain, rtol=1e-4, atol=1e-6)


def _plain(trainer: Any) -> Any:
    from trl.trainer.sft_trainer import SFTTrainer

    return lambda model, inputs: SFTTrainer.compute_loss(trainer, model, inputs)


def test_a_step_on_the_shared_opening_has_the_plain_step_s_loss_and_gradients(
    tmp_path: Path,
) -> None:
    trainer = _trainer(tmp_path, CHATS, VOICE)
    batch = next(iter(trainer.get_train_dataloader()))
    opening = shared_opening(dict(batch))
    assert opening >= MIN_SHARED_TOKENS
    rows, length = batch["input_ids"].shape
    ran = _shapes_run(trainer)
    shared = _step(trainer, batch, trainer.compute_loss)
    assert ran == [(1, opening), (rows, length - opening)]  # the opening once, then the rest
    plain = _step(trainer, batch, _plain(trainer))
    assert ran[2:] == [(rows, length)]
    with warnings.catch_warnings():  # TRL deprecates returning outputs; it still may be asked
        warnings.simplefilter("ignore", FutureWarning)
        trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert ran[3:] == [(rows, length)] * 2  # the plain way: TRL recomputes the outputs
    _assert_same_step(shared, plain)


@pytest.mark.parametrize("voice", [VOICE, ""], ids=["shared-opening", "no-opening"])
def test_rows_of_unlike_length_run_in_groups_with_the_plain_step_s_loss_and_gradients(
    tmp_path: Path, voice: str
) -> None:
    trainer = _trainer(tmp_path, MIXED, voice)
    batch = next(iter(trainer.get_train_dataloader()))
    opening = shared_opening(dict(batch))
    assert bool(opening) == bool(voice)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    terse, long = sorted(lengths)[1], max(lengths)
    ran = _shapes_run(trainer)
    grouped = _step(trainer, batch, trainer.compute_loss)
    head = [(1, opening)] if opening else []
    # The terse pair padded to its own length, the long pair to theirs.
    assert ran == [*head, (2, terse - opening), (2, long - opening)]
    _assert_same_step(grouped, _step(trainer, batch, _plain(trainer)))
