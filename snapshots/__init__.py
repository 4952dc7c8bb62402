"""snapshots (filled by a later issue)."""
