"""The gateway fuzzed from its own /openapi.json: no 5xx, every answer as documented.

schemathesis generates valid and invalid requests for every operation the document
lists and checks each answer: never a server error, a status the document lists, the
content type it names, a body that matches its schema. Bounded: a fixed number of
examples per operation, in front of the scripted fake engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from lorastack.db import SqlFeedbackStore, make_engine
from tests.unit.serve.conftest import ADMIN_KEY, Running

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def gw(start_gateway: Callable[..., Running], tmp_path: Path) -> Iterator[Running]:
    """A gateway with every part: a database too (without one, feedback, keys and usage
    are 503s)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fuzz.db'}")
    yield start_gateway(feedback_store=SqlFeedbackStore(engine))
    engine.dispose()


def _fuzz(operation: Any, mode: GenerationMode) -> None:
    headers = (
        {"authorization": f"Bearer {ADMIN_KEY}"} if operation.path.startswith("/admin") else {}
    )

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_gateway_fail_or_break_its_schema(
    gw: Running, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        # Without a body or parameters there is nothing invalid to send.
        if mode is GenerationMode.POSITIVE or operation.get_request_payload_content_types():
            _fuzz(operation, mode)
