"""reviews: reviewer verdicts on detections (accept, reject, relabel, add, clean) beside the model's, per-frame versions

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-27 09:00:00

Two new tables (``inspect_core.store.review_schema``): ``reviews``, one row per reviewer action, and
``review_frames``, one row per reviewed (image, model version) with the version concurrent reviewers
compare-and-set. Nothing existing changes, so upgrading touches no row. Downgrading drops both tables
and with them every review: refused while any review is stored, since the reviews cannot be rebuilt.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_frames",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("image_id", "model_version_id"),
    )
    op.create_index("ix_review_frames_updated_at", "review_frames", ["updated_at"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("frame_version", sa.Integer(), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("added_review_id", sa.Integer(), nullable=True),
        sa.Column("model_class", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("model_confidence", sa.Float(), nullable=True),
        sa.Column("class_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        *(sa.Column(name, sa.Float(), nullable=True) for name in ("x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2")),
        sa.CheckConstraint("action IN ('accept', 'reject', 'relabel', 'add', 'clean')", name="ck_reviews_action"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["added_review_id"], ["reviews.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reviews_frame", "reviews", ["image_id", "model_version_id", "id"])
    op.create_index("ix_reviews_detection_id", "reviews", ["detection_id"])
    op.create_index("ix_reviews_reviewed_at", "reviews", ["reviewed_at"])


def downgrade() -> None:
    stored = op.get_bind().execute(sa.text("SELECT count(*) FROM reviews")).scalar_one()
    if stored:
        raise RuntimeError(
            f"cannot downgrade the results store below 0007: it holds {stored} review(s), which the old schema has no place for; "
            "export them first (inspect-core review export) or restore a backup taken before the upgrade"
        )
    op.drop_index("ix_reviews_reviewed_at", table_name="reviews")
    op.drop_index("ix_reviews_detection_id", table_name="reviews")
    op.drop_index("ix_reviews_frame", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_review_frames_updated_at", table_name="review_frames")
    op.drop_table("review_frames")
