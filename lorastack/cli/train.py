"""`lorastack train`, `lorastack eval`, `lorastack publish`: from prepared data to the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lorastack.cli.context import err, guard_for, model_store, out, print_json, registry, settings
from lorastack.progress import progress_display
from lorastack.train.config import MODES, ConfigError, build_config, load_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.run import RunPaths, latest_run, load_run_config, new_run_dir, run_from
from lorastack.train.search import search
from lorastack.train.trainer import run_training


def train(
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Training YAML (see examples/train/).")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Business domain name.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Prepared dataset folder, or a raw data file.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(MODES)}.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model name.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    epochs: Annotated[float | None, typer.Option(min=0.01, help="Number of epochs.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="The brand voice.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run folder name under runs/.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the domain's last run from its checkpoint.")
    ] = False,
    search_trials: Annotated[
        int | None,
        typer.Option("--search", min=1, help="Try N hyper-parameter sets; keep the best."),
    ] = None,
    search_budget_s: Annotated[
        float | None, typer.Option(min=1, help="Stop starting new trials after this long.")
    ] = None,
) -> None:
    """Fine-tune a LoRA adapter; prints the run folder last."""
    config_settings = settings()
    runs = config_settings.runs_dir
    if resume:
        if domain is None and config_file is None:
            raise ConfigError("--resume needs --domain (or --config) to find the run")
        name = domain or load_config(config_file).domain  # type: ignore[arg-type]
        paths = RunPaths(runs / run_name) if run_name else latest_run(runs, name)
        config = load_run_config(paths)
    else:
        training: dict[str, Any] = {}
        if max_steps is not None:
            training["max_steps"] = max_steps
        if epochs is not None:
            training["num_train_epochs"] = epochs
        overrides: dict[str, Any] = {
            "domain": domain,
            "data": data,
            "mode": mode,
            "base_model": base_model,
            "system_prompt": system_prompt,
            "training": training,
        }
        config = (
            load_config(config_file, overrides)
            if config_file is not None
            else build_config({}, overrides, source="command line")
        )
        paths = RunPaths(runs / run_name) if run_name else new_run_dir(runs, config.domain)
        if paths.config.exists():
            raise ConfigError(f"{paths.root} already exists; pick another --run-name or --resume")
    if search_trials is not None and resume:
        raise ConfigError("--search and --resume cannot be combined")
    scrub = guard_for(config.domain)
    with progress_display(err) as progress:
        if search_trials is not None:
            result = search(
                config,
                paths,
                model_store(),
                config_settings.base_model,
                config_settings.max_lora_rank,
                search_trials,
                search_budget_s,
                scrub,
                progress,
            )
        else:
            result = run_training(
                config,
                paths,
                model_store(),
                config_settings.base_model,
                config_settings.max_lora_rank,
                resume=resume,
                scrub=scrub,
                progress=progress,
            )
    stopped = " (stopped early)" if result.stopped_early else ""
    err.print(
        f"{result.steps} steps in {result.seconds:.0f} s{stopped}; best validation loss "
        f"{result.best_eval_loss if result.best_eval_loss is not None else 'n/a'}"
    )
    out.print(paths.root)


def evaluate(
    run: Annotated[Path, typer.Argument(help="The run folder `lorastack train` printed.")],
    samples: Annotated[int, typer.Option(min=0, help="Side-by-side answers to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Base model vs adapter on the test split; writes report.md, metrics.json, curves.png."""
    paths = run_from(run)
    with progress_display(err) as progress:
        metrics = evaluate_run(paths, model_store(), samples, progress)
    if as_json:
        print_json(metrics)
        return
    base, adapter = metrics["base"], metrics["adapter"]
    out.print(f"test loss: base {base['loss']:.4f}, adapter {adapter['loss']:.4f}")
    if "exact_match" in adapter:
        out.print(
            f"exact match: base {base['exact_match']:.1%}, adapter {adapter['exact_match']:.1%}"
        )
    out.print(paths.report)


def publish(
    run: Annotated[Path, typer.Argument(help="An evaluated run folder.")],
    promote: Annotated[bool, typer.Option("--promote", help="Point prod at it.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Publish even if it does worse than the base model.")
    ] = False,
) -> None:
    """Publish a run's adapter to the registry (prints NAME@vN last)."""
    manifest = publish_run(run_from(run), registry(), promote=promote, force=force)
    out.print(manifest.ref)
