"""`lorastack train`, `lorastack eval`, `lorastack publish`: from prepared data to the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lorastack.cli.adapters import CaptureOption, RetentionOption
from lorastack.cli.context import (
    err,
    guard_for,
    model_store,
    out,
    print_json,
    record_action,
    registry,
    settings,
)
from lorastack.db import database_url
from lorastack.progress import progress_display
from lorastack.train.config import MODES, ConfigError, TrainConfig, build_config, load_config
from lorastack.train.defaults_bench import (
    BrandRuns,
    DefaultsReport,
    Goals,
    measure_brand,
    percent,
    with_seed,
)
from lorastack.train.defaults_bench import write_report as write_defaults_report
from lorastack.train.distributed import agreed, distributed, is_main_process
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.gate import DEFAULT_FORCE_REASON
from lorastack.train.quality import DEFAULT_EXAMPLES
from lorastack.train.quickstart import DEMO_DIR, DEMO_ROOT, find_domains
from lorastack.train.run import RunPaths, latest_run, load_run_config, new_run_dir, run_from
from lorastack.train.trainer import run_training

TEST_BRANDS = tuple(
    DEMO_ROOT / "tests" / "data" / brand / "train.yaml" for brand in ("trailhead", "harborline")
)
"""Brands written for the tests (in a checkout only): the defaults were tuned on trailhead;
harborline is held out from that tuning."""


def train(
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Training YAML (see examples/train/).")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Business domain name.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Prepared dataset folder, or a raw data file.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(MODES)}.")] = None,
    from_adapter: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="kto, dpo: the published adapter to start from (DOMAIN@prod, DOMAIN@vN); "
            "also the domain, unless --domain says otherwise.",
        ),
    ] = None,
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
        typer.Option(
            "--search",
            min=1,
            help="Try N hyper-parameter sets in all (Optuna's TPE, trials pruned on "
            "validation loss) and keep the best. N is the study's total: every process "
            "on the same --study and --study-storage runs a share of the N.",
        ),
    ] = None,
    search_budget_s: Annotated[
        float | None,
        typer.Option(min=1, help="Stop starting new trials after this long (this process)."),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            help="--search: the study to run or join (default: the domain and a hash of "
            "the config, data and rank limit, the same on every machine)."
        ),
    ] = None,
    study_storage: Annotated[
        str | None,
        typer.Option(
            help="--search: where the study is kept, a database URL (default: the lorastack "
            "database, LORASTACK_DATABASE_URL or $LORASTACK_HOME/lorastack.db); "
            "postgresql://... for workers on several machines."
        ),
    ] = None,
    search_seed: Annotated[
        int | None,
        typer.Option(help="--search: the sampler's seed (default: the config's seed)."),
    ] = None,
) -> None:
    """Fine-tune a LoRA adapter; prints the run folder last."""
    config_settings = settings()
    runs = config_settings.runs_dir
    if resume:
        if domain is None and config_file is None:
            raise ConfigError("--resume needs --domain (or --config) to find the run")
        name = domain or load_config(config_file).domain  # type: ignore[arg-type]
        # Under a launcher, every process resumes the run the main process found.
        paths = RunPaths(runs / run_name) if run_name else agreed(latest_run(runs, name))
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
            "from_adapter": from_adapter,
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
        # The main process's answer: it may already have laid the folder out.
        if agreed(paths.config.exists()):
            raise ConfigError(f"{paths.root} already exists; pick another --run-name or --resume")
    if search_trials is not None and distributed():
        raise ConfigError(
            "--search runs one process per worker; start it without torchrun or accelerate"
        )
    if search_trials is not None and resume:
        raise ConfigError("--search and --resume cannot be combined")
    if search_trials is None and (study, study_storage, search_seed) != (None, None, None):
        raise ConfigError("--study, --study-storage and --search-seed go with --search")
    scrub = guard_for(config.domain)
    with progress_display(err) as progress:
        if search_trials is not None:
            # Imported here: Optuna takes a second to import, which only a search should pay.
            import optuna

            from lorastack.train.search import search

            # lorastack reports the trials itself (progress, the table below).
            optuna.logging.set_verbosity(optuna.logging.ERROR)
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
                registry=registry(),
                study_name=study,
                storage=study_storage or database_url(config_settings),
                seed=search_seed,
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
                registry=registry(),
            )
    if not is_main_process():
        return  # the main process reports the run
    if search_trials is not None:
        _print_search(paths)
    stopped = " (stopped early)" if result.stopped_early else ""
    err.print(
        f"{result.steps} steps in {result.seconds:.0f} s{stopped}; best validation loss "
        f"{result.best_eval_loss if result.best_eval_loss is not None else 'n/a'}"
    )
    out.print(paths.root)


def _print_search(paths: RunPaths) -> None:
    """The study's trials as a table, then which one the run folder holds."""
    from lorastack.train.search import SEARCH_FILE, SEARCHED, describe

    summary = json.loads((paths.root / SEARCH_FILE).read_text())
    table = Table("trial", "state", "validation loss", "parameters", "steps", "host")
    for trial in summary["trials"]:
        loss = trial.get("best_eval_loss")
        params = {k: trial[k] for k in SEARCHED if k in trial}
        best = " (best)" if trial["trial"] == summary["best"] else ""
        table.add_row(
            trial["trial"] + best,
            trial["state"],
            "-" if loss is None else f"{loss:.4f}",
            describe(params),
            str(trial.get("steps") or "-"),
            trial.get("host") or "-",
        )
    err.print(f"study {summary['study']} in {summary['storage']}")
    err.print(table)
    if summary["kept"] != summary["best"]:
        err.print(
            f"the study's best, {summary['best']}, is in {summary['best_run']} on "
            f"{summary['best_host']}, which this machine cannot read; "
            f"this run holds {summary['kept']}, the best here"
        )


def evaluate(
    run: Annotated[Path, typer.Argument(help="The run folder `lorastack train` printed.")],
    samples: Annotated[int, typer.Option(min=0, help="Side-by-side answers to show.")] = 5,
    quality_examples: Annotated[
        int,
        typer.Option(
            "--quality-examples",
            min=1,
            help="Test examples answered for the brand rules and fact recall (instruct).",
        ),
    ] = DEFAULT_EXAMPLES,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Base model vs adapter vs the domain's prod on the test split; writes report.md,
    metrics.json, curves.png and quality.png."""
    paths = run_from(run)
    with progress_display(err) as progress:
        metrics = evaluate_run(
            paths, model_store(), registry(), samples, progress, examples=quality_examples
        )
    if as_json:
        print_json(metrics)
        return
    base, adapter, prod = metrics["base"], metrics["adapter"], metrics.get("prod") or {}
    compared = "loss" in prod
    versus = f", prod v{prod['version']} {prod['loss']:.4f}" if compared else ""
    out.print(f"test loss: base {base['loss']:.4f}, adapter {adapter['loss']:.4f}{versus}")
    if "exact_match" in adapter:
        out.print(
            f"exact match: base {base['exact_match']:.1%}, adapter {adapter['exact_match']:.1%}"
            + (f", prod {prod['exact_match']:.1%}" if compared else "")
        )
    models = [who for who in ("base", "adapter", "prod") if who in metrics.get("rules", {})]
    for label in metrics.get("rules", {}).get("adapter", {}):
        rates = ", ".join(f"{who} {metrics['rules'][who][label]:.0%}" for who in models)
        out.print(f"rule {label}: {rates}")
    recall = metrics.get("fact_recall", {})
    if any(value is not None for value in recall.values()):
        values = ", ".join(
            f"{who} {recall[who]:.0%}" for who in models if recall.get(who) is not None
        )
        out.print(f"fact recall (reworded questions): {values}")
    preference = metrics.get("preference")
    if preference:  # kto, dpo runs
        adapter_rates, start_rates = preference["adapter"], preference["start"]
        out.print(
            f"preference accuracy (held-out feedback): adapter {adapter_rates['accuracy']:.0%}, "
            f"{preference['started_from']} {start_rates['accuracy']:.0%}"
        )
        unreachable = preference["loss_data"].get("original_unreachable")
        if unreachable:
            err.print(f"loss, rules and facts measured on the feedback: {unreachable}")
    out.print(paths.report)


def publish(
    run: Annotated[Path, typer.Argument(help="An evaluated run folder.")],
    promote: Annotated[bool, typer.Option("--promote", help="Point prod at it.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Publish even if the quality gate refuses it (give a --reason)."
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(help="Why it is published past the gate; recorded in the manifest."),
    ] = None,
    capture: CaptureOption = None,
    retention_days: RetentionOption = None,
) -> None:
    """Publish a run's adapter to the registry if it passes the quality gate against the base
    model and the domain's prod (prints NAME@vN last)."""
    if reason is not None and not force:
        raise ConfigError("--reason goes with --force (it records why the gate was overridden)")
    manifest = publish_run(
        run_from(run),
        registry(),
        promote=promote,
        force=force,
        reason=reason,
        tolerances=settings().publish,
        capture=capture,
        retention_days=retention_days,
    )
    details = {"promote": promote, "forced": manifest.forced, "capture": capture}
    record_action("adapters.publish", manifest.ref, details)
    if manifest.forced is not None:
        overridden = "; ".join(manifest.metrics.get("gate", {}).get("overridden", []))
        err.print(f"published past the quality gate ({overridden})")
        if manifest.forced == DEFAULT_FORCE_REASON:
            err.print(f"recorded reason: {manifest.forced}; pass --reason next time")
        else:
            err.print(f"recorded reason: {manifest.forced}")
    out.print(manifest.ref)


def evaluate_defaults(
    configs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Brand training YAMLs (default: the demo's chat brands, and the test "
            "brands tests/data/trailhead and tests/data/harborline when run from a checkout)."
        ),
    ] = None,
    quality_examples: Annotated[
        int,
        typer.Option("--quality-examples", min=1, help="Test questions answered per brand."),
    ] = DEFAULT_EXAMPLES,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report folder (default: $LORASTACK_HOME/bench/quality-<time>)."
        ),
    ] = None,
    seeds: Annotated[
        list[int] | None,
        typer.Option(
            "--seed",
            help="Train each brand once per seed (repeat the option; the seed also draws the "
            "split) and hold it to the goals on the mean (default: the config's seed).",
        ),
    ] = None,
) -> None:
    """Train each brand as configured and measure its rules and fact recall against the
    goals (rules on >= 90% of unseen questions, facts on >= 80% of reworded ones, training
    in <= 5 minutes); writes quality.json and quality.md, prints the folder last."""
    if seeds and len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed given twice with the same value: {seeds}")
    config_settings = settings()
    brands = _brand_configs(configs)
    folder = (out_dir or config_settings.home / "bench" / f"quality-{stamp()}").absolute()
    report = DefaultsReport(Goals())
    with progress_display(err) as progress:
        for config in brands:
            seeded = [with_seed(config, seed) for seed in seeds] if seeds else [config]
            for index, run_config in enumerate(seeded):
                seed = run_config.training_fields()["seed"]
                progress.step(f"{config.domain} (seed {seed}): training, then measuring")
                run = measure_brand(
                    run_config,
                    config_settings,
                    model_store(),
                    folder / "runs",
                    guard_for(config.domain),
                    progress,
                    quality_examples,
                )
                report.add(run, new_brand=index == 0)
                write_defaults_report(report, folder)  # each run's numbers survive a crash
    for brand in report.brands:
        out.print(_brand_line(brand, report.goals))
    out.print(str(folder), highlight=False)


def _brand_line(brand: BrandRuns, goals: Goals) -> str:
    mean = brand.mean()
    misses = mean.misses(goals)
    rules = ", ".join(
        f"{label} {percent(rate, goals.rule_rate)}" for label, rate in mean.rules.items()
    )
    recall = brand.recall(goals)
    if len(brand.runs) > 1:
        recall += f", mean of seeds {brand.seeds()}"
    verdict = "goals met" if not misses else "missed: " + "; ".join(misses)
    return (
        f"{brand.domain}: trained in {mean.train_seconds:.0f} s ({mean.steps} steps); "
        f"rules {rules or '-'}; fact recall {recall}; {verdict}"
    )


def stamp() -> str:
    import time

    return time.strftime("%Y%m%d-%H%M%S")


def _brand_configs(paths: list[Path] | None) -> list[TrainConfig]:
    if paths:
        configs = [load_config(path) for path in paths]
    else:
        configs = [d.config for d in find_domains(DEMO_DIR) if d.config.mode == "instruct"]
        configs += [load_config(brand) for brand in TEST_BRANDS if brand.is_file()]
    return [with_brand_data(config) for config in configs]


def with_brand_data(config: TrainConfig) -> TrainConfig:
    """`config` with a relative `data` path found from the working folder or, failing
    that, from the demo's root (a benchmark runs the shipped brands from anywhere)."""
    if not config.data.is_absolute() and not config.data.exists():
        config.data = DEMO_ROOT / config.data
    if not config.data.exists():
        raise ConfigError(f"{config.domain}: data {config.data} does not exist")
    return config
