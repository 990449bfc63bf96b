"""The audit trail of the admin API: one row per admin action, naming the admin key by its
hash and never the key; an action is never failed by its record; `GET /admin/audit`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lorastack.audit import AuditEvent, admin_key_actor_of
from lorastack.db import SqlAuditLog, SqlFeedbackStore
from lorastack.errors import DatabaseError
from lorastack.serve.audit import AdminAudit
from tests.unit.serve.conftest import ADMIN_KEY, Running

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ACTOR = admin_key_actor_of(ADMIN_KEY)


@pytest.fixture
def gw(
    database: SqlFeedbackStore, start_gateway: Callable[..., Running], publish: Callable[..., Any]
) -> Running:
    """coffee-shop has v1 (prod) and v2."""
    publish("coffee-shop", 3)
    return start_gateway(feedback_store=database)


def _admin(gw: Running, path: str, body: dict[str, Any]) -> httpx.Response:
    response = gw.client.post(f"/admin/adapters/{path}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response


def _trail(database: SqlFeedbackStore) -> list[AuditEvent]:
    return list(reversed(SqlAuditLog(database.engine).events()))  # oldest first


def test_every_admin_action_is_recorded_with_the_admin_key_that_did_it(
    gw: Running, database: SqlFeedbackStore
) -> None:
    before = datetime.now(UTC)
    _admin(gw, "load", {"model": "coffee-shop@2"})
    _admin(gw, "unload", {"model": "coffee-shop@2"})
    _admin(gw, "promote", {"domain": "coffee-shop", "version": 2})
    _admin(gw, "rollback", {"domain": "coffee-shop"})
    _admin(gw, "canary", {"domain": "coffee-shop", "version": 2, "weight": 10})
    _admin(gw, "canary/stop", {"domain": "coffee-shop", "reason": "too chatty"})
    _admin(gw, "capture", {"domain": "coffee-shop", "enabled": True, "retention_days": 7})
    trail = _trail(database)
    assert [(e.action, e.target) for e in trail] == [
        ("adapters.load", "coffee-shop@v2"),
        ("adapters.unload", "coffee-shop@v2"),
        ("adapters.promote", "coffee-shop@v2"),
        ("adapters.rollback", "coffee-shop@v1"),
        ("adapters.canary", "coffee-shop@v2"),
        ("adapters.canary_stop", "coffee-shop@v2"),
        ("adapters.capture", "coffee-shop"),
    ]
    assert {e.actor for e in trail} == {ACTOR}
    assert all(before <= e.created_at <= datetime.now(UTC) for e in trail)
    assert trail[0].details == {"model": "coffee-shop@2"}
    assert trail[2].details == {"alias": "prod"}
    assert trail[4].details["weight"] == 10 and trail[4].details["guard"]["min_answers"] == 20
    assert trail[5].details == {"reason": "too chatty"}
    assert trail[6].details == {"enabled": True, "retention_days": 7}
    assert ADMIN_KEY not in repr(trail)  # its hash's first 12 digits, never the key


def test_refused_and_read_only_calls_are_not_recorded(
    gw: Running, database: SqlFeedbackStore
) -> None:
    promote = {"domain": "coffee-shop", "version": 2}
    assert gw.client.post("/admin/adapters/promote", json=promote).status_code == 401
    unknown = {"domain": "coffee-shop", "version": 9}
    assert gw.client.post("/admin/adapters/promote", json=unknown, headers=ADMIN).status_code == 404
    assert gw.client.get("/admin/adapters", headers=ADMIN).status_code == 200
    assert _trail(database) == []


def test_a_database_that_fails_never_fails_the_action(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        def record(self, event: AuditEvent) -> None:
            raise DatabaseError("database down: INSERT ... ('the row')")

    gw.gateway.audit = AdminAudit(Down(), gw.gateway.metrics)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="lorastack.serve.audit"):
        promoted = _admin(gw, "promote", {"domain": "coffee-shop", "version": 2})
    assert promoted.json()["aliases"]["prod"] == 2  # done, whatever the trail
    [line] = [r.getMessage() for r in caplog.records]
    assert "adapters.promote of coffee-shop@v2" in line and "DatabaseError" in line
    assert "the row" not in line
    failures = gw.gateway.metrics.registry.get_sample_value(
        "lorastack_audit_failures_total", {"action": "adapters.promote"}
    )
    assert failures == 1


def test_a_gateway_without_a_database_records_nothing(
    start_gateway: Callable[..., Running], publish: Callable[..., Any]
) -> None:
    publish("coffee-shop", 3)
    gw = start_gateway()
    assert gw.gateway.audit.log is None
    _admin(gw, "promote", {"domain": "coffee-shop", "version": 2})
    refused = gw.client.get("/admin/audit", headers=ADMIN)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "database_unavailable"


# -- GET /admin/audit ---------------------------------------------------------------------


def _audit(gw: Running, headers: dict[str, str] = ADMIN, **params: Any) -> httpx.Response:
    return gw.client.get("/admin/audit", params=params, headers=headers)


def test_the_audit_report_newest_first_filtered(gw: Running, database: SqlFeedbackStore) -> None:
    _admin(gw, "promote", {"domain": "coffee-shop", "version": 2})
    _admin(gw, "rollback", {"domain": "coffee-shop"})
    _admin(gw, "capture", {"domain": "coffee-shop", "enabled": False})
    SqlAuditLog(database.engine).record(
        AuditEvent(datetime.now(UTC), "cli:ops", "keys.create", "batch-job", {"rpm": 60})
    )
    everything = _audit(gw)
    assert everything.status_code == 200, everything.text
    report = everything.json()
    assert (report["since"], report["action"]) == (None, None)
    assert [e["action"] for e in report["events"]] == [
        "keys.create",
        "adapters.capture",
        "adapters.rollback",
        "adapters.promote",
    ]
    assert report["events"][0] == {
        "created_at": report["events"][0]["created_at"],
        "actor": "cli:ops",
        "action": "keys.create",
        "target": "batch-job",
        "details": {"rpm": 60},
    }
    adapters = _audit(gw, action="adapters", limit=2, since="1h").json()
    assert [e["action"] for e in adapters["events"]] == ["adapters.capture", "adapters.rollback"]
    assert adapters["since"] is not None
    one = _audit(gw, action="adapters.promote").json()["events"]
    assert [(e["actor"], e["target"]) for e in one] == [(ACTOR, "coffee-shop@v2")]
    assert _audit(gw, since="2999-01-01").json()["events"] == []


def test_the_audit_report_needs_the_admin_key_and_good_parameters(gw: Running) -> None:
    assert _audit(gw, {}).status_code == 401
    for params, param in (({"since": "3x"}, "query.since"), ({"limit": "0"}, "query.limit")):
        refused = _audit(gw, **params)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["param"], error["code"]) == (param, "invalid_value")
