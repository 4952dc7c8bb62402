"""A small shop on eventfold: orders placed, paid and shipped, stored as events.

Run it with ``python -m examples.shop`` (SQLite file ``eventfold.db`` in the working
directory) or ``python -m examples.shop --database postgresql://...``.
"""
