"""Per-domain guardrail policies: what to do with each entity type, each way.

A policy is a YAML file. `$LORASTACK_HOME/policies/<domain>.yaml` applies to
one domain; without one, the policy shipped in `policies/default.yaml` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lorastack.errors import PolicyError
from lorastack.guardrails.entities import BUILTIN_ENTITIES, Action, CustomEntity, Direction
from lorastack.guardrails.leaks import SYSTEM_PROMPT
from lorastack.manifest import check_name

_TYPE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,40}$")


def _entity_type(name: str) -> str:
    if not _TYPE_NAME.fullmatch(name):
        raise ValueError(f"entity type {name!r} must be upper case, like ORDER_NUMBER")
    return name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {error}") from None
    return pattern


EntityType = Annotated[str, AfterValidator(_entity_type)]
Regex = Annotated[str, AfterValidator(_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityRule(_Strict):
    """How one entity type is handled; unset fields fall back to the policy's defaults."""

    input: Action | None = None
    output: Action | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Findings scoring below this are ignored."""


class CustomEntitySpec(_Strict):
    """A domain's own entity type: regex patterns (with context words) or a deny-list."""

    type: EntityType
    patterns: list[Regex] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)
    """Words that raise a match's score when one comes within five words before it ("order")."""
    deny_list: list[str] = Field(default_factory=list)
    """Exact values that are always this entity (e.g. employee names)."""
    score: float = Field(default=0.6, ge=0.0, le=1.0)

    def to_entity(self) -> CustomEntity:
        return CustomEntity(
            type=self.type,
            patterns=tuple(self.patterns),
            deny_list=tuple(self.deny_list),
            context=tuple(self.context),
            score=self.score,
        )


class GuardPolicy(_Strict):
    """A domain's PII policy."""

    name: str = "default"
    defaults: EntityRule = EntityRule(input=Action.MASK, output=Action.REDACT, threshold=0.5)
    entities: dict[EntityType, EntityRule] = Field(default_factory=dict)
    custom: list[CustomEntitySpec] = Field(default_factory=list)
    allow_list: list[str] = Field(default_factory=list)
    """Values that are never masked, e.g. the company's public support address."""
    restore_output: bool = True
    """Put the user's own masked values back into the answer shown to that user."""
    fail_open: bool = False
    """If detection fails, pass text on unscanned (logged loudly) instead of refusing it."""
    timeout_s: float = Field(default=5.0, gt=0.0)
    """Longest a detection may take before it counts as failed."""
    system_prompt_leak: Literal["redact", "block", "allow"] = "redact"
    """An answer repeating the domain's system prompt: the copied span becomes
    `<SYSTEM_PROMPT>` (redact), the answer is refused (block), or it passes (allow)."""
    prompt_injection: Literal["flag", "block", "allow"] = "flag"
    """A user message that looks like a prompt injection: logged and counted (flag),
    refused with a 400 (block), or not screened (allow)."""

    def entity_types(self) -> list[str]:
        """Every type this policy looks for (the built-in ones and its custom ones)."""
        custom = [c.type for c in self.custom]
        return [*BUILTIN_ENTITIES, *(t for t in custom if t not in BUILTIN_ENTITIES)]

    def custom_entities(self) -> tuple[CustomEntity, ...]:
        return tuple(spec.to_entity() for spec in self.custom)

    def action(self, entity_type: str, direction: Direction) -> Action:
        if entity_type == SYSTEM_PROMPT:
            return Action(self.system_prompt_leak)
        rule = self.entities.get(entity_type)
        chosen = getattr(rule, direction.value) if rule is not None else None
        return chosen or getattr(self.defaults, direction.value) or Action.MASK

    def threshold(self, entity_type: str) -> float:
        rule = self.entities.get(entity_type)
        if rule is not None and rule.threshold is not None:
            return rule.threshold
        return self.defaults.threshold if self.defaults.threshold is not None else 0.5

    def allowing(self, values: Sequence[str]) -> GuardPolicy:
        """This policy with `values` added to its allow-list (a domain's vocabulary,
        guardrails/vocabulary.py); itself when there are none."""
        added = [value for value in values if not self.is_allowed_value(value)]
        if not added:
            return self
        return self.model_copy(update={"allow_list": [*self.allow_list, *added]})

    def denied_values(self) -> list[str]:
        """The values its custom entity types always match (their deny-lists)."""
        return [value for spec in self.custom for value in spec.deny_list]

    def is_allowed_value(self, value: str) -> bool:
        folded = value.strip().casefold()
        return any(folded == allowed.strip().casefold() for allowed in self.allow_list)


def parse_policy(data: Any, source: str) -> GuardPolicy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a YAML mapping")
    try:
        return GuardPolicy.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'policy'}: {item['msg']}"
            for item in error.errors()
        )
        raise PolicyError(f"{source}: {problems}") from None


def load_policy(path: Path) -> GuardPolicy:
    """Read and validate one policy file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyError(f"cannot read policy {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"{path} is not valid YAML: {error}") from None
    return parse_policy(data, str(path))


def default_policy() -> GuardPolicy:
    text = resources.files("lorastack.guardrails").joinpath("policies/default.yaml").read_text()
    return parse_policy(yaml.safe_load(text), "default policy")


class PolicyStore:
    """Policies by domain, from a folder of `<domain>.yaml` files.

    A domain without a file, and the base model (domain None), get `fallback`: the
    deployment's own default policy file, else the shipped `policies/default.yaml`.
    """

    def __init__(self, folder: Path, fallback: Path | None = None) -> None:
        self.folder = folder
        self.fallback = fallback

    def path_for(self, domain: str) -> Path:
        return self.folder / f"{check_name(domain)}.yaml"

    def source(self, domain: str | None) -> Path | None:
        """The file whose policy applies to `domain`; None for the shipped default."""
        if domain is not None:
            path = self.path_for(domain)
            if path.is_file():
                return path
        return self.fallback

    def get(self, domain: str | None) -> GuardPolicy:
        path = self.source(domain)
        return default_policy() if path is None else load_policy(path)
