"""Alembic migrations of the store's tables; run them with ``eventstore.migrate.migrate``."""
