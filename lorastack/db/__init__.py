"""The lorastack database: captured exchanges and their ratings, each answer's usage and
the admin audit trail, with a versioned schema.

SQLite under `$LORASTACK_HOME` by default; PostgreSQL by `LORASTACK_DATABASE_URL` when
several gateways share it. Alembic migrations (`migrations/`) version the schema; opening a
store upgrades it, so nobody runs a separate step.
"""

from lorastack.db.audit_store import SqlAuditLog
from lorastack.db.engine import database_url, display_url, make_engine
from lorastack.db.feedback_store import SqlFeedbackStore, open_feedback_store
from lorastack.db.migrate import current_revision, downgrade, head_revision, revisions, upgrade
from lorastack.db.sessions import open_engine
from lorastack.db.usage_store import SqlUsageStore

__all__ = [
    "SqlAuditLog",
    "SqlFeedbackStore",
    "SqlUsageStore",
    "current_revision",
    "database_url",
    "display_url",
    "downgrade",
    "head_revision",
    "make_engine",
    "open_engine",
    "open_feedback_store",
    "revisions",
    "upgrade",
]
