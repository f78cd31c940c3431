"""scoring runs record their process and a heartbeat, so runs whose process is gone can be reaped

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-05 09:00:00

A scorer killed with kill -9 never closes its run: before this it stayed ``running`` for ever. Runs
now carry the host and pid of their process and the time of their last batch; the next run to start
marks those whose process is gone ``abandoned`` (``inspect_core.store.runs``). Existing runs get NULLs
(their heartbeat is their start time). Downgrading drops the three columns; ``abandoned`` runs keep
that status (a plain string the old code only displays).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scoring_runs", sa.Column("host", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("scoring_runs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("scoring_runs", sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of scoring_runs would drop the table
    # that image_scores and quarantine reference, which SQLite's foreign keys refuse.
    for column in ("heartbeat_at", "pid", "host"):
        op.execute(f"ALTER TABLE scoring_runs DROP COLUMN {column}")
