"""`lorastack serve`: the OpenAI-compatible gateway, with its own engine or in front of others."""

from __future__ import annotations

import threading
from typing import Annotated

import typer
import uvicorn

from lorastack.cli import context
from lorastack.cli.context import err, model_store, settings
from lorastack.errors import LorastackError
from lorastack.guardrails.detector import Detector
from lorastack.guardrails.runtime import freeze_loaded_objects
from lorastack.serve.app import (
    build_gateway,
    create_app,
    engine_client,
    http_protocol,
    open_feedback_store,
)
from lorastack.serve.engine import EngineProcess, build_launch
from lorastack.serve.supervisor import EngineSupervisor
from lorastack.serve.tracing import configure_tracing
from lorastack.settings import load_settings


def _load_then_freeze(detector: Detector | None) -> None:
    """Load the PII models, then freeze everything loaded (`freeze_loaded_objects`).

    The gateway waits for the same load as it starts, so it never serves first.
    """
    if detector is not None:
        try:
            detector.prepare()
        except LorastackError:
            return  # the gateway's start-up loads them again, and reports why it cannot
    freeze_loaded_objects()


def serve(
    upstream: Annotated[
        list[str] | None,
        typer.Option(help="Front an already running vLLM server (repeat for several)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    no_guardrails: Annotated[
        bool, typer.Option("--no-guardrails", help="Do not apply the PII policies.")
    ] = False,
) -> None:
    """Serve every domain through one OpenAI-compatible endpoint.

    Without --upstream, starts vLLM on the base model as a supervised child on a
    private port, restarting it if it dies.
    """
    base = settings()
    gateway_settings = base.gateway.model_copy(
        update={
            k: v
            for k, v in {
                "host": host,
                "port": port,
                "guardrails": False if no_guardrails else None,
                "upstreams": upstream or None,
            }.items()
            if v is not None
        }
    )
    # Re-validate the changed settings (a public bind without keys is refused when the
    # gateway is built: the database may hold keys).
    config = load_settings(**{**base.model_dump(), "gateway": gateway_settings.model_dump()})
    client = engine_client(config.gateway.engine_read_timeout_s)
    supervisor = None
    if config.gateway.upstreams:
        urls = list(config.gateway.upstreams)
    else:
        model = model_store().get(config.base_model)
        launch = build_launch(config.engine, model, config.max_lora_rank)
        urls = [launch.url]
    detector = context.pii_detector() if config.gateway.guardrails else None
    # Spans go where the OTEL_* variables say (flushed at exit); none asked: no tracing.
    tracer_provider = configure_tracing()
    if tracer_provider is not None:
        err.print("tracing: spans exported as the OTEL_* variables say")
    # Captured answers and ratings: the store is closed when the gateway stops.
    with open_feedback_store(config) as store:
        gateway = build_gateway(
            config,
            urls,
            client,
            detector=detector,
            feedback_store=store,
            tracer_provider=tracer_provider,
        )
        if not config.gateway.upstreams:
            process = EngineProcess(
                launch, config.runs_dir / "engine.log", config.engine.startup_timeout_s
            )
            supervisor = EngineSupervisor(process, gateway.pool.endpoints[0])
            err.print(f"starting vLLM on {config.base_model} (log: {process.log_path})")
        app = create_app(
            gateway,
            config.gateway.max_body_bytes,
            client,
            supervisor,
            body_timeout_s=config.gateway.body_timeout_s,
            keys_refresh_s=config.gateway.keys_refresh_s,
        )
        err.print(f"gateway on http://{config.gateway.host}:{config.gateway.port}/v1")
        # While the engine starts: load the PII models, then freeze what is loaded.
        threading.Thread(
            target=_load_then_freeze, args=(detector,), name="load-models", daemon=True
        ).start()
        uvicorn.run(
            app,
            host=config.gateway.host,
            port=config.gateway.port,
            log_level="warning",
            access_log=False,  # request lines are not needed, and never bodies
            http=http_protocol(config.gateway),
        )
