"""The adapter registry: published, versioned domain adapters, their aliases and canaries.

`AdapterRegistry` (core.py) holds the rules; its index lives in the lorastack database with
the files in a blob store (database.py, the default), which several machines can share, or
in folders (folder.py). `open_registry` builds the one the settings ask for (and moves the
home's folder registry into the database the first time); `migrate_folder_registry`
(migrate.py) copies a folder registry into another index.
"""

from lorastack.registry.core import DEFAULT_CANARY_GUARD, AdapterRef, AdapterRegistry, DomainSummary
from lorastack.registry.factory import open_database_index, open_registry
from lorastack.registry.folder import FolderIndex
from lorastack.registry.index import IndexTransaction, RegistryIndex, StagedAdapter
from lorastack.registry.migrate import DomainMigration, migrate_folder_registry

__all__ = [
    "DEFAULT_CANARY_GUARD",
    "AdapterRef",
    "AdapterRegistry",
    "DomainMigration",
    "DomainSummary",
    "FolderIndex",
    "IndexTransaction",
    "RegistryIndex",
    "StagedAdapter",
    "migrate_folder_registry",
    "open_database_index",
    "open_registry",
]
