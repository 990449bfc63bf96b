"""Test a run's adapter against its base model, then publish it if it earned it.

On the test split, with the same masking as training: loss and perplexity of
the base model and of the adapter; for `sft`, exact-match accuracy of greedy
completions; for `instruct`, a few answers side by side. Writes `metrics.json`,
`report.md` and `curves.png` into the run. Publishing refuses an adapter that
does worse than the base model unless forced.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorastack.fsutil import write_json_atomic
from lorastack.manifest import DEFAULT_ALIAS, AdapterManifest
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.train.config import ConfigError, TrainConfig
from lorastack.train.run import (
    CURVES_FILE,
    RunPaths,
    dataset_sha256,
    load_run_config,
    load_splits,
    read_jsonl,
)
from lorastack.train.trainer import precision_options, to_examples


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


def _completion_text(completion: Any) -> str:
    if isinstance(completion, list):
        return " ".join(str(m.get("content", "")) for m in completion)
    return str(completion)


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


def evaluate_run(
    paths: RunPaths, store: ModelStore, samples: int = 5, progress: Progress | None = None
) -> dict[str, Any]:
    """Measure base and adapter on the run's test split; write the run's reports."""
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = progress or NullProgress()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not (paths.adapter / "adapter_model.safetensors").is_file():
        raise ConfigError(f"{paths.root} has no trained adapter; run `lorastack train` first")
    config = load_run_config(paths)
    base = store.get(config.base_model or "")
    test = to_examples(load_splits(paths.data)["test"], config.mode, config.system_prompt)
    if not test:
        raise ConfigError("the test split is empty: nothing to evaluate on")

    # Units: the two loss passes, then the answers of each (sft: every example; instruct:
    # the samples shown side by side).
    passes = 4 if config.mode in ("sft", "instruct") else 2
    progress.step(f"evaluating {config.domain} on {len(test)} test examples", passes)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model: Any = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32), paths.adapter
    )
    model.eval()
    fields = config.training_fields()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = eval_trainer(
            model,
            tokenizer,
            test,
            config.mode,
            Path(scratch),
            batch_size=int(fields.get("per_device_eval_batch_size", 8)),
            max_length=int(fields.get("max_length", 512)),
            on_batch=lambda: progress.advance(0),
        )
        adapter_loss = float(trainer.evaluate()["eval_loss"])
        progress.advance(1)
        with model.disable_adapter():
            base_loss = float(trainer.evaluate()["eval_loss"])
        progress.advance(1)

    results: dict[str, Any] = {
        "mode": config.mode,
        "test_examples": len(test),
        "adapter": {"loss": adapter_loss, "perplexity": _perplexity(adapter_loss)},
        "base": {"loss": base_loss, "perplexity": _perplexity(base_loss)},
    }
    if config.mode == "sft":
        expected = [_first_line(_completion_text(example["completion"])) for example in test]
        prompts = [example["prompt"] for example in test]
        answers = {"adapter": _generate_all(model, tokenizer, prompts, 24)}
        progress.advance(1)
        with model.disable_adapter():
            answers["base"] = _generate_all(model, tokenizer, prompts, 24)
        progress.advance(1)
        for who, said in answers.items():
            hits = sum(_first_line(a) == e for a, e in zip(said, expected, strict=True))
            results[who]["exact_match"] = hits / len(test)
    side_by_side = []
    if config.mode == "instruct":
        shown = test[:samples]
        prompts = [example["prompt"] for example in shown]
        adapter_answers = _generate_all(model, tokenizer, prompts, 64)
        progress.advance(1)
        with model.disable_adapter():
            base_answers = _generate_all(model, tokenizer, prompts, 64)
        progress.advance(1)
        for example, adapter_answer, base_answer in zip(
            shown, adapter_answers, base_answers, strict=True
        ):
            question = _completion_text([m for m in example["prompt"] if m["role"] == "user"][-1:])
            side_by_side.append(
                {"question": question, "base": base_answer, "adapter": adapter_answer}
            )
    results["better_than_base"] = adapter_loss < base_loss
    train_result = paths.result
    if train_result.is_file():
        results["training"] = json.loads(train_result.read_text())

    write_json_atomic(paths.metrics, results)
    _write_curves(paths)
    paths.report.write_text(_report(config, results, side_by_side), encoding="utf-8")
    return results


def _write_curves(paths: RunPaths) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = read_jsonl(paths.log) if paths.log.is_file() else []
    train = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    validation = [(e["step"], e["eval_loss"]) for e in entries if "eval_loss" in e]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss")
    if validation:
        axes.plot(*zip(*validation, strict=True), marker="o", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(paths.curves, dpi=100)
    plt.close(figure)


def _report(
    config: TrainConfig, results: dict[str, Any], side_by_side: list[dict[str, str]]
) -> str:
    adapter, base = results["adapter"], results["base"]
    lines = [
        f"# {config.domain}: {config.mode} adapter on {config.base_model}",
        "",
        f"Test split: {results['test_examples']} examples.",
        "",
        "| model | loss | perplexity |" + (" exact match |" if "exact_match" in adapter else ""),
        "|---|---|---|" + ("---|" if "exact_match" in adapter else ""),
    ]
    for name, row in (("base", base), ("adapter", adapter)):
        cells = f"| {name} | {row['loss']:.4f} | {row['perplexity']:.2f} |"
        if "exact_match" in row:
            cells += f" {row['exact_match']:.1%} |"
        lines.append(cells)
    verdict = "better than" if results["better_than_base"] else "NOT better than"
    lines += ["", f"The adapter is **{verdict}** the base model on test loss.", ""]
    lines += [f"![training and validation loss]({CURVES_FILE})", ""]
    for sample in side_by_side:
        lines += [
            f"**Q:** {sample['question']}",
            "",
            f"- base: {sample['base']}",
            f"- adapter: {sample['adapter']}",
            "",
        ]
    return "\n".join(lines)


def publish_run(
    paths: RunPaths, registry: AdapterRegistry, *, promote: bool = False, force: bool = False
) -> AdapterManifest:
    """Publish the run's adapter with its manifest filled in; refuse one worse than the base."""
    if not paths.metrics.is_file():
        raise ConfigError(f"{paths.root} has not been evaluated: run `lorastack eval` first")
    metrics = json.loads(paths.metrics.read_text())
    if not metrics.get("better_than_base") and not force:
        raise ConfigError(
            f"the adapter does worse than the base model on the test split (loss "
            f"{metrics['adapter']['loss']:.4f} vs {metrics['base']['loss']:.4f}); "
            "publish anyway with --force"
        )
    config = load_run_config(paths)
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
        promote=DEFAULT_ALIAS if promote else None,
    )
