"""create hpo_studies

Revision ID: 0001_hpo_studies
Revises:
Create Date: 2026-11-28 17:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_hpo_studies"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpo_studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("max_trials", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hpo_studies_status_priority", "hpo_studies", ["status", "priority"])


def downgrade() -> None:
    op.drop_index("ix_hpo_studies_status_priority", table_name="hpo_studies")
    op.drop_table("hpo_studies")
