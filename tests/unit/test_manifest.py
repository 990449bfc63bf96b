from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lorastack.errors import InvalidName
from lorastack.manifest import (
    AdapterManifest,
    BaseModelRef,
    DomainIndex,
    LoraSpec,
    check_alias,
    check_name,
)
from lorastack.registry import AdapterRef


@pytest.mark.parametrize("name", ["a", "coffee-shop", "acme2", "0x", "a" * 63])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../x", "/abs", "a/b", "Upper", "-lead", "a_b", "a b", "a" * 64, "x\n", ".."]
)
def test_names_that_are_not_plain_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match="not a plain name"):
        check_name(name)


def test_numeric_alias_is_refused_as_it_reads_as_a_version() -> None:
    assert check_alias("prod") == "prod"
    with pytest.raises(InvalidName, match="version number"):
        check_alias("3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("coffee", AdapterRef("coffee")),
        ("coffee@3", AdapterRef("coffee", version=3)),
        ("coffee@v3", AdapterRef("coffee", version=3)),
        ("coffee@prod", AdapterRef("coffee", alias="prod")),
        ("coffee@canary-2", AdapterRef("coffee", alias="canary-2")),
    ],
)
def test_adapter_references_parse(text: str, expected: AdapterRef) -> None:
    assert AdapterRef.parse(text) == expected


@pytest.mark.parametrize("text", ["../x@1", "coffee@", "coffee@v0", "coffee@../x", "Coffee"])
def test_bad_adapter_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidName):
        AdapterRef.parse(text)


def _manifest(**overrides: object) -> AdapterManifest:
    fields: dict[str, object] = {
        "domain": "coffee",
        "version": 1,
        "display_name": "Coffee",
        "base_model": BaseModelRef(name="tiny", checkpoint_sha256="ab" * 32),
        "lora": LoraSpec(rank=8, alpha=16, target_modules=["q_proj"]),
        "adapter_sha256": "cd" * 32,
        "metrics": {"eval_loss": 1.5},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return AdapterManifest.model_validate(fields)


def test_manifest_round_trips_through_json() -> None:
    manifest = _manifest()
    assert AdapterManifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert manifest.ref == "coffee@v1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"domain": "../x"},
        {"version": 0},
        {"unexpected": 1},
        {"lora": {"rank": 0, "alpha": 1, "target_modules": []}},
    ],
)
def test_manifest_rejects_bad_fields(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _manifest(**overrides)


def test_domain_index_rejects_bad_alias_names() -> None:
    with pytest.raises(ValidationError):
        DomainIndex(domain="coffee", aliases={"../prod": 1})
