"""aggregates (filled by a later issue)."""
