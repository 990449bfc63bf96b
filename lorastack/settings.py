"""The one settings object for every lorastack process.

Values come from, highest priority first: keyword arguments, `LORASTACK_*`
environment variables (nested fields with `__`, e.g. `LORASTACK_ENGINE__PORT`),
the YAML or TOML file named by `LORASTACK_CONFIG`, then the defaults below.
Settings are read once per process (`get_settings`) and fail fast: a bad
value stops the program with a message naming the variable, not a traceback
at first use.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from lorastack.errors import SettingsError

ENV_PREFIX = "LORASTACK_"
CONFIG_ENV = "LORASTACK_CONFIG"
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"

# vLLM accepts only these values for --max-lora-rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

MetricsAuth = Literal["open", "key"]
"""Who may read the gateway's /metrics (`GatewaySettings.metrics_auth`)."""
UpstreamKind = Literal["vllm", "vllm-resolver", "ray-serve"]
"""What the gateway's upstreams are (`GatewaySettings.upstream_kind`)."""


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return port


class EngineSettings(BaseModel):
    """How the vLLM engine is started. Defaults suit a laptop-class CPU."""

    host: str = "127.0.0.1"
    """Address vLLM binds to. It stays on loopback: only the gateway talks to it."""
    port: int = 8100
    """Private port of vLLM's OpenAI server."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` picks CUDA when a GPU is visible, else the CPU build's defaults."""
    max_model_len: int = 2048
    """Longest prompt plus answer, in tokens. Higher: more KV-cache memory per request."""
    max_loras: int = 8
    """Adapters resident in one batch. Higher: more domains at once, more memory. 8 (was 2):
    as many as the gateway keeps loaded by default (`max_cpu_loras`), so that every loaded
    domain can share a batch and 8 concurrent streams never wait for a slot; with
    lorastack's CPU LoRA ops a slot costs tens of MB and mixing domains little
    (docs/performance.md)."""
    max_cpu_loras: int = 8
    """Adapters kept in host memory, ready to swap in without reading disk; also how many
    the gateway keeps loaded (`gateway.max_adapters`)."""
    lora_ops: Literal["lorastack", "vllm"] = "lorastack"
    """LoRA ops of the CPU engine: `lorastack` (serve/cpu_lora, adapters at close to the base
    model's speed) or `vllm` (vLLM's own). Ignored on GPUs, which keep vLLM's kernels."""
    lora_compile: bool = False
    """Compile the model on the CPU engine with LoRA on, as vLLM does without it (lorastack's
    ops only): base and adapter requests run faster, but every start compiles for minutes
    (vLLM 0.32 recompiles on the CPU at each start). docs/performance.md has the numbers."""
    gpu_memory_utilization: float | None = None
    """Fraction of device memory vLLM reserves (on the CPU: of RAM). None: by device,
    0.9 on a GPU (vLLM's usual share) and 0.3 on the CPU (the CPU build's workers refuse
    to start with more)."""
    cpu_kv_cache_gib: int = 1
    """KV cache size on the CPU build (VLLM_CPU_KVCACHE_SPACE), in GiB."""
    tensor_parallel_size: int = 1
    """GPUs one model is split across."""
    dtype: str = "auto"
    """Weights dtype passed to vLLM (`auto`, `bfloat16`, `float16`, `float32`)."""
    startup_timeout_s: float = 600.0
    """How long to wait for the engine's /health before giving up."""
    extra_args: list[str] = Field(default_factory=list)
    """Further vLLM command-line flags, passed through unchanged."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """vLLM's log level in the engine's log (`VLLM_LOGGING_LEVEL`), set whatever this
    process's environment says: importing TRL (training in the same process, as
    `quickstart` does) sets that variable to ERROR, which would leave the engine's log
    without vLLM's start-up lines and lorastack's resolver lines."""

    @field_validator("port")
    @classmethod
    def _valid_port(cls, port: int) -> int:
        return _check_port(port)

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _valid_fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(f"must be in (0, 1], got {value}")
        return value

    @field_validator("max_model_len", "max_loras", "max_cpu_loras", "tensor_parallel_size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @model_validator(mode="after")
    def _cpu_cache_holds_batch(self) -> EngineSettings:
        if self.max_cpu_loras < self.max_loras:
            raise ValueError(
                f"max_cpu_loras ({self.max_cpu_loras}) must be at least "
                f"max_loras ({self.max_loras})"
            )
        return self


class GatewaySettings(BaseModel):
    """The OpenAI-compatible gateway that clients talk to."""

    host: str = "127.0.0.1"
    """Bind address. Beyond loopback, a gateway without any key refuses every request."""
    port: int = 8000
    api_keys: list[str] = Field(default_factory=list)
    """Client keys accepted as `Authorization: Bearer KEY` for every domain."""
    keys_file: Path | None = None
    """YAML file of client keys, each limited to some domains (see docs); read at start."""
    admin_key: str | None = None
    """Key for the /admin API; the admin API is disabled without one."""
    metrics_auth: MetricsAuth = "open"
    """Who may read /metrics: `open`, anyone (while the gateway has keys, a caller without
    a valid one sees no domain's name: those series are summed under `domain="_other"`);
    `key`, a valid client key or the admin key only (401 otherwise). A client key limited
    to some domains sees only those by name."""
    upstreams: list[str] = Field(default_factory=list)
    """Already running vLLM servers to front; empty: `lorastack serve` starts its own."""
    upstream_kind: UpstreamKind = "vllm"
    """What the `upstreams` are. `vllm`: vLLM servers the gateway loads adapters into
    through their management API. `vllm-resolver`: servers that load a version on its first
    request by name (lorastack's LoRA resolver; also an llm-d / Inference Gateway in front
    of them): the gateway never loads or unloads. `ray-serve`: Ray Serve LLM's OpenAI app
    (`lorastack deploy ray`): a version is `<base model>:<domain>@v<N>` there, loaded by
    Ray on demand; health on `/-/healthz`. Without upstreams (the gateway's own vLLM) it
    does not apply."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted (413 above)."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Longest a request body may take to arrive (408 after)."""
    max_headers: int = Field(default=100, ge=10)
    """Most request headers accepted (431 above), checked before any routing."""
    max_header_bytes: int = Field(default=32_768, ge=1024)
    """Largest total size of a request's headers (431 above)."""
    header_timeout_s: float = Field(default=30.0, gt=0)
    """Longest a request's headers may take to arrive; the connection is closed after."""
    engine_read_timeout_s: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices("engine_read_timeout_s", "request_timeout_s"),
    )
    """Longest the gateway waits for the engine's next bytes: for a whole answer, the
    entire generation; for a stream, the gap between two pieces (a stream that keeps
    flowing is never cut). Formerly `request_timeout_s`, still accepted."""
    guardrails: bool = True
    """Apply each domain's PII policy to prompts and answers."""
    max_adapters: int | None = None
    """Adapters kept loaded before the least recently used idle one is unloaded
    (default: the engine's max_cpu_loras)."""
    keys_refresh_s: float = Field(default=5.0, gt=0)
    """How often the gateway rereads the keys made by `lorastack keys` (the database's):
    a key created, revoked or rotated elsewhere takes effect within this time."""
    limits_storage: str = "database"
    """Where the keys' rate-limit counters live: `database` (the lorastack database, shared
    by the gateways that share it), `memory` (this process only), or a `limits` storage URI
    such as `redis://host:6379`."""
    usage_retention_days: int | None = Field(default=400, ge=1)
    """Days each answer's usage record is kept (the gateway purges older ones every hour);
    None: kept until `lorastack usage purge`. The default covers a year of invoices."""
    max_concurrent_per_domain: int | None = Field(default=None, ge=1)
    """Requests one domain may have in flight on this gateway (429 above); None: no cap."""
    domain_concurrency: dict[str, int] = Field(default_factory=dict)
    """Per-domain caps on requests in flight, overriding `max_concurrent_per_domain`."""

    @field_validator("port")
    @classmethod
    def _valid_port(cls, port: int) -> int:
        return _check_port(port)

    @property
    def loopback(self) -> bool:
        """Whether only this host can reach the gateway (then it may run without keys)."""
        return self.host in _LOOPBACK_HOSTS

    @field_validator("domain_concurrency")
    @classmethod
    def _positive_caps(cls, caps: dict[str, int]) -> dict[str, int]:
        for domain, cap in caps.items():
            if cap < 1:
                raise ValueError(f"the cap of {domain} must be at least 1, got {cap}")
        return caps

    @model_validator(mode="after")
    def _valid_admin_key(self) -> GatewaySettings:
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise ValueError("admin_key must be at least 16 characters")
        return self


class UiSettings(BaseModel):
    """The Gradio chat UI."""

    host: str = "127.0.0.1"
    port: int = 7860

    @field_validator("port")
    @classmethod
    def _valid_port(cls, port: int) -> int:
        return _check_port(port)


class PublishSettings(BaseModel):
    """The quality gate `lorastack publish` applies to a run against the domain's `prod`."""

    loss_tolerance: float = Field(default=0.02, ge=0.0, le=1.0)
    """How much higher than prod's the candidate's test loss may be, relative (0.02: 2%)."""
    rate_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    """How much lower than prod's a rule's pass rate, the fact recall or the exact match
    may be, absolute (0.05: 5 percentage points)."""


class RegistrySettings(BaseModel):
    """Where the adapter registry keeps its index and the adapters' files."""

    index: Literal["folder", "database"] = "database"
    """`database` (the default): the index (domains, versions, aliases, canaries, capture)
    in the lorastack database (`database_url`: SQLite under `home` by default, PostgreSQL
    for several machines) with transactions, the adapters' files in the blob store
    (`store`). The first open moves a folder registry found in `<home>/adapters/` in
    (`lorastack registry migrate` moves another one). `folder`: everything under
    `<home>/adapters/`, locked with file locks (one machine, or a shared filesystem whose
    locks work)."""
    store: str | None = None
    """The blob store of the database index: a folder (a path or `file://`), or object
    storage through fsspec (`s3://bucket/prefix`, `gs://...`, `az://...`). None:
    `<home>/blobs`. Credentials come from the usual places (environment, instance roles,
    `store_options`), never from this URL."""
    store_options: dict[str, Any] = Field(default_factory=dict)
    """Passed to the fsspec filesystem, e.g. `{"endpoint_url": "http://minio:9000"}` for an
    S3-compatible server."""
    cache_dir: Path | None = None
    """Local copies of the versions served or evaluated with the database index, verified
    once when made. None: `<home>/cache/adapters`. Keep it on local disk."""


class Settings(BaseSettings):
    """Everything a lorastack process needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Path("~/.lorastack")
    """Root of all state: `models/`, `adapters/` (the registry), `policies/`, `runs/`."""
    base_model: str = BUNDLED_MODEL_NAME
    """Base model served when none is named: a name from `lorastack model list`."""
    max_lora_rank: int = 16
    """Largest LoRA rank the registry accepts and the engine reserves memory for."""
    database_url: str | None = None
    """Where captured exchanges and feedback live: a SQLAlchemy URL, `sqlite:///PATH` or
    `postgresql://USER:PASSWORD@HOST:PORT/DB` (PostgreSQL when several gateways share it).
    None: `sqlite:///<home>/lorastack.db`."""
    guard_policy: Path | None = None
    """The guardrail policy file of the base model and of every domain without its own
    `policies/<domain>.yaml`. None: the shipped `guardrails/policies/default.yaml`."""
    engine: EngineSettings = Field(default_factory=EngineSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, home: Path) -> Path:
        home = home.expanduser().absolute()
        if home.exists() and not home.is_dir():
            raise ValueError(f"{home} exists and is not a folder")
        return home

    @field_validator("max_lora_rank")
    @classmethod
    def _supported_rank(cls, rank: int) -> int:
        if rank not in VLLM_LORA_RANKS:
            allowed = ", ".join(str(r) for r in VLLM_LORA_RANKS)
            raise ValueError(f"must be one of {allowed} (what vLLM supports), got {rank}")
        return rank

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        if url is None:
            return None
        # Imported here: only a process that sets a URL pays for SQLAlchemy at start.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise ValueError("not a database URL (sqlite:///PATH or postgresql://...)") from None
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
        return url

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def blobs_url(self) -> str:
        """The registry's blob store (`registry.store`, default `<home>/blobs`)."""
        return self.registry.store or str(self.home / "blobs")

    @property
    def adapter_cache_dir(self) -> Path:
        """Local copies of the database registry's versions (`registry.cache_dir`)."""
        cache = self.registry.cache_dir or self.home / "cache" / "adapters"
        return cache.expanduser().absolute()

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @field_validator("guard_policy")
    @classmethod
    def _expand_policy(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().absolute()

    @property
    def policies_dir(self) -> Path:
        """Guardrail policies, one `<domain>.yaml` each."""
        return self.home / "policies"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(_config_file_source(settings_cls, Path(config_file)))
        return tuple(sources)


def _config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise SettingsError(f"{CONFIG_ENV}={path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    raise SettingsError(f"{CONFIG_ENV}={path}: use a .yaml, .yml or .toml file")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = "__".join(str(part) for part in item["loc"])
        variable = f"{ENV_PREFIX}{field.upper()}" if field else ENV_PREFIX.rstrip("_")
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting (check its spelling)"
        lines.append(f"{variable}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings now; raise `SettingsError` with a readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    except (ValueError, OSError) as error:  # a config file that does not parse
        raise SettingsError(f"invalid settings: {error}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
