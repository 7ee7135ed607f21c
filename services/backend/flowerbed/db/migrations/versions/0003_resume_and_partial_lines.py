"""Runs remember an unfinished log line and the run they resume.

`log_partial`: the tail of the ServerApp's log after the last newline, stored with the
cursor, so a backend killed while holding half a line completes it after a restart.
`resumed_from`: the failed or stopped run a run continues (POST /training/{id}/resume).

Columns are only added (plain ALTER TABLE, also on SQLite): a table rebuild there would
drop `runs` and, with foreign keys on, cascade the delete to every event, round and log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("log_partial", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("resumed_from", sa.String(32), nullable=True))
    op.create_index("ix_runs_resumed_from", "runs", ["resumed_from"])


def downgrade() -> None:
    op.drop_index("ix_runs_resumed_from", table_name="runs")
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.drop_column("resumed_from")
        batch.drop_column("log_partial")
