"""Persistence: async SQLAlchemy engines (one schema per service), Alembic migrations."""
