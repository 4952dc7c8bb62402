"""Alembic migrations of the store's tables.

Run them with ``eventfold.eventstore.migrate.migrate``.
"""
