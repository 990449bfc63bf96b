"""Preference training: a published adapter learns from feedback with TRL's KTO or DPO.

`kto` trains on answers marked good or bad (a thumbs up or down in the chat), `dpo` on
pairs of a preferred and a rejected answer to one prompt. Either starts from a published
version (`from_adapter`), which is also the reference policy the loss keeps the new
adapter close to, and saves an adapter of the same LoRA shape, served the same way.

Everything else is a run like any other (`train/trainer.py` calls in here): the same run
folder, checks, callbacks (run log, progress, early stopping on validation loss),
checkpoints, resume and search.

Records (a prepared dataset's splits), each field a message list (or, in every field
of a record, plain text, which TRL trains on without the chat template):

- dpo: `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`
- kto: `{"prompt": [messages], "completion": [messages], "label": true | false}`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.errors import AdapterInvalid, LorastackError
from lorastack.manifest import AdapterManifest
from lorastack.models import ModelRecord, ModelStore
from lorastack.precision import precision_options
from lorastack.progress import Progress
from lorastack.registry import AdapterRegistry
from lorastack.train.config import ConfigError, TrainConfig
from lorastack.train.run import RunPaths, load_splits
from lorastack.train.trainer import run_callbacks, trainer_options
from lorastack.validation import validate_adapter

REF_ADAPTER = "ref"
"""The frozen copy of the starting adapter TRL adds for the reference log-probabilities."""
TRAINED_ADAPTER = "default"

_ANSWERS = {"dpo": ("chosen", "rejected"), "kto": ("completion",)}
_DESCRIBED = {
    "dpo": 'preference pairs: {"prompt": [messages], "chosen": [messages], "rejected": [messages]}',
    "kto": 'labelled answers: {"prompt": [messages], "completion": [messages], "label": '
    "true or false}",
}


# -- the adapter it starts from -----------------------------------------------------


@dataclass(frozen=True)
class StartingAdapter:
    """The published version a preference run starts from."""

    ref: str
    """`DOMAIN@vN`."""
    folder: Path
    manifest: AdapterManifest
    base: ModelRecord
    """The run's base model: the one the version was trained on."""


def starting_adapter(
    config: TrainConfig, registry: AdapterRegistry | None, store: ModelStore, max_rank: int
) -> StartingAdapter:
    """Resolve the run's `from_adapter` in `registry` and check the run can start from it.

    Pins `config.from_adapter` to `DOMAIN@vN` (a resumed run starts where it first
    started, wherever `prod` points by then), defaults `config.base_model` to the
    version's base model and refuses another one, and fills in the brand voice and rules
    the config leaves out (`_inherit`).
    """
    _check_training(config)
    if registry is None:
        raise ConfigError(
            f"{config.mode} training starts from a published adapter and needs the registry"
        )
    try:
        manifest = registry.resolve(config.from_adapter or "")
    except LorastackError as error:
        raise ConfigError(f"from_adapter {config.from_adapter}: {error}") from None
    ref = f"{manifest.domain}@v{manifest.version}"
    trained_on = manifest.base_model
    if config.base_model is None:
        config.base_model = trained_on.name
    base = store.get(config.base_model)
    if base.checkpoint_sha256 != trained_on.checkpoint_sha256:
        other = (
            f"not on {base.name}"
            if base.name != trained_on.name
            else f"and {base.name} is another checkpoint now ({base.checkpoint_sha256[:12]}, "
            f"not {trained_on.checkpoint_sha256[:12]})"
        )
        raise ConfigError(
            f"refusing to train: {ref} was trained on base model {trained_on.name}, {other}; "
            "a LoRA adapter only fits the base model it was trained on"
        )
    folder = registry.version_dir(manifest.domain, manifest.version)
    try:
        validate_adapter(folder, store, max_rank, base_model=base.name)
    except AdapterInvalid as error:
        raise ConfigError(f"refusing to train from {ref}: {error}") from None
    config.from_adapter = ref
    _inherit(config, manifest)
    return StartingAdapter(ref=ref, folder=folder, manifest=manifest, base=base)


def _inherit(config: TrainConfig, manifest: AdapterManifest) -> None:
    """Fill in what the config leaves out from the version it starts from.

    A preference run republishes the same assistant: without its brand voice the
    manifest would serve it without one, and without its rules the gateway would stop
    checking them.
    """
    if not config.system_prompt:
        config.system_prompt = manifest.system_prompt
    if not config.rules:
        config.rules = list(manifest.rules)
    if manifest.domain == config.domain:
        if config.display_name is None:
            config.display_name = manifest.display_name
        if not config.description:
            config.description = manifest.description


def _check_training(config: TrainConfig) -> None:
    fields = config.training_fields()
    if config.mode == "kto" and int(fields.get("per_device_train_batch_size") or 1) < 2:
        raise ConfigError(
            "kto needs per_device_train_batch_size of 2 or more: its KL term compares each "
            "answer with the other prompts in its batch"
        )


# -- data ----------------------------------------------------------------------------


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    )


def _problem(record: dict[str, Any], mode: str) -> str | None:
    plain = isinstance(record.get("prompt"), str) and bool(record["prompt"])
    if not plain and not _is_messages(record.get("prompt")):
        return "`prompt` is not a list of messages"
    for name in _ANSWERS[mode]:
        value = record.get(name)
        if plain and not (isinstance(value, str) and value):
            return f"`{name}` is not text, as the prompt is"
        if not plain and not _is_messages(value):
            return f"`{name}` is not a list of messages"
    if mode == "kto" and not isinstance(record.get("label"), bool):
        return "`label` is not true or false"
    return None


def to_preference_examples(
    records: list[dict[str, Any]], mode: str, system_prompt: str = ""
) -> list[dict[str, Any]]:
    """The examples TRL's DPOTrainer (`dpo`) or KTOTrainer (`kto`) trains on.

    Prompts without a system message get `system_prompt` first, as in instruct mode:
    the adapter learns to answer in the voice it is served with.
    """
    if mode not in _ANSWERS:
        raise ConfigError(f"preference mode must be kto or dpo, got {mode!r}")
    examples = []
    for number, record in enumerate(records, start=1):
        problem = _problem(record, mode)
        if problem is not None:
            raise ConfigError(f"{mode} mode needs {_DESCRIBED[mode]}; record {number}: {problem}")
        prompt = record["prompt"]
        if system_prompt and isinstance(prompt, list) and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": system_prompt}, *prompt]
        example = {"prompt": prompt, **{name: record[name] for name in _ANSWERS[mode]}}
        if mode == "kto":
            example["label"] = record["label"]
        examples.append(example)
    return examples


# -- training --------------------------------------------------------------------------


def _preference_config(config: TrainConfig, paths: RunPaths) -> Any:
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.kto_config import KTOConfig

    options = trainer_options(config, paths)
    # The model is loaded here (`load_starting_model`), not by TRL from a name.
    options.pop("model_init_kwargs", None)
    try:
        return (DPOConfig if config.mode == "dpo" else KTOConfig)(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"training: {error}") from None


def base_dtype() -> Any:
    """The dtype of the frozen base, as SFT runs load it: bf16 on a GPU that computes in
    it, fp32 otherwise (a CPU with bf16 units autocasts over the fp32 base)."""
    import torch

    options = precision_options()
    return torch.bfloat16 if options["bf16"] and not options["use_cpu"] else torch.float32


def load_starting_model(base: ModelRecord, folder: Path) -> Any:
    """The base model with the starting adapter loaded as `default`, trainable."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=base_dtype())
    return PeftModel.from_pretrained(
        model, str(folder), adapter_name=TRAINED_ADAPTER, is_trainable=True
    )


def build_trainer(
    config: TrainConfig,
    base: ModelRecord,
    paths: RunPaths,
    progress: Progress,
    registry: AdapterRegistry | None,
    store: ModelStore,
    max_rank: int,
    extra_callbacks: list[Any] | None = None,
) -> Any:
    """TRL's DPOTrainer or KTOTrainer on the run's splits, starting from `from_adapter`."""
    import datasets
    import transformers
    from transformers import AutoTokenizer
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    start = starting_adapter(config, registry, store, max_rank)
    splits = load_splits(paths.data)
    train = to_preference_examples(splits["train"], config.mode, config.system_prompt)
    validation = to_preference_examples(splits["validation"], config.mode, config.system_prompt)
    if not train or not validation:
        raise ConfigError("the train and validation splits must both hold examples")
    args = _preference_config(config, paths)
    model = load_starting_model(base, start.folder)
    # ref_model=None on purpose. Given a PeftModel that already holds an adapter and no
    # ref_model, TRL 1.16 copies that adapter into a second, frozen one named "ref" (the
    # `model.add_adapter("ref", ...)` branch of DPOTrainer.__init__ and KTOTrainer.__init__)
    # and computes the reference log-probabilities with it (`use_adapter(model, "ref")`).
    # So the reference policy is the starting version, not the base model: the loss
    # rewards moving towards the feedback from what is served today, and no second model
    # is loaded.
    trainer = (DPOTrainer if config.mode == "dpo" else KTOTrainer)(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=datasets.Dataset.from_list(train),
        eval_dataset=datasets.Dataset.from_list(validation),
        processing_class=AutoTokenizer.from_pretrained(base.path),
        callbacks=[*run_callbacks(config, paths, progress), *(extra_callbacks or [])],
    )
    if REF_ADAPTER not in model.peft_config:
        # Another TRL would compute the reference with adapters off (the base model):
        # a different objective than the one documented; refuse rather than train it.
        raise ConfigError(
            f"{config.mode}: TRL did not add the reference adapter; the starting version "
            "would not be the reference policy (is TRL newer than 1.16?)"
        )
    trainer.remove_callback(transformers.PrinterCallback)  # metrics go to log.jsonl
    return trainer


def save_adapter(trainer: Any, folder: Path) -> None:
    """Save the trained adapter alone, as vLLM serves it.

    Not `trainer.save_model`: PEFT would save TRL's frozen "ref" copy too (in `ref/`),
    which is the starting version unchanged and nothing serves.
    """
    trainer.model.save_pretrained(str(folder), selected_adapters=[TRAINED_ADAPTER])
