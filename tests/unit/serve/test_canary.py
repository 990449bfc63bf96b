"""Canary rollouts: the split, its stickiness, brand-rule checks on served answers, auto-stop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lorastack.manifest import Canary, CanaryGuard, DomainIndex
from lorastack.registry import AdapterRef, AdapterRegistry
from lorastack.rules import BrandRule
from lorastack.serve import canary
from lorastack.serve.canary import Tally, stop_reason
from lorastack.serve.keys import ClientKey
from lorastack.serve.schemas import ChatRequest, CompletionRequest
from tests.unit.serve.conftest import ADMIN_KEY, Running

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _chat(*contents: str, **extra: Any) -> ChatRequest:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    return ChatRequest.model_validate({"model": "coffee-shop", "messages": messages, **extra})


def _index(weight: float, version: int = 2, prod: int = 1) -> DomainIndex:
    return DomainIndex(
        domain="coffee-shop",
        last_version=max(version, prod),
        aliases={"prod": prod},
        canary=Canary(version=version, weight=weight),
    )


# -- the split ------------------------------------------------------------------------


def test_the_bucket_is_a_stable_hash_in_0_to_100() -> None:
    # sha256, not `hash`: the same in every process and every replica.
    assert canary.bucket("coffee-shop", "someone") == canary.bucket("coffee-shop", "someone")
    assert canary.bucket("coffee-shop", "someone") == pytest.approx(90.2344, abs=1e-3)
    values = [canary.bucket("coffee-shop", f"c{i}") for i in range(500)]
    assert all(0 <= v < 100 for v in values)
    # Another domain splits the same people independently.
    assert canary.bucket("ledger-desk", "someone") != canary.bucket("coffee-shop", "someone")


@pytest.mark.parametrize("weight", [5, 25, 50, 90])
def test_the_canary_gets_its_weight_of_conversations(weight: float) -> None:
    index = _index(weight)
    sides = [
        canary.choose(index, canary.conversation_identity(_chat(f"question {i}"), None))
        for i in range(2000)
    ]
    share = sum(1 for s in sides if s is not None and s.side == "canary") / len(sides) * 100
    assert abs(share - weight) < 3.5, share  # 2000 draws: a standard deviation is at most 1.1
    assert {s.version for s in sides if s is not None} <= {1, 2}


def test_a_conversation_never_switches_version() -> None:
    key = ClientKey("k", b"\x01" * 32, frozenset({"*"}))
    index = _index(50)

    def side(request: ChatRequest) -> str | None:
        split = canary.choose(index, canary.conversation_identity(request, key))
        return split.side if split is not None else None

    seen = set()
    for i in range(200):
        turns = [f"opening {i}", "an answer", "a follow-up", "another answer", "more"]
        sides = {side(_chat(*turns[:n])) for n in (1, 3, 5)}
        assert len(sides) == 1
        seen |= sides
    assert seen == {"canary", "prod"}
    # With `user`, the user decides, whatever the conversation.
    assert len({side(_chat(f"q{i}", user="ann")) for i in range(50)}) == 1


def test_who_is_talking_includes_the_key() -> None:
    a = ClientKey("a", b"\x01" * 32, frozenset({"*"}))
    b = ClientKey("b", b"\x02" * 32, frozenset({"*"}))
    request = _chat("hello")
    assert canary.conversation_identity(request, a) != canary.conversation_identity(request, b)
    assert canary.conversation_identity(request, None).startswith("open")


def test_the_opening_is_the_first_user_text() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]},
                {"role": "user", "content": "later"},
            ],
        }
    )
    assert canary.opening(request) == "a\nb"
    assert canary.opening(CompletionRequest(model="m", prompt=["p1", "p2"])) == "p1"
    assert canary.opening(CompletionRequest(model="m", prompt="p")) == "p"


def test_only_the_domain_and_its_prod_alias_are_split() -> None:
    assert canary.splits(AdapterRef.parse("coffee-shop"))
    assert canary.splits(AdapterRef.parse("coffee-shop@prod"))
    for pinned in ("coffee-shop@2", "coffee-shop@v1", "coffee-shop@canary", "coffee-shop@beta"):
        assert not canary.splits(AdapterRef.parse(pinned)), pinned


def test_no_canary_or_no_prod_means_no_split() -> None:
    assert canary.choose(DomainIndex(domain="d", aliases={"prod": 1}), "x") is None
    no_prod = DomainIndex(domain="d", canary=Canary(version=2, weight=50))
    assert canary.choose(no_prod, "x") is None
    everything = canary.choose(_index(100), "x")
    assert everything is not None and everything.side == "canary"


# -- the auto-stop decision -----------------------------------------------------------


def _tally(answers: int, errors: int = 0, passes: dict[str, int] | None = None) -> Tally:
    checked = answers - errors
    return Tally(answers, errors, checked if passes is not None else 0, dict(passes or {}))


GUARD = CanaryGuard(min_answers=10, error_margin=0.1, rule_margin=0.2)


def test_nothing_is_decided_before_min_answers_on_both_sides() -> None:
    assert stop_reason(GUARD, _tally(9, 9), _tally(100), []) is None
    assert stop_reason(GUARD, _tally(100, 100), _tally(9), []) is None
    assert stop_reason(GUARD, _tally(10, 10), _tally(10), []) is not None


def test_the_error_margin() -> None:
    # 20% against 10%: 10 points, not more than the margin.
    assert stop_reason(GUARD, _tally(100, 20), _tally(100, 10), []) is None
    reason = stop_reason(GUARD, _tally(100, 21), _tally(100, 10), [], version=2)
    assert reason is not None
    assert "error rate 21.0% on v2 against 10.0% on prod" in reason
    # Better than prod is never a reason.
    assert stop_reason(GUARD, _tally(100, 0), _tally(100, 50), []) is None


def test_the_rule_margin() -> None:
    prod = _tally(50, passes={"tip": 45, "short": 50})  # 90%, 100%
    assert stop_reason(GUARD, _tally(50, passes={"tip": 36, "short": 50}), prod, ["tip"]) is None
    worse = _tally(50, passes={"tip": 34, "short": 50})  # 68%: 22 points below
    reason = stop_reason(GUARD, worse, prod, ["tip", "short"], version=3)
    assert reason is not None and reason.startswith("rule tip passed by 68.0% of v3's answers")
    # Only the canary's own rules count.
    assert stop_reason(GUARD, worse, prod, ["short"]) is None


def test_rules_need_min_answers_checked() -> None:
    canary_side = Tally(answers=20, checked=5, passes={"tip": 0})
    prod = Tally(answers=20, checked=20, passes={"tip": 20})
    assert stop_reason(GUARD, canary_side, prod, ["tip"]) is None


# -- through the gateway --------------------------------------------------------------


def _samples(gw: Running, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(gw.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = float(sample.value)
    return found


def _metric(gw: Running, name: str, **labels: str) -> float:
    return _samples(gw, name).get(tuple(sorted(labels.items())), 0.0)


def _eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_a_canary_shares_conversations_and_each_stays_on_its_version(
    gw: Running, registry: AdapterRegistry, publish: Any
) -> None:
    publish("coffee-shop", 5)  # v2
    registry.start_canary("coffee-shop", 2, 50, None)
    first: dict[str, str] = {}
    for i in range(24):
        opening = f"Conversation {i}: what do you recommend?"
        response = gw.chat("coffee-shop", opening)
        assert response.status_code == 200, response.text
        model = response.json()["model"]
        assert response.headers["x-lorastack-adapter"] == model
        assert gw.fake.completion_requests[-1].body["model"] == model  # what really answered
        first[opening] = model
    assert set(first.values()) == {"coffee-shop@v1", "coffee-shop@v2"}
    for opening, model in first.items():
        messages = [
            {"role": "user", "content": opening},
            {"role": "assistant", "content": "Try the flat white."},
            {"role": "user", "content": "And to eat?"},
        ]
        again = gw.client.post(
            "/v1/chat/completions",
            json={"model": "coffee-shop@prod", "messages": messages, "stream": True},
        )
        chunks = [json.loads(line[6:]) for line in again.text.splitlines() if "{" in line]
        assert {c["model"] for c in chunks} == {model}
    # Pinned references are never split.
    for i in range(10):
        assert gw.chat("coffee-shop@v1", f"pinned {i}").json()["model"] == "coffee-shop@v1"
        assert gw.chat("coffee-shop@2", f"pinned {i}").json()["model"] == "coffee-shop@v2"
    gauge = _metric(gw, "lorastack_canary_weight_percent", domain="coffee-shop")
    assert gauge == 50
    registry.end_canary("coffee-shop")
    assert _metric(gw, "lorastack_canary_weight_percent", domain="coffee-shop") == 0
    assert {gw.chat("coffee-shop", o).json()["model"] for o in first} == {"coffee-shop@v1"}


def test_brand_rules_are_checked_on_whole_and_streamed_answers(gw: Running, publish: Any) -> None:
    rules = [BrandRule(must_mention=["croissant"], name="pastry"), BrandRule(max_words=50)]
    publish("coffee-shop", 5, rules=rules)  # v2
    assert gw.chat("coffee-shop@v2", "What is good?").status_code == 200  # an echo: no pastry
    gw.fake.enqueue(["A ", "croissant, ", "warm."])
    streamed = gw.chat("coffee-shop@v2", "And now?", stream=True)
    assert streamed.text.endswith("data: [DONE]\n\n")
    name = "lorastack_brand_rule_checks_total"
    labels = {"domain": "coffee-shop", "version": "v2"}
    assert _eventually(
        lambda: (
            _metric(gw, name, **labels, rule="pastry", result="pass") == 1
            and _metric(gw, name, **labels, rule="pastry", result="fail") == 1
        )
    )
    assert _metric(gw, name, **labels, rule="max_words", result="pass") == 2
    # v1 has no rules: nothing checked, nothing counted.
    gw.chat("coffee-shop", "x")
    assert not any(dict(k)["version"] == "v1" for k in _samples(gw, name))
    listed = gw.client.get("/admin/adapters", headers=ADMIN).json()
    coffee = next(d for d in listed["domains"] if d["domain"] == "coffee-shop")
    serving = {v["version"]: v["serving"] for v in coffee["versions"]}
    assert serving[2] == {"answers": 2, "errors": 0, "rules": {"max_words": 1.0, "pastry": 0.5}}
    assert _eventually(lambda: _serving(gw, 1).get("answers") == 1)
    assert _serving(gw, 1) == {"answers": 1, "errors": 0, "rules": {}}
    ledger = next(d for d in listed["domains"] if d["domain"] == "ledger-desk")
    assert ledger["versions"][0]["serving"] == {}


def _serving(gw: Running, version: int) -> dict[str, Any]:
    listed = gw.client.get("/admin/adapters", headers=ADMIN).json()
    coffee = next(d for d in listed["domains"] if d["domain"] == "coffee-shop")
    return next(v["serving"] for v in coffee["versions"] if v["version"] == version)


def test_a_canary_that_breaks_a_rule_is_stopped(
    gw: Running, registry: AdapterRegistry, publish: Any
) -> None:
    # The fake engine answers "echo from coffee-shop@vN: ...": only v2's answers name v2.
    publish("coffee-shop", 5, rules=[BrandRule(must_not_mention=["coffee-shop@v2"])])
    guard = CanaryGuard(min_answers=3, error_margin=0.5, rule_margin=0.5)
    registry.start_canary("coffee-shop", 2, 50, guard)
    stopped = False
    for i in range(80):
        assert gw.chat("coffee-shop", f"conversation {i}").status_code == 200
        if registry.index("coffee-shop").canary is None:
            stopped = True
            break
        time.sleep(0.02)  # checks run beside the requests
    assert stopped or _eventually(lambda: registry.index("coffee-shop").canary is None)
    ended = registry.index("coffee-shop").last_canary
    assert ended is not None and ended.outcome == "auto-stopped" and ended.version == 2
    assert ended.reason.startswith("rule must_not_mention passed by 0.0% of v2's answers")
    stops = "lorastack_canary_auto_stops_total"
    assert _metric(gw, stops, domain="coffee-shop", version="v2") == 1
    assert {gw.chat("coffee-shop", f"after {i}").json()["model"] for i in range(10)} == {
        "coffee-shop@v1"
    }


def test_errors_and_metrics_are_labelled_by_version(gw: Running, publish: Any) -> None:
    publish("coffee-shop", 5)  # v2
    gw.fake.enqueue_error(500, "boom")
    assert gw.chat("coffee-shop@v2", "x").status_code == 502
    gw.fake.enqueue(["a ", "b"])
    assert gw.chat("coffee-shop@v2", "y", stream=True).status_code == 200
    v2 = {"domain": "coffee-shop", "version": "v2"}
    assert _metric(gw, "lorastack_request_errors_total", **v2, code="upstream_error") == 1
    assert _metric(gw, "lorastack_time_to_first_token_seconds_count", **v2) == 1
    assert _metric(gw, "lorastack_tokens_total", **v2, direction="out") == 2
    gw.chat("tiny", "base")
    assert _metric(gw, "lorastack_request_latency_seconds_count", domain="base", version="") == 1
    assert _eventually(lambda: _serving(gw, 2) == {"answers": 2, "errors": 1, "rules": {}})


# -- the admin API --------------------------------------------------------------------


def test_admin_starts_and_stops_a_canary(gw: Running, publish: Any) -> None:
    publish("coffee-shop", 5)  # v2
    body = {"domain": "coffee-shop", "version": 2, "weight": 10}
    started = gw.client.post("/admin/adapters/canary", json=body, headers=ADMIN)
    assert started.status_code == 200, started.text
    index = started.json()
    assert set(index) == {"domain", "aliases", "canary", "last_canary", "capture"}
    assert index["aliases"] == {"prod": 1}
    assert index["canary"]["version"] == 2 and index["canary"]["weight"] == 10
    assert index["canary"]["guard"] == {"min_answers": 20, "error_margin": 0.05, "rule_margin": 0.2}
    assert index["last_canary"] is None
    tuned = {**body, "weight": 30, "guard": {"min_answers": 5}}
    again = gw.client.post("/admin/adapters/canary", json=tuned, headers=ADMIN).json()
    assert again["canary"]["guard"]["min_answers"] == 5 and again["canary"]["weight"] == 30
    unguarded = {**body, "guard": None}
    again = gw.client.post("/admin/adapters/canary", json=unguarded, headers=ADMIN).json()
    assert again["canary"]["guard"] is None
    listed = gw.client.get("/admin/adapters", headers=ADMIN).json()
    coffee = next(d for d in listed["domains"] if d["domain"] == "coffee-shop")
    assert coffee["canary"]["version"] == 2 and coffee["last_canary"] is None
    stop = {"domain": "coffee-shop", "reason": "too chatty"}
    stopped = gw.client.post("/admin/adapters/canary/stop", json=stop, headers=ADMIN).json()
    assert stopped["canary"] is None
    assert stopped["last_canary"]["outcome"] == "stopped"
    assert stopped["last_canary"]["reason"] == "too chatty"
    listed = gw.client.get("/admin/adapters", headers=ADMIN).json()
    coffee = next(d for d in listed["domains"] if d["domain"] == "coffee-shop")
    assert coffee["canary"] is None and coffee["last_canary"]["version"] == 2


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("canary", {"domain": "coffee-shop", "version": 2, "weight": 0}, 400),
        ("canary", {"domain": "coffee-shop", "version": 2, "weight": 101}, 400),
        ("canary", {"domain": "coffee-shop", "version": 2, "weight": "half"}, 400),
        ("canary", {"domain": "coffee-shop", "version": 0, "weight": 5}, 400),
        ("canary", {"domain": "coffee-shop", "weight": 5}, 400),
        ("canary", {"domain": "coffee-shop", "version": 2, "weight": 5, "extra": 1}, 400),
        ("canary", {"domain": "coffee-shop", "version": 2, "weight": 5, "guard": 3}, 400),
        (
            "canary",
            {"domain": "coffee-shop", "version": 2, "weight": 5, "guard": {"error_margin": 2}},
            400,
        ),
        (
            "canary",
            {"domain": "coffee-shop", "version": 2, "weight": 5, "guard": {"min_answers": 0}},
            400,
        ),
        ("canary", {"domain": "coffee-shop", "version": 1, "weight": 5}, 400),  # already prod
        ("canary", {"domain": "ledger-desk", "version": 1, "weight": 5}, 400),  # no prod
        ("canary", {"domain": "coffee-shop", "version": 9, "weight": 5}, 404),
        ("canary", {"domain": "nope", "version": 1, "weight": 5}, 404),
        ("canary", {"domain": "../etc", "version": 1, "weight": 5}, 404),
        ("canary/stop", {"domain": "coffee-shop"}, 400),  # none running
        ("canary/stop", {"domain": "nope"}, 404),
        ("canary/stop", {"domain": "Coffee"}, 404),
        ("canary/stop", {}, 400),
        ("canary/stop", {"domain": "coffee-shop", "reason": "x" * 501}, 400),
    ],
)
def test_admin_canary_mistakes_are_400_or_404(
    gw: Running, publish: Any, path: str, body: dict[str, Any], status: int
) -> None:
    publish("coffee-shop", 5)  # v2
    response = gw.client.post(f"/admin/adapters/{path}", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "/" not in response.json()["error"]["message"].replace("../etc", "")


def test_admin_canary_needs_the_admin_key(gw: Running) -> None:
    body = {"domain": "coffee-shop", "version": 1, "weight": 5}
    assert gw.client.post("/admin/adapters/canary", json=body).status_code == 401
    stop = {"domain": "coffee-shop"}
    assert gw.client.post("/admin/adapters/canary/stop", json=stop).status_code == 401


def test_promote_through_the_admin_api_ends_the_canary(gw: Running, publish: Any) -> None:
    publish("coffee-shop", 5)  # v2
    body = {"domain": "coffee-shop", "version": 2, "weight": 50}
    gw.client.post("/admin/adapters/canary", json=body, headers=ADMIN)
    promoted = gw.client.post(
        "/admin/adapters/promote", json={"domain": "coffee-shop", "version": 2}, headers=ADMIN
    ).json()
    assert promoted["aliases"] == {"prod": 2}
    assert promoted["canary"] is None and promoted["last_canary"]["outcome"] == "promoted"
    assert {gw.chat("coffee-shop", f"q{i}").json()["model"] for i in range(6)} == {"coffee-shop@v2"}
