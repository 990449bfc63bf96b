"""`lorastack demo`: the bundled model on vLLM, answering one question."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer

from lorastack.cli.context import err, model_store, out, settings
from lorastack.errors import EngineError
from lorastack.progress import RichProgress
from lorastack.serve.engine import EngineProcess, build_launch

DEMO_QUESTION = "What is the capital of France?"


def demo(
    question: Annotated[str, typer.Option(help="What to ask the model.")] = DEMO_QUESTION,
) -> None:
    """Provision the bundled model, start vLLM on it and print one chat answer."""
    config = settings()
    with RichProgress(err) as progress:
        record, _ = model_store().pull_bundled(progress)
    launch = build_launch(config.engine, record, config.max_lora_rank)
    engine = EngineProcess(
        launch, config.runs_dir / "demo-engine.log", config.engine.startup_timeout_s
    )
    err.print(f"starting vLLM on {record.name} (log: {engine.log_path}) ...")
    with engine:
        err.print(f"engine ready at {engine.url}")
        try:
            response = httpx.post(
                f"{engine.url}/v1/chat/completions",
                json={
                    "model": launch.served_model_name,
                    "messages": [{"role": "user", "content": question}],
                    "max_tokens": 64,
                    "temperature": 0,
                },
                timeout=120,
            )
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise EngineError(f"the engine did not answer: {error}") from None
        answer = response.json()["choices"][0]["message"]["content"]
    err.print(f"[bold]Q:[/bold] {question}")
    out.print(answer.strip())
