"""Learning from use, end to end on real components, on SQLite and on PostgreSQL.

Covers, once per database (`database_url`: a SQLite file in tmp, then a database on the
real throwaway PostgreSQL server of tests/postgres.py, skipped without its binaries):

1. the real stack: vLLM on the CPU serving the bundled SmolLM2-135M, the gateway in
   front of it with Presidio guardrails, two client keys, the admin API and a feedback
   store on that database; one domain published as `prod` v1 with capture on (a random
   rank-8 LoRA, a brand voice and a brand rule);
2. a scripted user asks seven short questions with the official `openai` client (streamed
   and not), two of them with an email address, and rates every answer through
   `POST /v1/feedback` (httpx): five up, two down with a correction each. Another
   key's rating of the same id is a 404. Read back through the store: each exchange is
   stored under the `id` the client saw, with the key's hash, and the email masked in the
   prompt and in the correction, never raw;
3. `export_feedback` of KTO rows (the counts of the export report), a KTO run of two
   steps from `DOMAIN@prod` (`run_training`, the config built in code as
   `lorastack improve` does), `evaluate_run` on two examples, `publish_run` (past the gate
   with `force` if it refuses), a 50% canary through the admin API answered by both
   versions (`x-lorastack-adapter`), then the admin API's promote, after which only the
   new version answers.

One gateway per database (module-scoped) in front of the integration tests' shared vLLM
engine (tests/integration/shared_engine.py; each database's domain is its own adapter on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai import OpenAI
from sqlalchemy import create_engine, text

from lorastack.feedback import FeedbackStore
from lorastack.guardrails.policy import default_policy
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule
from lorastack.settings import Settings
from lorastack.train.config import build_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.feedback_export import export_feedback
from lorastack.train.gate import PublishRefused
from lorastack.train.run import new_run_dir
from lorastack.train.trainer import run_training
from tests.integration.shared_engine import SharedEngine
from tests.peft_adapters import write_random_lora
from tests.registries import home_registry
from tests.servers import serve_in_thread, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ADMIN_KEY = "loop-admin-key-0123456789abcdef"
USER_KEY = "loop-user-key-0123456789"
OTHER_KEY = "loop-other-key-0123456789"
VOICE = "You are the barista of Bean There, a small coffee shop."
EMAIL = "jane.doe@example.com"
OTHER_EMAIL = "sam.lee@example.org"
# (question, streamed, rating, correction). Shaped for the export's split: its 9 KTO rows
# (7 marked good, 2 bad) are split by label, and with this many more good than bad ones
# the one test row is a good answer. Evaluating a preference run from a version without
# reachable training data measures the loss on the test split's good answers: a test
# split of one bad answer would leave nothing to measure (a ConfigError, by design).
SCRIPT: list[tuple[str, bool, int, str | None]] = [
    ("Do you have oat milk?", False, 1, None),
    (f"Please send my receipt to {EMAIL}.", True, -1, f"Of course! It is on its way to {EMAIL}."),
    ("When do you open on Sundays?", True, 1, None),
    (f"Can you email the menu to {OTHER_EMAIL}?", False, -1, "Happy to: check your inbox soon."),
    ("Is there wifi in the shop?", False, 1, None),
    ("Which cakes do you have today?", True, 1, None),
    ("Can I bring my dog inside?", False, 1, None),
]
TINY_KTO = {  # two steps: enough to make a new version, not to make it better
    "max_steps": 2,
    "eval_steps": 2,
    "save_steps": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2,
    "max_length": 96,
}


@dataclass
class Loop:
    url: str
    domain: str
    settings: Settings
    store: FeedbackStore
    registry: AdapterRegistry
    models: ModelStore
    client: OpenAI
    admin: httpx.Client
    answered: dict[str, tuple[str, int, str | None]] = field(default_factory=dict)
    """response id -> (question, rating, correction), what the user rated."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of an empty database for this module's stack."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('loop-db') / 'lorastack.db'}"
        return
    # Asked for here: the SQLite case must not need the server. The server is the
    # session's; this module makes (and drops) a database of its own on it.
    server: str = request.getfixturevalue("postgres_server")
    name = f"loop_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        # As a user writes it: lorastack picks the driver.
        url = server.rsplit("/", 1)[0] + f"/{name}"
        yield url.replace("postgresql+psycopg://", "postgresql://")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def engine(shared_engine: SharedEngine) -> int:
    """The integration tests' shared vLLM engine, for both databases' gateways: its port."""
    return shared_engine.port


@pytest.fixture(scope="module")
def loop(
    database: str,
    engine: int,
    bundled_model: ModelRecord,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loop]:
    from lorastack.guardrails import PresidioDetector
    from lorastack.serve.app import (
        build_gateway,
        create_app,
        engine_client,
        http_protocol,
        open_feedback_store,
    )
    from lorastack.settings import load_settings

    # The bundled model's home, shared with the other integration modules: a domain of
    # this database's own, so that the two parameters (and other modules) never meet.
    home = bundled_model.path.parent.parent
    domain = f"bean-{database.split(':', 1)[0].split('+')[0]}"
    models = ModelStore(home / "models")
    registry = home_registry(home, store=models, database_url=database)
    source = write_random_lora(bundled_model.path, tmp_path_factory.mktemp("loop-src"), 7)
    registry.publish(
        source,
        domain,
        display_name="Bean There",
        system_prompt=VOICE,
        rules=[BrandRule(max_words=400, name="not-a-lecture")],
        promote="prod",
        capture=True,
    )
    _allow_slow_screening(home / "policies", domain)
    settings = load_settings(
        home=home,
        base_model=bundled_model.name,
        database_url=database,
        engine={"port": engine, "startup_timeout_s": 600},
        gateway={"admin_key": ADMIN_KEY, "api_keys": [USER_KEY, OTHER_KEY]},
    )
    client = engine_client(120.0)
    with ExitStack() as stack:
        # As tests/servers.py's real_stack, with this database and the module's engine
        # (no supervisor: the engine outlives each gateway): closed after the server.
        store = stack.enter_context(open_feedback_store(settings))
        assert store is not None, "the feedback store did not open"
        gateway = build_gateway(
            settings,
            [f"http://{settings.engine.host}:{engine}"],
            client,
            detector=PresidioDetector(),
            feedback_store=store,
        )
        app = create_app(gateway, settings.gateway.max_body_bytes, client)
        url = stack.enter_context(serve_in_thread(app, http=http_protocol(settings.gateway)))
        wait_ready(url, 600)
        admin = stack.enter_context(
            httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=120
            )
        )
        openai_client = OpenAI(base_url=f"{url}/v1", api_key=USER_KEY, max_retries=0, timeout=120)
        yield Loop(url, domain, settings, store, registry, models, openai_client, admin)


def _allow_slow_screening(folder: Path, domain: str) -> None:
    """The default policy with a longer screening deadline (as in test_gateway_stack: the
    gateway shares this process's GIL on a loaded two-core machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = default_policy().model_copy(update={"timeout_s": 60.0})
    (folder / f"{domain}.yaml").write_text(
        yaml.safe_dump(policy.model_dump(mode="json")), encoding="utf-8"
    )


def _ask(loop: Loop, question: str, stream: bool) -> tuple[str, str, str]:
    """(the `id` the client saw, the answer, the version that wrote it: the header)."""
    messages: Any = [{"role": "user", "content": question}]
    create = loop.client.chat.completions.with_raw_response.create
    if stream:
        raw = create(
            model=loop.domain, messages=messages, max_tokens=16, temperature=0, stream=True
        )
        chunks = list(raw.parse())
        ids = {chunk.id for chunk in chunks}
        assert len(ids) == 1, ids  # every chunk carries the one id
        text_ = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return ids.pop(), text_, raw.headers["x-lorastack-adapter"]
    whole = create(model=loop.domain, messages=messages, max_tokens=16, temperature=0)
    answer = whole.parse()
    assert answer.model == whole.headers["x-lorastack-adapter"]
    return answer.id, answer.choices[0].message.content or "", answer.model


def _rate(loop: Loop, key: str, response_id: str, rating: int, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{loop.url}/v1/feedback",
        headers={"authorization": f"Bearer {key}"},
        json={"response_id": response_id, "rating": rating, **extra},
        timeout=60,
    )


def test_a_user_rates_answers_and_the_store_keeps_them_masked(loop: Loop) -> None:
    for question, stream, rating, correction in SCRIPT:
        response_id, answer, version = _ask(loop, question, stream)
        assert version == f"{loop.domain}@v1"
        assert answer.strip()
        extra = {"correction": correction} if correction else {}
        saved = _rate(loop, USER_KEY, response_id, rating, **extra)
        assert saved.status_code == 200, saved.text
        assert saved.json() == {
            "object": "feedback",
            "response_id": response_id,
            "rating": rating,
            "saved": True,
        }
        loop.answered[response_id] = (question, rating, correction)

    # Another key may not rate this key's answers: the same 404 as an unknown id.
    first = next(iter(loop.answered))
    assert _rate(loop, OTHER_KEY, first, -1).status_code == 404
    assert _rate(loop, USER_KEY, "chatcmpl-no-such-answer", 1).status_code == 404

    user_hash = hashlib.sha256(USER_KEY.encode()).hexdigest()
    for response_id, (question, _, _) in loop.answered.items():
        stored = loop.store.get_exchange(response_id)
        assert stored is not None, response_id
        assert stored.response_id == response_id
        assert (stored.domain, stored.version, stored.key_hash) == (loop.domain, 1, user_hash)
        kept = json.dumps(stored.messages) + stored.answer
        assert EMAIL not in kept and OTHER_EMAIL not in kept
        assert stored.messages[0] == {"role": "system", "content": VOICE}
        if "@" in question:
            assert "<EMAIL_ADDRESS_1>" in stored.messages[-1]["content"], stored.messages
        assert set(stored.rules) == {"not-a-lecture"}

    rated = {r.exchange.response_id: r.ratings for r in loop.store.rated_exchanges(loop.domain)}
    assert set(rated) == set(loop.answered)  # the other key's 404 stored nothing
    corrections = sorted(r.correction or "" for rs in rated.values() for r in rs if r.correction)
    assert len(corrections) == 2
    # Masked with the domain's input policy, numbered on its own.
    assert EMAIL not in corrections[1] and "<EMAIL_ADDRESS_1>" in corrections[1], corrections
    counts = loop.store.counts(loop.domain)
    assert counts == {1: {"captured": 7, "up": 5, "down": 2, "corrections": 2}}


def test_the_feedback_trains_a_version_that_a_canary_then_promotes(
    loop: Loop, tmp_path: Path
) -> None:
    assert loop.answered, "the rating test did not run first"
    exported = export_feedback(loop.store, loop.domain, "kto", tmp_path / "kto")
    report = exported.report
    assert (report.exchanges, report.rated, report.ratings) == (7, 7, 7)
    assert dict(report.votes) == {"up": 5, "down": 2} and report.corrections == 2
    assert dict(report.rows) == {"upvoted_answer": 5, "downvoted_answer": 2, "correction": 2}
    assert dict(report.labels) == {"true": 7, "false": 2}
    assert exported.data.kept == 9, exported.data.invalid_examples
    splits = {
        name: [json.loads(line) for line in (exported.out / f"{name}.jsonl").open()]
        for name in ("train", "validation", "test")
    }
    assert [len(rows) for rows in splits.values()] == [7, 1, 1]
    assert splits["test"][0]["label"] is True  # see SCRIPT
    written = "".join(p.read_text() for p in exported.out.glob("*.jsonl"))
    assert EMAIL not in written and OTHER_EMAIL not in written

    # What `lorastack improve` does, step by step, with a tiny run.
    config = build_config(
        {
            "mode": "kto",
            "from_adapter": f"{loop.domain}@prod",
            "data": str(exported.out),
            "training": TINY_KTO,
        },
        source="test_feedback_loop",
    )
    paths = new_run_dir(loop.settings.runs_dir, loop.domain)
    trained = run_training(
        config,
        paths,
        loop.models,
        loop.settings.base_model,
        loop.settings.max_lora_rank,
        registry=loop.registry,
    )
    assert trained.steps == 2
    metrics = evaluate_run(paths, loop.models, loop.registry, samples=0, examples=2)
    assert metrics["preference"]["adapter"] is not None
    try:
        manifest = publish_run(paths, loop.registry, tolerances=loop.settings.publish)
    except PublishRefused:
        # Two steps on a handful of ratings need not beat prod (a random LoRA, by chance):
        # the gate may refuse it. This test is about the loop, not about the gate.
        manifest = publish_run(
            paths, loop.registry, force=True, reason="two KTO steps in an integration test"
        )
    assert manifest.version == 2 and manifest.started_from == f"{loop.domain}@v1"
    assert manifest.system_prompt == VOICE and [r.name for r in manifest.rules] == ["not-a-lecture"]
    assert loop.registry.index(loop.domain).aliases["prod"] == 1  # not promoted

    started = loop.admin.post(
        "/admin/adapters/canary",
        json={"domain": loop.domain, "version": 2, "weight": 50, "guard": None},
    )
    assert started.status_code == 200, started.text
    # The split is a hash of who asks: conversations with different openings.
    seen = {_ask(loop, f"Guest {i}: what do you recommend?", i % 2 == 0)[2] for i in range(12)}
    assert seen == {f"{loop.domain}@v1", f"{loop.domain}@v2"}

    promoted = loop.admin.post(
        "/admin/adapters/promote", json={"domain": loop.domain, "version": 2}
    )
    assert promoted.status_code == 200, promoted.text
    index = promoted.json()
    assert index["aliases"]["prod"] == 2 and index["canary"] is None
    assert index["last_canary"]["outcome"] == "promoted"
    after = {_ask(loop, f"Guest {i}: what do you recommend?", False)[2] for i in range(4)}
    assert after == {f"{loop.domain}@v2"}
    # The new version's answers are captured too, for the next loop (written off the
    # request path: within a second or so).
    deadline = time.monotonic() + 30
    while loop.store.counts(loop.domain).get(2, {}).get("captured", 0) < 4:
        assert time.monotonic() < deadline, loop.store.counts(loop.domain)
        time.sleep(0.5)
