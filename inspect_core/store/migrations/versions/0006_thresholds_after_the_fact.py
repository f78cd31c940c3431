"""thresholds after the fact: detections stored down to a floor, marked operating; rescoring keeps history

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-20 09:00:00

Scoring used to store only detections above the recipe's threshold, so a report could never lower it.
Now it stores every detection down to ``score.store_floor`` and marks those at or above the run's
operating threshold (``detections.operating``); ``image_scores.defects`` counts an image's operating
detections (the defect rate's numerator) and ``scoring_runs.thresholds`` records what the run applied.
The day counts keep operating and below-threshold detections apart. A rescoring moves the detections
it replaces to ``superseded_detections``.

Existing rows were stored above their run's threshold, so they are all operating: ``defects`` is their
``detections`` count. Downgrading deletes the non-operating detections (the old schema would count them
as defects), then drops what this added.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DETECTION_INDEXES = {
    "ix_detections_captured": ["captured_at", "source_id", "model_version_id", "class_name", "confidence"],
    "ix_detections_class_captured": ["class_name", "captured_at", "source_id", "model_version_id", "confidence"],
    "ix_detections_image": ["image_id", "model_version_id", "class_name", "confidence"],
}
_DAY_COUNT_KEY = ["day", "source_key", "model_version_id", "class_name", "confidence_bin"]


def _day_counts(operating: bool) -> None:
    """Rebuild detection_day_counts with or without the operating flag in its key (SQLite cannot alter a primary key)."""
    columns = [
        sa.Column("day", sa.Date(), nullable=False), sa.Column("source_key", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("confidence_bin", sa.Integer(), nullable=False),
    ]  # fmt: skip
    if operating:
        columns.append(sa.Column("operating", sa.Boolean(), nullable=False))
    columns += [sa.Column("n", sa.Integer(), nullable=False), sa.Column("confidence_sum", sa.Float(), nullable=False),
                sa.Column("confidence_max", sa.Float(), nullable=False)]  # fmt: skip
    key = _DAY_COUNT_KEY + (["operating"] if operating else [])
    op.create_table("detection_day_counts_new", *columns, sa.PrimaryKeyConstraint(*key))
    shared = ", ".join(_DAY_COUNT_KEY)
    if operating:
        op.execute(f"INSERT INTO detection_day_counts_new ({shared}, operating, n, confidence_sum, confidence_max) "
                   f"SELECT {shared}, true, n, confidence_sum, confidence_max FROM detection_day_counts")  # fmt: skip
    else:
        op.execute(f"INSERT INTO detection_day_counts_new ({shared}, n, confidence_sum, confidence_max) "
                   f"SELECT {shared}, sum(n), sum(confidence_sum), max(confidence_max) FROM detection_day_counts "
                   f"WHERE operating GROUP BY {shared}")  # fmt: skip
    op.drop_table("detection_day_counts")
    op.rename_table("detection_day_counts_new", "detection_day_counts")
    if op.get_bind().dialect.name == "postgresql":  # the primary key index keeps the temporary table's name otherwise
        op.execute("ALTER INDEX detection_day_counts_new_pkey RENAME TO detection_day_counts_pkey")


def upgrade() -> None:
    op.add_column("scoring_runs", sa.Column("defects", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("scoring_runs", sa.Column("thresholds", sa.JSON(), nullable=True))
    op.execute("UPDATE scoring_runs SET defects = detections")
    op.add_column("image_scores", sa.Column("defects", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE image_scores SET defects = detections")
    op.drop_index("ix_image_scores_captured", table_name="image_scores")
    op.create_index("ix_image_scores_captured", "image_scores", ["captured_at", "source_id", "model_version_id", "defects"])
    op.add_column("detections", sa.Column("operating", sa.Boolean(), nullable=False, server_default=sa.true()))
    for name, columns in _DETECTION_INDEXES.items():
        op.drop_index(name, table_name="detections")
        op.create_index(name, "detections", [*columns, "operating"])
    _day_counts(operating=True)
    op.create_table(
        "superseded_detections",
        sa.Column("id", sa.Integer(), nullable=False), sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False), sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True), sa.Column("captured_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("class_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False), sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("operating", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in ("x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2")),
        sa.Column("polygon", sa.JSON(), nullable=True), sa.Column("superseded_by_run", sa.Integer(), nullable=False),
        sa.Column("superseded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    for column in ("run_id", "image_id", "superseded_by_run"):
        op.create_index(f"ix_superseded_detections_{column}", "superseded_detections", [column])


def downgrade() -> None:
    for column in ("run_id", "image_id", "superseded_by_run"):
        op.drop_index(f"ix_superseded_detections_{column}", table_name="superseded_detections")
    op.drop_table("superseded_detections")
    op.execute("DELETE FROM detections WHERE NOT operating")
    _day_counts(operating=False)
    for name, columns in _DETECTION_INDEXES.items():
        op.drop_index(name, table_name="detections")
        op.create_index(name, "detections", columns)
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy would recreate tables others reference.
    op.execute("ALTER TABLE detections DROP COLUMN operating")
    op.drop_index("ix_image_scores_captured", table_name="image_scores")
    op.execute("UPDATE image_scores SET detections = defects")
    op.create_index("ix_image_scores_captured", "image_scores", ["captured_at", "source_id", "model_version_id", "detections"])
    op.execute("ALTER TABLE image_scores DROP COLUMN defects")
    op.execute("UPDATE scoring_runs SET detections = defects")
    op.execute("ALTER TABLE scoring_runs DROP COLUMN thresholds")
    op.execute("ALTER TABLE scoring_runs DROP COLUMN defects")
