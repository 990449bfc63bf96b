"""The gateway on the real stack: vLLM on the CPU, the bundled model, two domains."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from openai import OpenAI

from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.serve.supervisor import EngineSupervisor
from tests.peft_adapters import write_random_lora
from tests.servers import real_stack

pytestmark = pytest.mark.integration

ADMIN_KEY = "integration-admin-key-0123456789"
# No personal data in it: the default policy masks places on the way in.
QUESTION = "What is a good drink to have with breakfast?"


@dataclass
class Stack:
    url: str
    client: OpenAI
    admin: httpx.Client
    supervisor: EngineSupervisor
    base_model: str


@pytest.fixture(scope="module")
def stack(bundled_model: ModelRecord, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = bundled_model.path.parent.parent
    work = tmp_path_factory.mktemp("adapters-src")
    registry = AdapterRegistry(home / "adapters", ModelStore(home / "models"), 16)
    for domain, seeds in (("coffee-shop", (1, 2)), ("ledger-desk", (3,))):
        for seed in seeds:
            source = write_random_lora(bundled_model.path, work / f"{domain}-{seed}", seed)
            registry.publish(source, domain, display_name=domain.title(), promote="prod")
    registry.promote("coffee-shop", 1)
    with (
        real_stack(bundled_model, home, ADMIN_KEY) as running,
        httpx.Client(
            base_url=running.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=120
        ) as admin,
    ):
        yield Stack(
            running.url,
            OpenAI(base_url=f"{running.url}/v1", api_key="local", max_retries=0, timeout=120),
            admin,
            running.supervisor,
            bundled_model.name,
        )


def _ask(stack: Stack, model: str, stream: bool = False) -> str:
    messages = [{"role": "user", "content": QUESTION}]
    if stream:
        chunks = stack.client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=24,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = stack.client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=24,
        temperature=0,  # type: ignore[arg-type]
    )
    assert answer.model == model
    return answer.choices[0].message.content or ""


def test_domains_answer_differently_from_the_base_model(stack: Stack) -> None:
    base = _ask(stack, stack.base_model)
    assert base.strip()
    answers = {}
    for model in ("coffee-shop", "ledger-desk", "coffee-shop", "coffee-shop@2", stack.base_model):
        streamed = _ask(stack, model, stream=True)
        whole = _ask(stack, model)
        assert streamed == whole  # greedy: the same answer either way
        answers.setdefault(model, whole)
        assert answers[model] == whole
    assert answers["coffee-shop"] != base
    assert answers["ledger-desk"] != base
    assert answers["coffee-shop"] != answers["coffee-shop@2"]
    listed = {m.id for m in stack.client.models.list()}
    assert {stack.base_model, "coffee-shop", "ledger-desk"} <= listed


def test_a_prompt_too_long_is_a_400_naming_the_limit(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        stack.client.chat.completions.create(
            model="coffee-shop",
            messages=[{"role": "user", "content": "coffee " * 5000}],
            max_tokens=8,
        )
    assert "2048" in str(raised.value)


def test_swapping_adapters_under_load_fails_no_request(stack: Stack) -> None:
    failures: list[str] = []
    completed: list[int] = []
    models = ["coffee-shop", "ledger-desk", "coffee-shop@2", stack.base_model]

    def stream(index: int) -> None:
        try:
            for _ in range(2):
                text = _ask(stack, models[index % len(models)], stream=True)
                assert text
            completed.append(index)
        except Exception as error:  # collected, asserted below
            failures.append(f"{index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    admin_statuses = []
    while any(t.is_alive() for t in threads):
        for path, body in [
            ("/admin/adapters/promote", {"domain": "coffee-shop", "version": 2}),
            ("/admin/adapters/unload", {"model": "ledger-desk"}),
            ("/admin/adapters/load", {"model": "ledger-desk"}),
            ("/admin/adapters/rollback", {"domain": "coffee-shop"}),
            ("/admin/adapters/unload", {"model": "coffee-shop@2"}),
        ]:
            admin_statuses.append(stack.admin.post(path, json=body).status_code)
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(completed) == list(range(8))
    assert set(admin_statuses) == {200}


def test_a_killed_engine_gives_clean_errors_and_comes_back(stack: Stack) -> None:
    assert _ask(stack, "ledger-desk")  # loaded before the crash
    pid = stack.supervisor.process.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    seen_unavailable = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            answer = _ask(stack, "ledger-desk")
        except openai.APIStatusError as error:
            assert error.status_code == 503, error
            seen_unavailable = True
            time.sleep(2)
            continue
        if seen_unavailable:
            break
        time.sleep(0.5)
    assert seen_unavailable
    assert answer
    assert stack.supervisor.restarts == 1
    states = stack.admin.get("/admin/adapters").json()
    ledger = next(d for d in states["domains"] if d["domain"] == "ledger-desk")
    assert ledger["versions"][0]["engines"][0]["state"] == "ready"
