"""`lorastack bench`: serving, guardrail and training speed, as ratios measured in one run."""

from __future__ import annotations

import asyncio
import functools
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastack.bench.cases import ServingPlan, ServingStack, run_serving
from lorastack.bench.engine_ops import (
    OURS,
    EngineReport,
    EngineVariant,
    engine_variants,
    run_engine_ops,
    write_adapters,
)
from lorastack.bench.errors import BenchError
from lorastack.bench.machine import load_average, machine_info, process_tree_rss_mib
from lorastack.bench.report import MARKDOWN_FILE, BenchReport, write_report
from lorastack.bench.stack import (
    GatewayProcess,
    create_limited_key,
    free_port,
    prepare_home,
    process_env,
    run_guard_bench,
    unique,
)
from lorastack.bench.training import TrainingSpec, run_variants
from lorastack.cli.context import err, model_store, out, settings
from lorastack.errors import LorastackError
from lorastack.models import ModelRecord
from lorastack.progress import Progress, progress_display
from lorastack.serve.engine import EngineProcess, build_launch
from lorastack.settings import Settings

DEFAULT_LEVELS = [1, 8]
# Engines with fewer adapters per batch than the default, in the engine part.
MAX_LORAS_SWEEP = (2, 4)


class Part(StrEnum):
    SERVE = "serve"
    ENGINE = "engine"
    GUARD = "guard"
    TRAIN = "train"


def _count(quick: bool, requests: int | None, concurrency: int) -> int:
    if requests is not None:
        return requests
    return max(2, concurrency) if quick else max(8, 4 * concurrency)


def _training_spec(quick: bool, seed: int) -> TrainingSpec:
    # About 5 tokens per synthetic word with SmolLM2's tokenizer: texts of 15 to 250 tokens,
    # so that padding to the longest in a batch costs what it costs on real chat data.
    if quick:
        return TrainingSpec(steps=2, batch=2, max_length=128, min_words=3, max_words=25, seed=seed)
    return TrainingSpec(steps=6, batch=4, max_length=256, min_words=3, max_words=50, seed=seed)


def _engine_settings(config: Settings) -> Settings:
    # A port of its own: a `lorastack serve` on this machine keeps the default one.
    engine = config.engine.model_copy(update={"port": free_port()})
    return config.model_copy(update={"engine": engine})


def _serve(
    config: Settings,
    record: ModelRecord,
    scratch: Path,
    folder: Path,
    plan: ServingPlan,
    domains: int,
    report: BenchReport,
    progress: Progress,
) -> None:
    config = _engine_settings(config)
    launch = build_launch(config.engine, record, config.max_lora_rank)
    engine = EngineProcess(launch, folder / "engine.log", config.engine.startup_timeout_s)
    progress.step(f"starting vLLM on {record.name} (log: {engine.log_path})")
    engine.start()
    try:
        # The adapters are written while vLLM boots.
        home = prepare_home(
            scratch / "home",
            record.name,
            record.path,
            domains,
            config.max_lora_rank,
            plan.seed,
            progress,
        )
        admin_key, client_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        limited_key = create_limited_key(home.home)
        gateways = [
            GatewayProcess(
                home,
                engine.url,
                guardrails,
                folder / f"gateway-{'guarded' if guardrails else 'unguarded'}.log",
                admin_key,
                client_key,
            )
            for guardrails in (False, True)
        ]
        for gateway in gateways:
            gateway.start()
        try:
            progress.step("waiting for vLLM and the two gateways")
            engine.wait_ready()
            for gateway in gateways:
                gateway.wait_ready()
            stack = ServingStack(
                engine_url=engine.url,
                gateway_url=gateways[0].url,
                guarded_url=gateways[1].url,
                base_model=record.name,
                domains=home.domains,
                adapter_dirs=home.adapter_dirs,
                client_key=client_key,
                admin_key=admin_key,
                limited_key=limited_key,
            )
            report.serving = []
            asyncio.run(run_serving(stack, plan, progress, on_case=report.serving.append))
        finally:
            for gateway in gateways:
                gateway.stop()
    finally:
        engine.stop()


def _lora_modules(at_start: dict[str, Path]) -> list[str]:
    if not at_start:
        return []
    return ["--lora-modules", *(f"{name}={path}" for name, path in at_start.items())]


@contextmanager
def _variant_engine(
    config: Settings,
    record: ModelRecord,
    folder: Path,
    variant: EngineVariant,
    at_start: dict[str, Path],
) -> Iterator[EngineProcess]:
    """An engine of the engine part: the deployed settings but for what the variant sets."""
    engine = config.engine.model_copy(
        update={
            "port": free_port(),
            "max_loras": variant.max_loras,
            "max_cpu_loras": max(config.engine.max_cpu_loras, variant.max_loras),
            "lora_ops": variant.lora_ops or config.engine.lora_ops,
            "lora_compile": variant.lora_compile,
            "extra_args": [*config.engine.extra_args, *_lora_modules(at_start)],
        }
    )
    launch = build_launch(engine, record, config.max_lora_rank, lora=variant.lora_ops is not None)
    log = folder / f"engine-{variant.name}.log"
    with EngineProcess(launch, log, config.engine.startup_timeout_s) as process:
        yield process


def _engine_ops(
    config: Settings,
    record: ModelRecord,
    scratch: Path,
    folder: Path,
    plan: ServingPlan,
    domains: int,
    quick: bool,
    report: BenchReport,
    progress: Progress,
) -> None:
    progress.step(f"writing {domains} random LoRA adapters of each shape")
    adapters = write_adapters(record.path, scratch / "engine-adapters", domains, plan.seed)
    variants = engine_variants(config.engine.max_loras, MAX_LORAS_SWEEP)
    if quick:
        # lorastack's ops only, the default engine's: a full run compares them with vLLM's
        # (tests/integration/test_cpu_lora_engine.py checks they give the same answers).
        variants = [v for v in variants if v.name == OURS]
    report.engine = EngineReport(cases=[], memory_mib={})

    run_engine_ops(
        functools.partial(_variant_engine, config, record, folder),
        variants,
        record.name,
        adapters,
        plan,
        process_tree_rss_mib,
        report.engine,
        progress,
    )


def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A short run for CI: fewer requests (one round per stream), 16-token "
            "answers, 20 scans, 2 training steps, the default engine only.",
        ),
    ] = False,
    concurrency: Annotated[
        list[int] | None,
        typer.Option(
            min=1, help="Concurrent streams; repeat for several levels (default 1 and 8)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Report folder (default: $LORASTACK_HOME/bench/<timestamp>).",
            file_okay=False,
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Requests per serving case (default: 4 per stream, at least 8; --quick: "
            "one per stream, at least 2).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(min=2, help="Tokens per answer, exactly (default 64; --quick: 16)."),
    ] = None,
    domains: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Domains in the mixed workload (default: one more than the gateway keeps "
            "loaded, so that adapters swap).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the prompts, adapters and data.")] = 0,
    only: Annotated[
        list[Part] | None,
        typer.Option(help="Run only this part; repeat for several (default: all)."),
    ] = None,
) -> None:
    """Measure serving, guardrails and training in one run; print the targets met or missed.

    Serving: one vLLM engine on the bundled model, measured directly, through the gateway
    without guardrails and with them, each with the base model, one random domain adapter
    and N domains mixed, at each concurrency level; then with adapters promoted and unloaded
    during the run. Engine: vLLM's CPU LoRA ops against lorastack's, on engines of their
    own, with both adapter shapes, LoRA off, and more adapters per batch. Guard: scan time
    per message on one core. Train: tokens per second and peak memory, padded vs packed.
    Writes bench.json, bench.md and PNG plots.
    """
    config = settings()
    parts = set(only or list(Part))
    levels = unique(concurrency or DEFAULT_LEVELS)
    tokens = max_tokens or (16 if quick else 64)
    capacity = config.gateway.max_adapters or config.engine.max_cpu_loras
    mixed = domains or capacity + 1
    if Part.SERVE in parts and mixed <= config.engine.max_loras:
        raise BenchError(
            f"--domains {mixed} would not make adapters swap: use more than the engine's "
            f"max_loras ({config.engine.max_loras})"
        )
    started = datetime.now(UTC)
    folder = (out_dir or config.home / "bench" / started.strftime("%Y%m%d-%H%M%S")).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    spec = _training_spec(quick, seed)
    guard_repeats = 20 if quick else 200
    counts = {level: _count(quick, requests, level) for level in levels}
    plan = ServingPlan(
        levels=levels,
        requests=counts.__getitem__,
        max_tokens=tokens,
        seed=seed,
        swap_interval_s=0.2 if quick else 0.5,
    )
    report = BenchReport(
        started_at=started.isoformat(timespec="seconds"),
        machine=machine_info(),
        settings={
            "quick": quick,
            "parts": sorted(p.value for p in parts),
            "concurrency": list(levels),
            "requests_per_case": {str(k): v for k, v in counts.items()},
            "max_tokens": tokens,
            "domains_mixed": mixed,
            "gateway_capacity": capacity,
            "seed": seed,
            "engine": {
                "max_loras": config.engine.max_loras,
                "max_cpu_loras": config.engine.max_cpu_loras,
                "max_model_len": config.engine.max_model_len,
                "cpu_kv_cache_gib": config.engine.cpu_kv_cache_gib,
                "extra_args": config.engine.extra_args,
            },
            "guard_repeats": guard_repeats,
            "training": asdict(spec),
        },
    )
    clock = time.monotonic()
    try:
        with (
            progress_display(err) as progress,
            tempfile.TemporaryDirectory(prefix="lorastack-bench-") as scratch,
        ):
            record, _ = model_store().pull_bundled(progress)
            report.settings["base_model"] = record.name
            if Part.GUARD in parts:
                progress.step(f"guard: {guard_repeats} scans per message size, one core")
                env = process_env(Path(scratch) / "guard-home", record.name)
                report.guard = run_guard_bench(env, guard_repeats, folder / "guard.log")
            if Part.SERVE in parts:
                _serve(config, record, Path(scratch), folder, plan, mixed, report, progress)
            if Part.ENGINE in parts:
                # Mixed on the engine measures the ops, so every domain has a batch slot;
                # the smaller max_loras variants show what too few slots cost.
                engine_mixed = min(mixed, config.engine.max_loras)
                _engine_ops(
                    config,
                    record,
                    Path(scratch),
                    folder,
                    plan,
                    engine_mixed,
                    quick,
                    report,
                    progress,
                )
            if Part.TRAIN in parts:
                progress.step(f"training: padded then packed, {spec.steps} steps each")
                report.training = run_variants(record.path, spec, folder / "training.log")
    except LorastackError as error:
        report.notes.append(f"the run stopped: {error}")
        raise
    finally:
        report.duration_s = time.monotonic() - clock
        report.machine["load_at_end"] = load_average()
        write_report(report, folder)
    _print_summary(report)
    err.print(f"report: {folder / MARKDOWN_FILE}")
    out.print(str(folder), highlight=False)


def _print_summary(report: BenchReport) -> None:
    table = Table("target", "where", "measured", "limit", "verdict")
    for check in report.targets():
        value = "-" if check.value is None else f"{check.value:g}"
        style = {True: "green", False: "red", None: "yellow"}[check.passed]
        table.add_row(
            f"{check.target} ({check.rule})",
            check.where,
            value,
            f"{check.limit:g}",
            f"[{style}]{check.verdict}[/{style}]",
        )
    out.print(table)
