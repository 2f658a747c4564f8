"""claim indexes: the budget check under the study lock reads indexes, not the study's trials

Optuna's schema indexes trials by study only, so counting a study's trials by state, and
Optuna's own numbering of a new trial, read every trial of the study. These indexes on
Optuna's tables (named hpo_* so that it is clear whose they are) make the budget check cost
the same at 50,000 trials as at none (service.optuna.storage.budget_stats).

Revision ID: 0003_claim_indexes
Revises: 0002_failure_guard
Create Date: 2026-11-29 16:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_claim_indexes"
down_revision = "0002_failure_guard"
branch_labels = None
depends_on = None

RETRY_MARK = sa.text("key = 'failed_trial'")  # service.optuna.storage.RETRY_OF


def upgrade() -> None:
    op.create_index("hpo_ix_trials_study_number", "trials", ["study_id", "number"])  # the study's trial count
    op.create_index("hpo_ix_trials_study_state", "trials", ["study_id", "state"])  # running and waiting trials
    op.create_index("hpo_ix_trials_study_trial", "trials", ["study_id", "trial_id"])  # Optuna's numbering
    op.create_index(
        "hpo_ix_retry_marks",
        "trial_system_attributes",
        ["trial_id"],
        postgresql_where=RETRY_MARK,
        sqlite_where=RETRY_MARK,
    )


def downgrade() -> None:
    op.drop_index("hpo_ix_retry_marks", table_name="trial_system_attributes")
    op.drop_index("hpo_ix_trials_study_trial", table_name="trials")
    op.drop_index("hpo_ix_trials_study_state", table_name="trials")
    op.drop_index("hpo_ix_trials_study_number", table_name="trials")
