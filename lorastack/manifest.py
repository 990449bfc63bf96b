"""The adapter manifest: the contract between training and serving, defined once.

`train` writes what it knows into a manifest when it publishes an adapter; the
gateway reads it to serve the domain. A domain's aliases (`prod`, custom ones)
live in its `DomainIndex`, beside the versions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lorastack.errors import InvalidName
from lorastack.rules import BrandRule

MANIFEST_FILE = "manifest.json"
DOMAIN_INDEX_FILE = "domain.json"
SCHEMA_VERSION = 1
DEFAULT_ALIAS = "prod"

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_name(name: str, kind: str = "domain") -> str:
    """Return `name` if it is a plain name (lower case, digits, dashes); else raise.

    Names become folder names and URL parts, so anything that could climb out
    of a folder (`../x`, `/abs`, `a/b`) or differ only by case is refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"{kind} name {name!r} is not a plain name: use 1-63 lower-case letters, "
            "digits and dashes, starting with a letter or digit"
        )
    return name


def _valid_domain(name: str) -> str:
    try:
        return check_name(name, "domain")
    except InvalidName as error:
        raise ValueError(str(error)) from None


def _valid_alias(name: str) -> str:
    try:
        check_name(name, "alias")
    except InvalidName as error:
        raise ValueError(str(error)) from None
    if re.fullmatch(r"v?[0-9]+", name):
        raise ValueError(f"alias {name!r} would be read as a version number")
    return name


DomainName = Annotated[str, AfterValidator(_valid_domain)]
SystemPromptMode = Literal["prepend", "replace", "keep"]
AliasName = Annotated[str, AfterValidator(_valid_alias)]


def check_alias(name: str) -> str:
    """Return `name` if it can name an alias; raise `InvalidName` otherwise."""
    try:
        return _valid_alias(name)
    except ValueError as error:
        raise InvalidName(str(error)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelRef(_Strict):
    """The base model an adapter was trained on and must be served with."""

    name: str
    """Name in the model store (`lorastack model list`)."""
    checkpoint_sha256: str
    """Hash of the base checkpoint's files: serving on other weights is refused."""


class LoraSpec(_Strict):
    """The LoRA shape, copied from the adapter's `adapter_config.json`."""

    rank: int = Field(ge=1)
    alpha: float
    target_modules: list[str]


class AdapterManifest(_Strict):
    """Everything the gateway needs to know about one published adapter version."""

    schema_version: int = SCHEMA_VERSION
    domain: DomainName
    version: int = Field(ge=1)
    display_name: str
    description: str = ""
    system_prompt: str = ""
    """The brand voice: added to conversations that bring no system prompt."""
    system_prompt_mode: SystemPromptMode = "prepend"
    """When the client sends its own system prompt: `prepend` the brand voice to it,
    `replace` it, or `keep` the client's alone."""
    base_model: BaseModelRef
    lora: LoraSpec
    adapter_sha256: str
    """Hash of `adapter_model.safetensors`, checked again before loading."""
    dataset_sha256: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Free-form evaluation results (loss, accuracy, win rate against the base model)."""
    training: dict[str, Any] = Field(default_factory=dict)
    """The resolved training configuration, when published from a `lorastack train` run."""
    rules: list[BrandRule] = Field(default_factory=list)
    """The brand rules its answers must follow (`lorastack/rules.py`): measured by
    `lorastack eval`, checked by the gateway on every served answer."""
    vocabulary: list[str] = Field(default_factory=list)
    """The business's own names its training data kept unmasked (names recurring across
    its records, `lorastack/guardrails/vocabulary.py`): the gateway's guard leaves them
    unmasked for this version too, so prompts look as they did in training."""
    forced: str | None = None
    """Why it was published although the quality gate refused it (`publish --force`)."""
    started_from: str | None = None
    """The version a preference run (`kto`, `dpo`) tuned further (`coffee-shop@v3`)."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def ref(self) -> str:
        return f"{self.domain}@v{self.version}"


class CanaryGuard(_Strict):
    """When the gateway stops a canary by itself: once each side has `min_answers`,
    if the canary's error rate exceeds prod's by `error_margin`, or a rule's pass
    rate falls below prod's by `rule_margin` (rates from 0 to 1)."""

    min_answers: int = Field(default=20, ge=1)
    error_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    rule_margin: float = Field(default=0.2, ge=0.0, le=1.0)


class Canary(_Strict):
    """A version that gets a share of a domain's traffic beside `prod`."""

    version: int = Field(ge=1)
    weight: float = Field(gt=0.0, le=100.0)
    """Percent of the domain's conversations sent to the canary."""
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    guard: CanaryGuard | None = Field(default_factory=CanaryGuard)
    """None: no automatic stop."""


CanaryOutcome = Literal["promoted", "stopped", "rolled back", "auto-stopped"]


class CanaryEnd(_Strict):
    """How the last canary of a domain ended."""

    version: int
    outcome: CanaryOutcome
    reason: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class CaptureSetting(_Strict):
    """Whether the gateway keeps a domain's served answers (masked) to learn from use."""

    enabled: bool = False
    """On: each answer is stored as the engine saw it, personal data masked, and clients
    may rate it (`POST /v1/feedback`)."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Captured exchanges (and their ratings) older than this are purged."""


class DomainIndex(BaseModel):
    """Per-domain state that is not part of any single version."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    domain: DomainName
    last_version: int = 0
    """Highest version ever assigned; removed versions are never reused."""
    aliases: dict[AliasName, int] = Field(default_factory=dict)
    """Alias name to version, e.g. `{"prod": 3}`."""
    alias_history: dict[AliasName, list[int]] = Field(default_factory=dict)
    """Versions each alias pointed to before, oldest first; `rollback` pops from it."""
    canary: Canary | None = None
    """The version that gets a share of the domain's traffic beside `prod`, if any."""
    last_canary: CanaryEnd | None = None
    capture: CaptureSetting | None = None
    """Capture of served answers; None (files written before it existed too): off."""
