"""detection day counts: per-day rollup behind the report aggregates

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:00:00

Existing detections are counted into the new table in the same migration, so a store upgraded
with data in it reports exactly what it reported before.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BINS = 20


def upgrade() -> None:
    op.create_table(
        "detection_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source_key", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("confidence_bin", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("confidence_max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "source_key", "model_version_id", "class_name", "confidence_bin"),
    )
    if op.get_bind().dialect.name == "postgresql":
        day, floor = "date(timezone('UTC', captured_at))", f"floor(confidence * {BINS})"
    else:  # SQLite keeps UTC text; CAST truncates, which is the floor for confidences >= 0
        day, floor = "substr(captured_at, 1, 10)", f"CAST(confidence * {BINS} AS INTEGER)"
    op.execute(
        f"""
        INSERT INTO detection_day_counts (day, source_key, model_version_id, class_name, confidence_bin, n, confidence_sum, confidence_max)
        SELECT day, source_key, model_version_id, class_name, confidence_bin, count(*), sum(confidence), max(confidence)
        FROM (SELECT {day} AS day, coalesce(source_id, 0) AS source_key, model_version_id, class_name,
                     CASE WHEN {floor} >= {BINS} THEN {BINS - 1} ELSE {floor} END AS confidence_bin, confidence
              FROM detections) AS binned
        GROUP BY day, source_key, model_version_id, class_name, confidence_bin
        """
    )


def downgrade() -> None:
    op.drop_table("detection_day_counts")
