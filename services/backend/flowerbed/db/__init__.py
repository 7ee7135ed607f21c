"""Run history: SQLAlchemy tables, the engine, Alembic migrations and the queries routes use."""
