"""operating detections index: the dashboard's time charts search only the detections that count as defects

Revision ID: 0008
Revises: 0007
Create Date: 2027-02-10 09:00:00

A partial index over the operating detections (at or above their run's threshold), time first. The
default charts count only those, and with a storage floor most stored detections are below it:
measured on 1M detections (10% operating, 180 days), the per-shift defects chart searched through
every detection of each shift in 0.108 s and through this index in 0.051 s. Only operating rows are
written to it. Built from the rows already there; downgrading drops it and loses nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ["operating", "captured_at", "source_id", "model_version_id", "class_name", "confidence"]


def upgrade() -> None:
    where = sa.text("operating = true") if op.get_bind().dialect.name == "postgresql" else sa.text("operating = 1")
    op.create_index("ix_detections_operating", "detections", COLUMNS, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index("ix_detections_operating", table_name="detections")
