"""Run history: SQLAlchemy models, the engine, Alembic migrations and the queries routes use."""
