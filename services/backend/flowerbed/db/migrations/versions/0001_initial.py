"""Initial schema: runs, run_events, rounds, run_logs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("flower_run_id", sa.String(20), index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("num_rounds", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("accuracy", sa.Float),
        sa.Column("loss", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("bytes_sent", sa.BigInteger),
        sa.Column("bytes_received", sa.BigInteger),
        sa.Column("log_cursor", sa.Float, nullable=False, server_default="0"),
        sa.Column("from_checkpoint", sa.String(200)),
    )
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("flower_seq", sa.Integer),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),
        sa.UniqueConstraint("run_id", "flower_seq", name="uq_run_events_run_flower_seq"),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("accuracy", sa.Float),
        sa.Column("loss", sa.Float),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "round", name="uq_rounds_run_round"),
    )
    op.create_table(
        "run_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("chunk", sa.Text, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("run_logs", "rounds", "run_events", "runs"):
        op.drop_table(table)
