"""Fine-tune a LoRA adapter with TRL's SFTTrainer, in one of three modes.

- `pretrain`: plain domain text, loss on every token.
- `sft`: prompt to completion, loss on the completion only.
- `instruct`: chat, loss on assistant turns only. Each assistant turn becomes a
  conversational prompt/completion example (the turns before it are the
  prompt), so the base model's own chat template renders it and TRL's
  completion-only loss applies, with no template changes.

Before any weights move, the configuration is checked with the same rules the
registry applies to published adapters, so a run never produces an adapter
vLLM cannot serve. A run lives in one folder (`lorastack.train.run`): its
resolved config, its data, checkpoints, a JSONL log and the best adapter.
The preference modes (`kto`, `dpo`) use the same run folder, checks and
callbacks, with TRL's KTOTrainer or DPOTrainer built in `train/preference.py`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from lorastack.errors import AdapterInvalid
from lorastack.guardrails import Guard
from lorastack.models import ModelRecord, ModelStore
from lorastack.precision import precision_options
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.settings import Settings
from lorastack.tensors import checkpoint_module_names
from lorastack.train.config import PREFERENCE_MODES, ConfigError, TrainConfig
from lorastack.train.data import (
    CanonicalFormat,
    ChatRecord,
    PrepareOptions,
    Record,
    add_system_prompt,
    detect_format,
    prepare_dataset,
)
from lorastack.train.distributed import is_main_process, wait_for_everyone
from lorastack.train.run import (
    RunPaths,
    check_prepared,
    copy_dataset,
    load_splits,
    new_run_dir,
)
from lorastack.train.shared_prefix import trainer_sharing_openings
from lorastack.validation import (
    ValidatedAdapter,
    check_lora_options,
    check_targets,
    validate_adapter,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    paths: RunPaths
    adapter: ValidatedAdapter
    steps: int
    best_eval_loss: float | None
    stopped_early: bool
    seconds: float
    from_adapter: str | None = None
    """kto, dpo: the published version it started from (`DOMAIN@vN`)."""


# -- checks before training --------------------------------------------------


def preflight(config: TrainConfig, base: ModelRecord, max_rank: int) -> None:
    """Refuse a configuration whose adapter vLLM could not serve, naming the reason.

    A preference run's LoRA shape is its starting adapter's, checked against `base` in
    `preference.starting_adapter` instead.
    """
    if config.mode not in PREFERENCE_MODES:
        _check_lora(config, base, max_rank)
    training = config.training_fields()
    for key in ("chat_template_path", "eos_token", "pad_token"):
        if training.get(key):
            raise ConfigError(
                f"refusing to train: {key} changes the tokenizer, and vLLM serves the adapter "
                "with the base model's tokenizer"
            )
    chat = ("instruct", *PREFERENCE_MODES)  # modes whose examples are message lists
    if config.mode in chat and not _has_chat_template(base.path):
        raise ConfigError(
            f"refusing to train: base model {base.name} has no chat template, so "
            f"{config.mode} mode would have to add one (a tokenizer change); use sft or "
            "pretrain mode"
        )


def _check_lora(config: TrainConfig, base: ModelRecord, max_rank: int) -> None:
    lora = config.lora_fields()
    if lora.get("trainable_token_indices"):
        raise ConfigError(
            "refusing to train: trainable_token_indices changes the embeddings, which a "
            "served LoRA adapter cannot carry"
        )
    as_saved = {"peft_type": "LORA", "bias": "none", **lora}
    try:
        spec = check_lora_options(as_saved, max_rank)
        check_targets(spec, checkpoint_module_names(base.path), base)
    except AdapterInvalid as error:
        raise ConfigError(f"refusing to train: {error}") from None


def _has_chat_template(checkpoint: Path) -> bool:
    if (checkpoint / "chat_template.jinja").is_file():
        return True
    config = checkpoint / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


# -- data --------------------------------------------------------------------

# The canonical record format each mode trains on, and how to say so when it is not.
_MODE_FORMATS: dict[str, tuple[CanonicalFormat, str]] = {
    "instruct": ("messages", "chat records (`messages`)"),
    "sft": ("prompt-completion", "prompt/completion records"),
    "pretrain": ("text", "text records (`text`)"),
}


def _of_format(record: dict[str, Any], wanted: CanonicalFormat) -> bool:
    """Whether a prepared record has the fields (and field types) of the format `wanted`."""
    if detect_format(record) != wanted:
        return False
    if wanted == "messages":
        return isinstance(record["messages"], list)
    return wanted != "text" or isinstance(record["text"], str)


def _assistant_turns(record: Record) -> Iterable[dict[str, Any]]:
    """One conversational example per assistant turn: the turns before it are the prompt."""
    messages = cast(ChatRecord, record)["messages"]
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and index > 0:
            yield {"prompt": messages[:index], "completion": [message]}


def to_examples(
    records: list[dict[str, Any]], mode: str, system_prompt: str = ""
) -> list[dict[str, Any]]:
    """Turn prepared records into the examples TRL trains on for this mode."""
    if mode not in _MODE_FORMATS:  # kto and dpo examples: `preference.to_preference_examples`
        raise ConfigError(f"mode must be one of {', '.join(_MODE_FORMATS)}, got {mode!r}")
    wanted, described = _MODE_FORMATS[mode]
    examples: list[dict[str, Any]] = []
    for record in records:
        if not _of_format(record, wanted):
            raise ConfigError(f"{mode} mode needs {described}")
        if mode == "instruct":
            chat = cast(Record, record)
            examples.extend(
                _assistant_turns(add_system_prompt(chat, system_prompt) if system_prompt else chat)
            )
        elif mode == "sft":
            examples.append({"prompt": record["prompt"], "completion": record["completion"]})
        else:
            examples.append({"text": record["text"]})
    return examples


# -- training ------------------------------------------------------------------


def _device_options() -> dict[str, Any]:
    options = precision_options()
    if options["bf16"]:
        # The frozen base in bf16 halves its memory and spares autocast a cast of every
        # weight at every step; PEFT keeps the LoRA weights in fp32. vLLM serves in bf16 on
        # the same hardware, so training and serving see the same base.
        options["model_init_kwargs"] = {"dtype": "bfloat16"}
    return options


def trainer_options(config: TrainConfig, paths: RunPaths) -> dict[str, Any]:
    """What every run's TRL config holds (SFT, KTO or DPO): evaluation, checkpoints, the
    best model by validation loss, the device; then the config's `training:` fields."""
    fields = config.training_fields()
    eval_steps = int(fields.get("eval_steps") or 10)
    if int(fields.get("save_steps") or eval_steps) % eval_steps:
        fields["save_steps"] = eval_steps  # the best checkpoint must be an evaluated one
    return {
        "eval_strategy": "steps",
        "save_strategy": "steps",
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "report_to": "none",
        "disable_tqdm": True,  # lorastack draws its own progress bar
        **_device_options(),
        **fields,
        "output_dir": str(paths.checkpoints),
    }


def _sft_config(config: TrainConfig, paths: RunPaths) -> Any:
    from trl.trainer.sft_config import SFTConfig

    options = trainer_options(config, paths)
    if config.mode == "pretrain":
        options.setdefault("dataset_text_field", "text")
    else:
        options.setdefault("completion_only_loss", True)
    try:
        return SFTConfig(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"training: {error}") from None


def _lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    try:
        return LoraConfig(task_type="CAUSAL_LM", **config.lora_fields())
    except (TypeError, ValueError) as error:
        raise ConfigError(f"lora: {error}") from None


_SHOWN = ("loss", "eval_loss")  # beside the progress bar, as they are logged


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def run_callbacks(config: TrainConfig, paths: RunPaths, progress: Progress) -> list[Any]:
    """The run log, the progress bar and early stopping, for every kind of run."""
    from transformers import EarlyStoppingCallback, TrainerCallback

    class RunLog(TrainerCallback):
        """Every logged metric as one JSON line; progress as a bar."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            progress.step(f"training {config.domain} ({config.mode})", total=state.max_steps)
            progress.advance(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            progress.advance(1)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            entry = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
            losses = [f"{k} {v:.3f}" for k, v in entry.items() if k in _SHOWN and _is_number(v)]
            if losses:
                progress.detail(", ".join(losses))
            if state.is_world_process_zero:  # one log, however many processes train
                with paths.log.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    return [
        RunLog(),
        EarlyStoppingCallback(
            early_stopping_patience=config.early_stopping_patience,
            early_stopping_threshold=config.early_stopping_threshold,
        ),
    ]


def build_trainer(
    config: TrainConfig,
    base: ModelRecord,
    paths: RunPaths,
    progress: Progress,
    extra_callbacks: list[Any] | None = None,
) -> Any:
    import datasets
    import transformers
    from trl.trainer.sft_trainer import SFTTrainer

    # One progress bar (ours) instead of a dozen from the libraries underneath.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    splits = load_splits(paths.data)
    train = to_examples(splits["train"], config.mode, config.system_prompt)
    validation = to_examples(splits["validation"], config.mode, config.system_prompt)
    if not train or not validation:
        raise ConfigError("the train and validation splits must both hold examples")
    trainer = trainer_sharing_openings(SFTTrainer)(
        model=str(base.path),
        args=_sft_config(config, paths),
        train_dataset=datasets.Dataset.from_list(train),
        eval_dataset=datasets.Dataset.from_list(validation),
        peft_config=_lora_config(config),
        callbacks=[*run_callbacks(config, paths, progress), *(extra_callbacks or [])],
    )
    trainer.remove_callback(transformers.PrinterCallback)  # metrics go to log.jsonl
    return trainer


def prepare_run(
    config: TrainConfig,
    paths: RunPaths,
    store: ModelStore,
    default_base: str,
    max_rank: int,
    scrub: Guard | None = None,
    progress: Progress | None = None,
    registry: AdapterRegistry | None = None,
) -> ModelRecord:
    """Check the config, then lay out the run folder: resolved config and data.

    A raw data file is prepared into the run first (cleaned, scrubbed with
    `scrub`'s input policy, split), with its data report kept beside it. A kto or
    dpo run resolves its `from_adapter` in `registry` first (pinned to `DOMAIN@vN`
    in config.yaml; its base model, brand voice and rules are the run's defaults).
    """
    if config.mode in PREFERENCE_MODES:
        # Imported here: preference.py builds on this module.
        from lorastack.train.preference import starting_adapter

        base = starting_adapter(config, registry, store, max_rank).base
    else:
        if config.base_model is None:
            config.base_model = default_base
        base = store.get(config.base_model)
    preflight(config, base, max_rank)
    if not paths.data.exists() and config.data.is_dir():
        check_prepared(config.data)
    if is_main_process():  # under a launcher, the others read what it lays out
        _lay_out(config, paths, scrub, progress)
    wait_for_everyone()
    return base


def _lay_out(
    config: TrainConfig, paths: RunPaths, scrub: Guard | None, progress: Progress | None
) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    if not paths.data.exists() and not config.data.is_dir():
        seed = int(config.training_fields().get("seed", 42))
        options = PrepareOptions(out=paths.data, seed=seed, paraphrases=config.paraphrases)
        prepare_dataset([config.data], options, scrub, progress)
    elif not paths.data.exists():
        copy_dataset(config.data, paths.data)
    paths.config.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def run_training(
    config: TrainConfig,
    paths: RunPaths,
    store: ModelStore,
    default_base: str,
    max_rank: int,
    *,
    resume: bool = False,
    scrub: Guard | None = None,
    progress: Progress | None = None,
    extra_callbacks: list[Any] | None = None,
    registry: AdapterRegistry | None = None,
) -> TrainResult:
    """Train (or resume) one run; returns the validated best adapter.

    `registry` is where a kto or dpo run finds the published adapter it starts from.
    """
    main = is_main_process()
    # Under a launcher, one progress bar: the main process's.
    progress = progress if progress is not None and main else NullProgress()
    started = time.monotonic()
    base = prepare_run(config, paths, store, default_base, max_rank, scrub, progress, registry)
    checkpoint: bool | str = False
    if resume:
        if not any(paths.checkpoints.glob("checkpoint-*")):
            raise ConfigError(f"{paths.root} has no checkpoint to resume from")
        checkpoint = True
    if config.mode in PREFERENCE_MODES:
        # Imported here: preference.py builds on this module.
        from lorastack.train.preference import build_trainer as build_preference_trainer
        from lorastack.train.preference import save_adapter

        trainer = build_preference_trainer(
            config, base, paths, progress, registry, store, max_rank, extra_callbacks
        )
        trainer.train(resume_from_checkpoint=checkpoint)
        if main:
            save_adapter(trainer, paths.adapter)
    else:
        trainer = build_trainer(config, base, paths, progress, extra_callbacks)
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(str(paths.adapter))  # every process calls it; the main one writes
    if main:
        # save_model adds the training arguments as a pickle; an adapter folder holds data only.
        (paths.adapter / "training_args.bin").unlink(missing_ok=True)
    wait_for_everyone()  # every process returns the adapter the main one saved
    state = trainer.state
    try:
        adapter = validate_adapter(paths.adapter, store, max_rank, base_model=base.name)
    except AdapterInvalid as error:  # a bug, not a user mistake: say so plainly
        raise ConfigError(f"the trained adapter failed validation: {error}") from None
    max_steps = state.max_steps
    result = TrainResult(
        paths=paths,
        adapter=adapter,
        steps=state.global_step,
        best_eval_loss=state.best_metric,
        stopped_early=state.global_step < max_steps,
        seconds=time.monotonic() - started,
        from_adapter=config.from_adapter,
    )
    if not main:
        return result
    paths.result.write_text(
        json.dumps(
            {
                "steps": result.steps,
                "max_steps": max_steps,
                "best_eval_loss": result.best_eval_loss,
                "best_checkpoint": state.best_model_checkpoint,
                "stopped_early": result.stopped_early,
                "seconds": round(result.seconds, 1),
                # kto, dpo: the version it started from, for publishing to record.
                **({"from_adapter": result.from_adapter} if result.from_adapter else {}),
            },
            indent=2,
        )
    )
    return result


def train_new_run(
    config: TrainConfig,
    runs_dir: Path,
    store: ModelStore,
    settings: Settings,
    *,
    scrub: Guard | None = None,
    progress: Progress | None = None,
    registry: AdapterRegistry | None = None,
) -> TrainResult:
    """Train `config` in a new run folder under `runs_dir`, with the settings' default base
    model and rank limit: what every command that trains on the user's behalf does."""
    paths = new_run_dir(runs_dir, config.domain)
    return run_training(
        config,
        paths,
        store,
        settings.base_model,
        settings.max_lora_rank,
        scrub=scrub,
        progress=progress,
        registry=registry,
    )
