"""Test a run's adapter against its base model and the domain's prod, then publish it if it
earned it.

On the test split, with the same masking as training: loss and perplexity of
the base model, of the adapter and of the domain's current `prod` version (when
there is one on the same base model); for `sft`, exact-match accuracy of greedy
completions; for `sft` and `instruct`, the brand rules' pass rates, and for
`instruct` the fact recall on reworded questions (`train/quality.py`) and a few
answers side by side. Writes `metrics.json`, `report.md`, `curves.png` and
`quality.png` into the run (`train/report.py`). Publishing applies the quality
gate (`train/gate.py`) unless forced. A kto or dpo run is measured the same way on
the data its starting version learnt from, plus preference accuracy and reward
margin on its held-out feedback (`train/preference_eval.py`).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from lorastack.errors import AdapterNotFound
from lorastack.fsutil import write_json_atomic
from lorastack.manifest import DEFAULT_ALIAS, AdapterManifest
from lorastack.models import ModelRecord, ModelStore
from lorastack.precision import precision_options
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.settings import PublishSettings
from lorastack.train import preference_eval, quality, report
from lorastack.train.config import PREFERENCE_MODES, ConfigError
from lorastack.train.gate import DEFAULT_FORCE_REASON, PublishRefused, gate_decision
from lorastack.train.run import (
    RunPaths,
    dataset_sha256,
    dataset_vocabulary,
    load_run_config,
    load_splits,
)
from lorastack.train.trainer import to_examples

MAX_ANSWER_TOKENS = 256  # the longest answer the quality pass lets a model give


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _generate_all(
    model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy answers to `prompts`, generated a batch at a time.

    Decoding a small model on a CPU is bound by reading its weights once per token,
    so a batch of 16 takes about as long as one answer.
    """
    import torch

    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        if isinstance(p, list)
        else str(p)
        for p in prompts
    ]
    answers: list[str] = []
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues each prompt from its own end
    try:
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            width = inputs["input_ids"].shape[1]
            answers += [
                tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output
            ]
    finally:
        tokenizer.padding_side = side
    return answers


def answer_prompts(
    paths: RunPaths, store: ModelStore, prompts: list[Any], max_new_tokens: int = 128
) -> list[str]:
    """The run's adapter's greedy answers to chat `prompts` (brand voice included), as the
    quality pass generates them."""
    base = store.get(load_run_config(paths).base_model or "")
    model, tokenizer = _with_adapter(base, paths.adapter)
    model.eval()
    return _generate_all(model, tokenizer, prompts, max_new_tokens)


def _with_adapter(base: ModelRecord, adapter: Path) -> tuple[Any, Any]:
    """The fp32 base model holding `adapter` as `default`, and its tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter), AutoTokenizer.from_pretrained(base.path)


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip().casefold()


def eval_trainer(
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    mode: str,
    scratch: Path,
    batch_size: int = 8,
    max_length: int = 512,
    on_batch: Callable[[], object] | None = None,
) -> Any:
    """A trainer that only evaluates, with the same masking as training in this mode;
    `on_batch` is called after each batch (a heartbeat for the progress display)."""
    import datasets
    import transformers
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    datasets.disable_progress_bars()
    args = SFTConfig(
        output_dir=str(scratch),
        report_to="none",
        disable_tqdm=True,
        **precision_options(),
        per_device_eval_batch_size=batch_size,
        max_length=max_length,
        **(
            {"dataset_text_field": "text"} if mode == "pretrain" else {"completion_only_loss": True}
        ),
    )
    examples_set = datasets.Dataset.from_list(examples)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=examples_set,  # required by TRL; nothing is trained here
        eval_dataset=examples_set,
        processing_class=tokenizer,
    )
    trainer.remove_callback(transformers.PrinterCallback)
    if on_batch is not None:
        beat = on_batch

        class EachBatch(transformers.TrainerCallback):
            def on_prediction_step(self, args: Any, state: Any, control: Any, **_: Any) -> None:
                beat()

        trainer.add_callback(EachBatch())
    return trainer


def prod_to_compare(
    registry: AdapterRegistry | None, domain: str, base: ModelRecord
) -> tuple[dict[str, Any] | None, Path | None]:
    """The domain's prod version as metrics record it, and its adapter folder when it can
    be compared (trained on the same base model)."""
    if registry is None:
        return None, None
    version = registry.index(domain).aliases.get(DEFAULT_ALIAS)
    if version is None:
        return None, None
    manifest = registry.manifest(domain, version)
    if manifest.base_model.checkpoint_sha256 != base.checkpoint_sha256:
        skipped = f"trained on base model {manifest.base_model.name}, not on {base.name}"
        return {"version": version, "skipped": skipped}, None
    return {"version": version}, registry.version_dir(domain, version)


@contextmanager
def _answering(model: Any, who: str) -> Iterator[None]:
    """`model` (a PeftModel holding the run's adapter as `default` and perhaps `prod` and
    `start`) answering as `who`: `base`, `adapter`, `prod` or `start`."""
    if who == "base":
        with model.disable_adapter():
            yield
        return
    model.set_adapter(who if who in ("prod", "start") else "default")
    try:
        yield
    finally:
        model.set_adapter("default")


def _answer_tokens(tokenizer: Any, examples: list[dict[str, Any]]) -> int:
    """Room for answers as long as the longest reference, and a little more."""
    longest = max(
        len(tokenizer(quality.text_of(e["completion"]), add_special_tokens=False)["input_ids"])
        for e in examples
    )
    return min(MAX_ANSWER_TOKENS, longest + 16)


def evaluate_run(
    paths: RunPaths,
    store: ModelStore,
    registry: AdapterRegistry | None = None,
    samples: int = 5,
    progress: Progress | None = None,
    *,
    examples: int = quality.DEFAULT_EXAMPLES,
    seed: int = quality.REWORDING_SEED,
) -> dict[str, Any]:
    """Measure base, adapter and (given `registry`) the domain's prod version on the run's
    test split; write the run's reports.

    `examples`: the test examples the instruct quality pass answers (rules and fact
    recall); `samples`: how many of them the report shows side by side.
    """
    import transformers

    progress = progress or NullProgress()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not (paths.adapter / "adapter_model.safetensors").is_file():
        raise ConfigError(f"{paths.root} has no trained adapter; run `lorastack train` first")
    if examples < 1:
        raise ConfigError("the quality pass needs at least one test example")
    config = load_run_config(paths)
    base = store.get(config.base_model or "")
    mode: str = config.mode
    feedback: preference_eval.Plan | None = None
    if config.mode in PREFERENCE_MODES:
        # Loss, rules and facts on the starting version's own data (forgetting), in its
        # mode; the preference metrics on the held-out feedback, below.
        feedback = preference_eval.plan(paths, config, registry)
        test, mode = feedback.test, feedback.mode
    else:
        test = to_examples(load_splits(paths.data)["test"], config.mode, config.system_prompt)
    if not test:
        raise ConfigError("the test split is empty: nothing to evaluate on")
    prod, prod_adapter = prod_to_compare(registry, config.domain, base)
    models = ["adapter", "base"] + (["prod"] if prod_adapter is not None else [])

    # Units: a loss pass per model, then a generation pass per model (sft: every
    # example; instruct: the quality examples as written, then reworded).
    generations = {"sft": 1, "instruct": 2}.get(mode, 0)
    progress.step(
        f"evaluating {config.domain} on {len(test)} test examples",
        len(models) * (1 + generations) + (1 if feedback is not None else 0),
    )
    model, tokenizer = _with_adapter(base, paths.adapter)
    if prod_adapter is not None:
        model.load_adapter(str(prod_adapter), adapter_name="prod")
    start_who = "prod"
    if feedback is not None and (prod_adapter is None or feedback.start_folder != prod_adapter):
        start_who = "start"
        model.load_adapter(str(feedback.start_folder), adapter_name="start")
    model.eval()
    fields = config.training_fields()
    losses: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        trainer = eval_trainer(
            model,
            tokenizer,
            test,
            mode,
            Path(scratch),
            batch_size=int(fields.get("per_device_eval_batch_size", 8)),
            max_length=int(fields.get("max_length", 512)),
            on_batch=lambda: progress.advance(0),
        )
        for who in models:
            with _answering(model, who):
                losses[who] = float(trainer.evaluate()["eval_loss"])
            progress.advance(1)

    results: dict[str, Any] = {
        "mode": config.mode,
        "test_examples": len(test),
        "adapter": {"loss": losses["adapter"], "perplexity": _perplexity(losses["adapter"])},
        "base": {"loss": losses["base"], "perplexity": _perplexity(losses["base"])},
        "prod": prod,
    }
    if prod is not None and "prod" in losses:
        prod.update(loss=losses["prod"], perplexity=_perplexity(losses["prod"]))

    def generate(max_new_tokens: int) -> quality.Generate:
        def answers(who: str, prompts: list[Any]) -> list[str]:
            with _answering(model, who):
                said = _generate_all(model, tokenizer, prompts, max_new_tokens)
            progress.advance(1)
            return said

        return answers

    side_by_side: list[dict[str, str]] = []
    reworded: list[dict[str, Any]] = []
    if mode == "sft":
        expected = [_first_line(quality.text_of(example["completion"])) for example in test]
        prompts = [example["prompt"] for example in test]
        answered = {who: generate(24)(who, prompts) for who in models}
        for who, said in answered.items():
            hits = sum(_first_line(a) == e for a, e in zip(said, expected, strict=True))
            results[who]["exact_match"] = hits / len(test)
        results["quality"] = {"examples": len(test)}
        results["rules"] = quality.rule_rates(config.rules, answered)
    if mode == "instruct":
        chosen = test[:examples]
        measured = quality.measure(
            chosen, config.rules, generate(_answer_tokens(tokenizer, chosen)), models, seed
        )
        results["quality"] = measured.summary()
        results["rules"] = measured.rules
        results["fact_recall"] = measured.fact_recall
        reworded = measured.reworded_samples(samples)
        for index, question in enumerate(measured.questions[:samples]):
            side_by_side.append(
                {"question": question}
                | {who: said[index] for who, said in measured.answers.items()}
            )
    if feedback is not None:
        results["preference"] = preference_eval.measure(
            feedback,
            config.mode,
            float(fields.get("beta", 0.1)),
            tokenizer,
            lambda who: _answering(model, who),
            model,
            start_who,
            max_length=int(fields.get("max_length", 512)),
            batch_size=int(fields.get("per_device_eval_batch_size", 8)),
            on_batch=lambda: progress.advance(0),
        )
        progress.advance(1)
    results["better_than_base"] = losses["adapter"] < losses["base"]
    train_result = paths.result
    if train_result.is_file():
        results["training"] = json.loads(train_result.read_text())

    write_json_atomic(paths.metrics, results)
    report.write_curves(paths)
    plotted = report.write_quality_plot(paths.root / report.QUALITY_FILE, results)
    text = report.render(config, results, side_by_side, plotted, reworded)
    if feedback is not None:
        text += preference_eval.render(results["preference"])
    paths.report.write_text(text, encoding="utf-8")
    return results


def _vocabulary(paths: RunPaths, registry: AdapterRegistry, started_from: str | None) -> list[str]:
    """The business's own names the new version's prompts keep: those its training data
    kept, and for a run tuning a published version further (feedback comes masked by the
    gateway with that version's), that version's too."""
    names = dataset_vocabulary(paths.data)
    if started_from is not None:
        # Removed since: its names are in the feedback data or nowhere.
        with suppress(AdapterNotFound):
            names += registry.resolve(started_from).vocabulary
    return list(dict.fromkeys(names))


def publish_run(
    paths: RunPaths,
    registry: AdapterRegistry,
    *,
    promote: bool = False,
    force: bool = False,
    reason: str | None = None,
    tolerances: PublishSettings | None = None,
    capture: bool | None = None,
    retention_days: int | None = None,
) -> AdapterManifest:
    """Publish the run's adapter with its manifest filled in, if it passes the quality gate
    (`train/gate.py`) against the base model and the domain's current prod version.

    `force` publishes past the gate; the manifest's `forced` records `reason` (and its
    metrics the problems it overrode). Raises `PublishRefused` otherwise. `capture` and
    `retention_days` set the domain's capture of served answers (None: as it is).
    """
    if not paths.metrics.is_file():
        raise ConfigError(f"{paths.root} has not been evaluated: run `lorastack eval` first")
    metrics = json.loads(paths.metrics.read_text())
    config = load_run_config(paths)
    current = registry.index(config.domain).aliases.get(DEFAULT_ALIAS)
    problems = gate_decision(metrics, current, tolerances or PublishSettings())
    if problems and not force:
        raise PublishRefused(config.domain, problems)
    forced = None
    if problems:
        forced = reason or DEFAULT_FORCE_REASON
        metrics = {**metrics, "gate": {"overridden": problems}}
    return registry.publish(
        paths.adapter,
        config.domain,
        display_name=config.display_name,
        description=config.description,
        system_prompt=config.system_prompt,
        base_model=config.base_model,
        dataset_sha256=dataset_sha256(paths.data),
        metrics=metrics,
        training=config.to_dict(),
        rules=config.rules,
        vocabulary=_vocabulary(paths, registry, config.from_adapter),
        forced=forced,
        started_from=config.from_adapter,
        promote=DEFAULT_ALIAS if promote else None,
        capture=capture,
        retention_days=retention_days,
    )
