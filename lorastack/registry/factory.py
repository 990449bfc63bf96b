"""The registry the settings ask for (`registry.index`): in the database, or in folders."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lorastack.models import ModelStore
from lorastack.registry.core import AdapterRegistry
from lorastack.registry.folder import FolderIndex
from lorastack.registry.migrate import MOVED_FILE, adopt_folder_registry
from lorastack.settings import Settings

if TYPE_CHECKING:
    from lorastack.registry.database import DatabaseIndex

logger = logging.getLogger(__name__)


def open_registry(
    settings: Settings, models: ModelStore, *, max_rank: int | None = None
) -> AdapterRegistry:
    """The configured registry over `models`; `max_rank` (default `settings.max_lora_rank`):
    the largest LoRA rank it accepts for publishing.

    The database index moves the home's folder registry (`<home>/adapters`, the index
    before it) in the first time it is opened (`adopt_folder_registry`), so upgrading a
    home loses no adapter."""
    rank = settings.max_lora_rank if max_rank is None else max_rank
    folder = FolderIndex(settings.adapters_dir)
    if settings.registry.index == "folder":
        if (folder.root / MOVED_FILE).is_file():
            logger.warning(
                "the folder registry %s was moved into the database index (%s): what was "
                "published since is there, not here",
                folder.root,
                folder.root / MOVED_FILE,
            )
        return AdapterRegistry(folder, models, rank)
    index = open_database_index(settings)
    moved = adopt_folder_registry(folder, index)
    if moved:
        logger.warning(
            "moved the folder registry %s into %s: %s (the folder is left as it was)",
            folder.root,
            index.description,
            ", ".join(str(result) for result in moved),
        )
    return AdapterRegistry(index, models, rank)


def open_database_index(settings: Settings) -> DatabaseIndex:
    """The database index on the configured database and blob store, whatever
    `registry.index` says (`registry migrate` fills it from another folder)."""
    # Imported here: SQLAlchemy and fsspec only for the processes that use them.
    from lorastack.blobs import open_blob_store
    from lorastack.db.engine import database_url, make_engine
    from lorastack.registry.database import DatabaseIndex

    blobs = open_blob_store(settings.blobs_url, settings.registry.store_options)
    engine = make_engine(database_url(settings))
    return DatabaseIndex(engine, blobs, settings.adapter_cache_dir)
