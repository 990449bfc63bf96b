"""Prometheus metrics of the gateway, labelled by domain (and, for answers, by version).

Each app gets its own registry, so tests (and several gateways in one process)
never share counters. A caller of /metrics who may not see some domains gets their
series folded together under `domain="_other"` (`render(visible=...)`), so the
exposition never names a domain to someone who could not use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
_STATES = ("absent", "loading", "ready", "failed", "unloading")

FOLDED = "_other"
"""The `domain` of the series folded together for a caller who may not see their domains
(never a domain's name: those start with a letter or a digit)."""
# Labels whose values name a domain (an adapter is `domain@vN`) or its brand rules.
_NAMING_LABELS = frozenset({"domain", "adapter", "rule"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lorastack_requests",
            "Requests by domain, endpoint and status",
            ["domain", "endpoint", "status"],
            registry=r,
        )
        self.errors = Counter(
            "lorastack_request_errors",
            "Failed requests by domain, error code and adapter version",
            ["domain", "code", "version"],
            registry=r,
        )
        self.latency = Histogram(
            "lorastack_request_latency_seconds",
            "Request latency, end to end",
            ["domain", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "lorastack_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["domain", "version"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "lorastack_tokens",
            "Tokens in (prompt) and out (completion)",
            ["domain", "version", "direction"],
            registry=r,
        )
        self.adapter_loads = Counter(
            "lorastack_adapter_loads",
            "Adapter loads by result",
            ["domain", "result"],
            registry=r,
        )
        self.adapter_evictions = Counter(
            "lorastack_adapter_evictions",
            "Idle adapters unloaded to make room",
            ["domain"],
            registry=r,
        )
        self.adapter_load_seconds = Histogram(
            "lorastack_adapter_load_seconds",
            "Time to load an adapter",
            ["domain"],
            registry=r,
        )
        self.adapter_states = Gauge(
            "lorastack_adapter_state",
            "1 for the state each adapter version is in",
            ["domain", "adapter", "state"],
            registry=r,
        )
        self.guardrail_actions = Counter(
            "lorastack_guardrail_actions",
            "Personal data found, by entity type and action (SYSTEM_PROMPT: an answer "
            "repeating the domain's system prompt)",
            ["domain", "direction", "entity", "action"],
            registry=r,
        )
        self.prompt_injections = Counter(
            "lorastack_prompt_injections",
            "Requests whose user messages match a prompt-injection pattern, by kind and action",
            ["domain", "kind", "action"],
            registry=r,
        )
        self.rule_checks = Counter(
            "lorastack_brand_rule_checks",
            "Served answers checked against their version's brand rules, by result",
            ["domain", "version", "rule", "result"],
            registry=r,
        )
        self.rule_checks_dropped = Counter(
            "lorastack_brand_rule_checks_dropped",
            "Answers left unchecked because too many checks were waiting",
            ["domain"],
            registry=r,
        )
        self.canary_weights = Gauge(
            "lorastack_canary_weight_percent",
            "Percent of the domain's conversations sent to its canary (0: none runs)",
            ["domain"],
            registry=r,
        )
        self.capture_written = Counter(
            "lorastack_capture_written",
            "Captured exchanges written to the feedback store",
            ["domain"],
            registry=r,
        )
        self.capture_dropped = Counter(
            "lorastack_capture_dropped",
            "Captured exchanges lost: queue_full, store_error, shutdown, error",
            ["domain", "reason"],
            registry=r,
        )
        self.feedback_ratings = Counter(
            "lorastack_feedback_ratings",
            "Ratings of served answers, by the version that wrote them",
            ["domain", "version", "rating"],
            registry=r,
        )
        self.canary_auto_stops = Counter(
            "lorastack_canary_auto_stops",
            "Canaries this gateway stopped because they did worse than prod",
            ["domain", "version"],
            registry=r,
        )
        self.usage_written = Counter(
            "lorastack_usage_written",
            "Answers' usage records written to the database",
            registry=r,
        )
        self.usage_dropped = Counter(
            "lorastack_usage_dropped",
            "Answers' usage records lost: queue_full, store_error, shutdown",
            ["reason"],
            registry=r,
        )
        self.audit_failures = Counter(
            "lorastack_audit_failures",
            "Admin actions done but not recorded in the audit trail (the database failed)",
            ["action"],
            registry=r,
        )

    def response(
        self,
        domain: str,
        endpoint: str,
        status: int,
        error_code: str | None,
        version: str,
    ) -> None:
        """Every response the gateway sends, by status, and by error code when it failed.

        `version`: the adapter version that answered (`v3`), "" for the base model or
        when the request failed before its `model` resolved."""
        self.requests.labels(domain, endpoint, str(status)).inc()
        if error_code is not None:
            self.errors.labels(domain, error_code, version).inc()

    def answered(
        self, domain: str, version: str, seconds: float, usage: dict[str, object] | None
    ) -> None:
        """An answer that was given whole: its latency and its tokens."""
        self.latency.labels(domain, version).observe(seconds)
        for direction, field in (("in", "prompt_tokens"), ("out", "completion_tokens")):
            count = (usage or {}).get(field)
            self.tokens.labels(domain, version, direction).inc(
                count if isinstance(count, int) else 0
            )

    def first_token(self, domain: str, version: str, seconds: float) -> None:
        self.ttft.labels(domain, version).observe(seconds)

    def rules_checked(self, domain: str, version: str, results: dict[str, bool]) -> None:
        """One answer text checked against its version's brand rules."""
        for rule, passed in results.items():
            self.rule_checks.labels(domain, version, rule, "pass" if passed else "fail").inc()

    def rule_check_dropped(self, domain: str) -> None:
        self.rule_checks_dropped.labels(domain).inc()

    def captured(self, domain: str, count: int) -> None:
        self.capture_written.labels(domain).inc(count)

    def capture_lost(self, domain: str, reason: str, count: int = 1) -> None:
        self.capture_dropped.labels(domain, reason).inc(count)

    def usage_recorded(self, count: int) -> None:
        self.usage_written.inc(count)

    def usage_lost(self, reason: str, count: int = 1) -> None:
        self.usage_dropped.labels(reason).inc(count)

    def audit_failed(self, action: str) -> None:
        self.audit_failures.labels(action).inc()

    def rated(self, domain: str, version: str, rating: int) -> None:
        self.feedback_ratings.labels(domain, version, "up" if rating > 0 else "down").inc()

    def canary_weight(self, domain: str, percent: float) -> None:
        self.canary_weights.labels(domain).set(percent)

    def canary_auto_stopped(self, domain: str, version: str) -> None:
        self.canary_auto_stops.labels(domain, version).inc()

    def adapter_state(self, domain: str, adapter: str, state: str) -> None:
        for candidate in _STATES:
            self.adapter_states.labels(domain, adapter, candidate).set(
                1 if candidate == state else 0
            )

    def adapter_loaded(self, domain: str, result: str, seconds: float | None) -> None:
        self.adapter_loads.labels(domain, result).inc()
        if seconds is not None:
            self.adapter_load_seconds.labels(domain).observe(seconds)

    def adapter_evicted(self, domain: str) -> None:
        self.adapter_evictions.labels(domain).inc()

    def guardrail(self, domain: str, direction: str, entity: str, action: str) -> None:
        self.guardrail_actions.labels(domain, direction, entity, action).inc()

    def injection(self, domain: str, kind: str, action: str) -> None:
        self.prompt_injections.labels(domain, kind, action).inc()

    def render(self, visible: Callable[[str], bool] | None = None) -> bytes:
        """The Prometheus text exposition. With `visible`, the series of every domain it
        refuses are folded under `domain="_other"`: counters and histograms summed, gauges
        left out (a sum of states or of canary weights means nothing)."""
        if visible is None:
            return generate_latest(self.registry)
        return generate_latest(_Folded(self.registry, visible))


class _Folded:
    """A registry as a caller who may see only some domains reads it."""

    def __init__(self, registry: CollectorRegistry, visible: Callable[[str], bool]) -> None:
        self._registry = registry
        self._visible = visible

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            folded = Metric(family.name, family.documentation, family.type, family.unit)
            folded.samples = _fold(family, self._visible)
            yield folded


def _fold(family: Metric, visible: Callable[[str], bool]) -> list[Sample]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for sample in family.samples:
        labels = sample.labels
        domain = labels.get("domain")
        if domain is not None and not visible(domain):
            if family.type == "gauge":
                continue
            labels = {k: FOLDED if k in _NAMING_LABELS else v for k, v in labels.items()}
        key = (sample.name, tuple(labels.items()))
        seen = samples.get(key)
        if seen is None:
            samples[key] = sample._replace(labels=labels)
        elif sample.name.endswith("_created"):  # when a series began: the earliest
            samples[key] = seen._replace(value=min(seen.value, sample.value))
        else:
            samples[key] = seen._replace(value=seen.value + sample.value)
    return list(samples.values())
