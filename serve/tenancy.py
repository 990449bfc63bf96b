"""A gateway's keys and limits from the settings: what lets many teams share one gateway.

The keys of the settings and the keys file, plus the database's (`lorastack keys`) when the
gateway has a database; each key's limits counted where the settings say
(`gateway.limits_storage`); each domain's cap on requests in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits.storage import MemoryStorage, Storage, storage_from_string

from lorastack.errors import LorastackError, SettingsError
from lorastack.serve.keys import KeyStore
from lorastack.serve.rate_limits import DomainCaps, KeyLimiter
from lorastack.settings import GatewaySettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

DATABASE = "database"
MEMORY = "memory"


@dataclass
class Tenancy:
    keys: KeyStore
    limiter: KeyLimiter
    caps: DomainCaps | None


def database_engine(store: object) -> Engine | None:
    """The SQLAlchemy engine of the gateway's database (`SqlFeedbackStore.engine`); None
    without one, or behind a store that is not SQL (tests' fakes)."""
    from sqlalchemy import Engine  # here: only a gateway with a database pays for it

    engine = getattr(store, "engine", None)
    return engine if isinstance(engine, Engine) else None


def build_tenancy(settings: GatewaySettings, engine: Engine | None) -> Tenancy:
    """`engine`: the lorastack database's, None when this gateway has none (then only the
    settings' keys, and limits counted in memory)."""
    managed = None
    if engine is not None:
        from lorastack.db.key_store import SqlKeyStore  # only with a database: SQLAlchemy

        managed = SqlKeyStore(engine)
    keys = KeyStore.from_settings(
        settings.api_keys,
        settings.keys_file,
        settings.admin_key,
        managed=managed,
        allow_open=settings.loopback,
    )
    keys.refresh()
    if not settings.loopback and not keys.has_keys:
        raise SettingsError(
            f"binding the gateway to {settings.host} without api_keys would expose it to the "
            "network unauthenticated; set LORASTACK_GATEWAY__API_KEYS or __KEYS_FILE, or "
            "create a key with `lorastack keys create`"
        )
    caps = None
    if settings.max_concurrent_per_domain is not None or settings.domain_concurrency:
        caps = DomainCaps(settings.max_concurrent_per_domain, settings.domain_concurrency)
    return Tenancy(keys, KeyLimiter(_limits_storage(settings.limits_storage, engine)), caps)


def _limits_storage(setting: str, engine: Engine | None) -> Storage:
    if setting == MEMORY:
        return MemoryStorage()
    if setting == DATABASE:
        if engine is None:
            logger.warning(
                "rate limits are counted in this process only: the database did not open"
            )
            return MemoryStorage()
        from lorastack.db.rate_storage import SqlRateStorage

        return SqlRateStorage(engine)
    try:
        storage = storage_from_string(setting)
    except (LorastackError, ValueError, ImportError) as error:
        raise SettingsError(
            f"gateway.limits_storage {setting!r}: {error} (use `database`, `memory` or a "
            "limits storage URI such as redis://host:6379)"
        ) from None
    except Exception as error:  # the storage's own configuration errors
        raise SettingsError(f"gateway.limits_storage {setting!r}: {error}") from None
    if not isinstance(storage, Storage):  # an `async+...` URI: the gateway's calls block
        raise SettingsError(f"gateway.limits_storage {setting!r}: use a storage without async+")
    return storage
