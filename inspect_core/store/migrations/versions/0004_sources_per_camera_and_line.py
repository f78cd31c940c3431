"""sources per camera and line: a camera moved to another line keeps its earlier frames on the old line

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 09:00:00

Before, ``sources`` held one row per camera and moving a camera rewrote that row's line, so every
frame it had captured moved to the new line in every report. Now a source is a (camera, line) pair:
a move adds a row and the old frames keep theirs. Existing rows are already one per camera, so no
data changes; lines rewritten by moves before this migration cannot be recovered.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_index("ix_sources_camera")
        batch.create_index("ix_sources_camera_line", ["camera", "line"], unique=True)


def downgrade() -> None:
    moved = op.get_bind().execute(sa.text("SELECT camera FROM sources GROUP BY camera HAVING count(*) > 1 ORDER BY camera")).scalars().all()
    if moved:
        raise RuntimeError(
            f"cannot downgrade the results store below 0004: camera(s) {', '.join(moved)} captured frames on more than one line, "
            "and the old schema keeps one line per camera (downgrading would re-label their earlier frames)"
        )
    with op.batch_alter_table("sources") as batch:
        batch.drop_index("ix_sources_camera_line")
        batch.create_index("ix_sources_camera", ["camera"], unique=True)
