"""Prometheus metrics of the gateway, labelled by domain.

Each app gets its own registry, so tests (and several gateways in one process)
never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
_STATES = ("absent", "loading", "ready", "failed", "unloading")


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
            "Failed requests by domain and error code",
            ["domain", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "lorastack_request_latency_seconds",
            "Request latency, end to end",
            ["domain"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "lorastack_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["domain"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "lorastack_tokens",
            "Tokens in (prompt) and out (completion)",
            ["domain", "direction"],
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
            "Personal data found, by entity type and action",
            ["domain", "direction", "entity", "action"],
            registry=r,
        )

    def response(self, domain: str, endpoint: str, status: int, error_code: str | None) -> None:
        """Every response the gateway sends, by status, and by error code when it failed."""
        self.requests.labels(domain, endpoint, str(status)).inc()
        if error_code is not None:
            self.errors.labels(domain, error_code).inc()

    def answered(self, domain: str, seconds: float, usage: dict[str, object] | None) -> None:
        """An answer that was given whole: its latency and its tokens."""
        self.latency.labels(domain).observe(seconds)
        for direction, field in (("in", "prompt_tokens"), ("out", "completion_tokens")):
            count = (usage or {}).get(field)
            self.tokens.labels(domain, direction).inc(count if isinstance(count, int) else 0)

    def first_token(self, domain: str, seconds: float) -> None:
        self.ttft.labels(domain).observe(seconds)

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
