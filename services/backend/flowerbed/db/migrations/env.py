"""Alembic environment: always given a live connection by flowerbed.db.engine.migrate."""

from __future__ import annotations

from alembic import context

from flowerbed.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through flowerbed.db.engine.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
