"""failure guard: consecutive failed trials and the reason a study was paused

Revision ID: 0002_failure_guard
Revises: 0001_hpo_studies
Create Date: 2026-11-29 13:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_failure_guard"
down_revision = "0001_hpo_studies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:  # batch: SQLite rebuilds the table where needed
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("status_reason", sa.String(600), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("status_reason")
        batch.drop_column("consecutive_failures")
