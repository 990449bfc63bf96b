"""The gateway on the real stack: vLLM on the CPU, the bundled model, two domains."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from lorastack.guardrails.policy import default_policy
from lorastack.manifest import Canary, DomainIndex
from lorastack.models import ModelRecord
from lorastack.rules import BrandRule
from lorastack.serve import canary
from lorastack.serve.schemas import ChatRequest
from lorastack.serve.supervisor import EngineSupervisor
from tests.peft_adapters import write_random_lora
from tests.registries import home_registry
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
    registry = home_registry(home)
    for domain, seeds in (("coffee-shop", (1, 2)), ("ledger-desk", (3,))):
        for seed in seeds:
            source = write_random_lora(bundled_model.path, work / f"{domain}-{seed}", seed)
            registry.publish(source, domain, display_name=domain.title(), promote="prod")
    registry.promote("coffee-shop", 1)
    _allow_slow_screening(home / "policies", ("coffee-shop", "ledger-desk"))
    with (
        real_stack(bundled_model, home, ADMIN_KEY) as running,
        httpx.Client(
            base_url=running.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=120
        ) as admin,
    ):
        assert running.supervisor is not None  # the gateway started its engine
        yield Stack(
            running.url,
            OpenAI(base_url=f"{running.url}/v1", api_key="local", max_retries=0, timeout=120),
            admin,
            running.supervisor,
            bundled_model.name,
        )


def _allow_slow_screening(folder: Path, domains: tuple[str, ...]) -> None:
    """The default policy with a longer screening deadline, for these domains.

    Here the gateway runs in the test's own process: its screening threads share one GIL
    with the eight client threads that stream the answers, so on a loaded two-core machine
    a scan of a few words can wait seconds for the interpreter. These tests are about
    adapters, not about how a deadline fails closed (the guard's unit tests are).
    """
    folder.mkdir(parents=True, exist_ok=True)
    policy = default_policy().model_copy(update={"timeout_s": 60.0})
    for domain in domains:
        (folder / f"{domain}.yaml").write_text(
            yaml.safe_dump(policy.model_dump(mode="json")), encoding="utf-8"
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
    # The answer names what wrote it: the base model, or the domain's version.
    if model == stack.base_model:
        assert answer.model == model
    else:
        assert answer.model.startswith(f"{model.split('@')[0]}@v"), answer.model
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


def test_the_responses_api_answers_through_a_domain(stack: Stack) -> None:
    brief = "Answer in one sentence."
    whole = stack.client.responses.create(
        model="ledger-desk", input=QUESTION, instructions=brief, max_output_tokens=24, temperature=0
    )
    assert whole.model.startswith("ledger-desk@v"), whole.model
    assert whole.id.startswith("resp_") and whole.output_text.strip()
    assert whole.usage is not None and whole.usage.output_tokens > 0
    stream = stack.client.responses.create(
        model="ledger-desk",
        input=QUESTION,
        instructions=brief,
        max_output_tokens=24,
        temperature=0,
        stream=True,
    )
    events = list(stream)
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == f"response.{whole.status}"  # completed, or incomplete at the limit
    assert last.response.model == whole.model
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == last.response.output_text == whole.output_text  # greedy: the same
    # The same path as chat: the instructions are the system message, the same answer.
    chat = stack.client.chat.completions.create(
        model="ledger-desk",
        messages=[
            {"role": "system", "content": brief},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=24,
        temperature=0,
    )
    assert chat.choices[0].message.content == whole.output_text


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


# -- canaries ---------------------------------------------------------------------------


def _chat(stack: Stack, model: str, messages: list[dict[str, str]]) -> tuple[str, str]:
    """(the version that answered, its text): short and greedy."""
    answer = stack.client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
    )
    return answer.model, answer.choices[0].message.content or ""


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _start_canary(stack: Stack, version: int, weight: float, guard: object = None) -> None:
    body = {"domain": "coffee-shop", "version": version, "weight": weight, "guard": guard}
    response = stack.admin.post("/admin/adapters/canary", json=body)
    assert response.status_code == 200, response.text


def _stop_canary(stack: Stack) -> None:
    """Leave the module's stack as the other tests expect it: no canary, prod v1."""
    stack.admin.post("/admin/adapters/canary/stop", json={"domain": "coffee-shop"})
    stack.admin.post("/admin/adapters/promote", json={"domain": "coffee-shop", "version": 1})


def test_a_canary_shares_conversations_and_each_keeps_its_version(stack: Stack) -> None:
    _start_canary(stack, 2, 50)
    try:
        first = {}
        for i in range(16):
            opening = f"Guest {i} asks: what would you recommend for breakfast?"
            first[opening] = _chat(stack, "coffee-shop", _user(opening))
        assert {model for model, _ in first.values()} == {"coffee-shop@v1", "coffee-shop@v2"}
        for opening, (model, text) in first.items():
            follow_up = [
                {"role": "user", "content": opening},
                {"role": "assistant", "content": text},
                {"role": "user", "content": "And something sweet?"},
            ]
            assert _chat(stack, "coffee-shop", follow_up)[0] == model, opening
    finally:
        _stop_canary(stack)


def test_promoting_a_canary_under_load_fails_no_request(stack: Stack) -> None:
    _start_canary(stack, 2, 50)
    failures: list[str] = []
    answered: list[set[str]] = []

    def converse(index: int) -> None:
        try:
            for turn in range(2):
                chunks = stack.client.chat.completions.create(
                    model="coffee-shop",
                    messages=_user(f"Visitor {index}, question {turn}: is it busy today?"),  # type: ignore[arg-type]
                    max_tokens=12,
                    temperature=0,
                    stream=True,
                )
                answered.append({chunk.model for chunk in chunks})
        except Exception as error:  # collected, asserted below
            failures.append(f"{index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=converse, args=(i,)) for i in range(6)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 300
        while len(answered) < 2 and not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        promoted = stack.admin.post(
            "/admin/adapters/promote", json={"domain": "coffee-shop", "version": 2}
        )
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(answered) == 12
        assert all(len(models) == 1 for models in answered)  # no answer changes voice
        assert set().union(*answered) <= {"coffee-shop@v1", "coffee-shop@v2"}
        assert promoted.status_code == 200, promoted.text
        index = promoted.json()
        assert index["aliases"]["prod"] == 2 and index["canary"] is None
        assert index["last_canary"]["outcome"] == "promoted"
        after = {_chat(stack, "coffee-shop", _user(f"Newcomer {i}: hello"))[0] for i in range(4)}
        assert after == {"coffee-shop@v2"}
    finally:
        _stop_canary(stack)


def _words(text: str) -> set[str]:
    # Exactly what a `must_not_mention` word matches: a whole run of word characters.
    return set(re.findall(r"\w+", text.lower()))


def test_a_canary_that_breaks_a_brand_rule_is_stopped(
    stack: Stack, bundled_model: ModelRecord
) -> None:
    home = bundled_model.path.parent.parent
    registry = home_registry(home)
    # Which conversations a 50% canary gets is a hash of who asks: pick four for each side.
    split = DomainIndex(
        domain="coffee-shop", aliases={"prod": 1}, canary=Canary(version=2, weight=50)
    )

    def side(question: str) -> str:
        request = ChatRequest.model_validate({"model": "coffee-shop", "messages": _user(question)})
        chosen = canary.choose(split, canary.conversation_identity(request, None))
        assert chosen is not None
        return chosen.side

    questions = [f"Customer {i}: is there anything new on the menu?" for i in range(40)]
    to_canary = [q for q in questions if side(q) == "canary"][:4]
    to_prod = [q for q in questions if side(q) == "prod"][:4]
    # A rule prod's answers to these questions pass and v2's fail: words only v2 says.
    prod_words = set().union(*(_words(_chat(stack, "coffee-shop@1", _user(q))[1]) for q in to_prod))
    canary_words = {q: _words(_chat(stack, "coffee-shop@2", _user(q))[1]) for q in to_canary}
    breaking = [q for q, words in canary_words.items() if words - prod_words]
    assert len(breaking) >= 3, canary_words
    banned = sorted(set().union(*canary_words.values()) - prod_words)
    rule = BrandRule(must_not_mention=banned, name="house-words")
    # The same weights as v2, published again with the rule.
    version = registry.publish(
        registry.version_dir("coffee-shop", 2), "coffee-shop", rules=[rule]
    ).version
    _start_canary(stack, version, 50, {"min_answers": 3, "error_margin": 0.5, "rule_margin": 0.5})
    try:
        seen = set()
        deadline = time.monotonic() + 300
        while registry.index("coffee-shop").canary is not None and time.monotonic() < deadline:
            for question in to_canary + to_prod:
                seen.add(_chat(stack, "coffee-shop", _user(question))[0])
            time.sleep(0.5)  # the checks run beside the requests
        ended = registry.index("coffee-shop").last_canary
        assert ended is not None and ended.version == version, ended
        assert ended.outcome == "auto-stopped"
        assert "rule house-words" in ended.reason
        assert seen == {"coffee-shop@v1", f"coffee-shop@v{version}"}
        assert _chat(stack, "coffee-shop", _user(to_canary[0]))[0] == "coffee-shop@v1"
        listed = stack.admin.get("/admin/adapters").json()
        coffee = next(d for d in listed["domains"] if d["domain"] == "coffee-shop")
        serving = next(v["serving"] for v in coffee["versions"] if v["version"] == version)
        assert serving["rules"]["house-words"] < 0.5
        metrics = stack.admin.get("/metrics").text
        assert (
            f'lorastack_canary_auto_stops_total{{domain="coffee-shop",version="v{version}"}} 1.0'
            in metrics
        )
    finally:
        _stop_canary(stack)
