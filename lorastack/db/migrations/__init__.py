"""Alembic's migrations of the lorastack database (`env.py`, one file per revision in `versions/`).

Run by `lorastack.db.upgrade` (the feedback store calls it when opened) or `lorastack db
upgrade`; no alembic.ini is needed. A new revision: copy the newest file in `versions/`,
give it the next number as `revision` and the newest as `down_revision`, write `upgrade`
and `downgrade` with `op`, and change `lorastack/db/schema.py` to match (a test compares
the two).
"""
