"""paused time: when a study was paused or stopped, and how long it has been so in all

Revision ID: 0006_paused_time
Revises: 0005_name_objectives
Create Date: 2026-12-02 17:00

stop_when.max_wall_clock_s counts the seconds since a study's first trial started, its paused
(and stopped) time left out (service/scheduling/stopping.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_paused_time"
down_revision = "0005_name_objectives"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:  # batch: SQLite rebuilds the table where needed
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_seconds", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("paused_seconds")
        batch.drop_column("paused_at")
