"""tally snapshots: the API's trial counts per study, saved so that a restart reads only new trials

Revision ID: 0004_tally_snapshots
Revises: 0003_claim_indexes
Create Date: 2026-12-02 09:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_tally_snapshots"
down_revision = "0003_claim_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpo_tally_snapshots",
        sa.Column("optuna_id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tally", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hpo_tally_snapshots")
