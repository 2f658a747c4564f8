"""name objectives: studies created before their objective was named get "val_accuracy"

Studies are now created with ``Study.set_metric_names(["val_accuracy"])`` (optuna-dashboard
shows the name instead of "Objective 0"). This names the studies that exist, as that call
would: Optuna keeps the names as the study system attribute ``study:metric_names``, a JSON
list (tests/service/test_migrations.py reads it back through Optuna). Only our studies (those in
hpo_studies) are named, and a name already set is kept.

Revision ID: 0005_name_objectives
Revises: 0004_tally_snapshots
Create Date: 2026-12-02 09:30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_name_objectives"
down_revision = "0004_tally_snapshots"
branch_labels = None
depends_on = None

METRIC_NAMES = "study:metric_names"  # Optuna's key (optuna.study.study._SYSTEM_ATTR_METRIC_NAMES)
NAMES = '["val_accuracy"]'  # json.dumps(["val_accuracy"]), as Optuna stores a system attribute


def upgrade() -> None:
    op.execute(
        sa.text(
            "INSERT INTO study_system_attributes (study_id, key, value_json) "
            "SELECT s.study_id, :key, :names FROM studies s "
            "WHERE s.study_name IN (SELECT name FROM hpo_studies) AND NOT EXISTS "
            "(SELECT 1 FROM study_system_attributes a WHERE a.study_id = s.study_id AND a.key = :key)"
        ).bindparams(key=METRIC_NAMES, names=NAMES)
    )


def downgrade() -> None:
    pass  # a name does no harm to a study the older code created
