"""the notifications' outbox: one row per event and receiver, with its delivery state

Revision ID: 0007_outbox
Revises: 0006_paused_time
Create Date: 2026-12-02 17:30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_outbox"
down_revision = "0006_paused_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpo_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("study_name", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(600), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_hpo_outbox_study_name", "hpo_outbox", ["study_name"])
    op.create_index("ix_hpo_outbox_due", "hpo_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("hpo_outbox")
