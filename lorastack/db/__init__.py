"""The lorastack database: captured exchanges and their ratings, with a versioned schema.

SQLite under `$LORASTACK_HOME` by default; PostgreSQL by `LORASTACK_DATABASE_URL` when
several gateways share it. Alembic migrations (`migrations/`) version the schema; opening a
`SqlFeedbackStore` upgrades it, so nobody runs a separate step.
"""

from lorastack.db.engine import database_url, display_url, make_engine
from lorastack.db.feedback_store import SqlFeedbackStore, open_feedback_store
from lorastack.db.migrate import current_revision, downgrade, head_revision, revisions, upgrade

__all__ = [
    "SqlFeedbackStore",
    "current_revision",
    "database_url",
    "display_url",
    "downgrade",
    "head_revision",
    "make_engine",
    "open_feedback_store",
    "revisions",
    "upgrade",
]
