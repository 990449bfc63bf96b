"""The registry the settings ask for (`registry.index`): in folders, or in the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorastack.models import ModelStore
from lorastack.registry.core import AdapterRegistry
from lorastack.settings import Settings

if TYPE_CHECKING:
    from lorastack.registry.database import DatabaseIndex


def open_registry(
    settings: Settings, models: ModelStore, *, max_rank: int | None = None
) -> AdapterRegistry:
    """The configured registry over `models`; `max_rank` (default `settings.max_lora_rank`):
    the largest LoRA rank it accepts for publishing."""
    rank = settings.max_lora_rank if max_rank is None else max_rank
    if settings.registry.index == "folder":
        return AdapterRegistry(settings.adapters_dir, models, rank)
    return AdapterRegistry(open_database_index(settings), models, rank)


def open_database_index(settings: Settings) -> DatabaseIndex:
    """The database index on the configured database and blob store, whatever
    `registry.index` says (`registry migrate` fills it before the switch)."""
    # Imported here: SQLAlchemy and fsspec only for the processes that use them.
    from lorastack.blobs import open_blob_store
    from lorastack.db.engine import database_url, make_engine
    from lorastack.registry.database import DatabaseIndex

    blobs = open_blob_store(settings.blobs_url, settings.registry.store_options)
    engine = make_engine(database_url(settings))
    return DatabaseIndex(engine, blobs, settings.adapter_cache_dir)
